"""The syn-retries demo's virtual-time half: the engine alone, SYNs never answered."""

from __future__ import annotations

from ustcp.demo.retries import (
    DEFAULT_FAILS,
    DEFAULT_SYNS,
    EXPONENTIAL_FAILS,
    EXPONENTIAL_SYNS,
    LIVE_SYNS,
    virtual_schedule,
)


def test_default_schedule_is_linux_6_18s_131_seconds() -> None:
    syns, failed, error = virtual_schedule(6)
    assert syns == DEFAULT_SYNS == [0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67]
    assert failed == DEFAULT_FAILS == 131
    assert error == "TimeoutError"


def test_no_linear_timeouts_is_the_seeds_127_seconds() -> None:
    """Seed 000: 1+2+4+8+16+32+64 = 127 s, the schedule before Linux 6.5."""
    syns, failed, _ = virtual_schedule(6, 0)
    assert syns == EXPONENTIAL_SYNS == [0, 1, 3, 7, 15, 31, 63]
    assert failed == EXPONENTIAL_FAILS == 127


def test_shorter_retry_count_gives_up_sooner() -> None:
    syns, failed, _ = virtual_schedule(2)
    assert syns == list(LIVE_SYNS) == [0, 1, 2, 3, 4, 5]
    assert failed == 7  # the time two doublings of 1 s take, before the count runs out
