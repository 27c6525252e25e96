"""The syn-retries demo's virtual-time half: the engine alone, SYNs never answered."""

from __future__ import annotations

from ustcp.demo.retries import virtual_schedule


def test_default_schedule_is_linux_127_seconds() -> None:
    syns, failed, error = virtual_schedule(6)
    assert syns == [0, 1, 3, 7, 15, 31, 63]
    assert failed == 127
    assert error == "TimeoutError"


def test_shorter_retry_count_gives_up_sooner() -> None:
    syns, failed, _ = virtual_schedule(2)
    assert syns == [0, 1, 3]
    assert failed == 7
