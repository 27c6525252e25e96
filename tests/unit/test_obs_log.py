"""structlog set-up: JSON and console output, level filtering, the trace tap."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator

import pytest
import structlog
import trio

from ustcp.debuglog import DEBUG
from ustcp.obs.log import TRACE, configure_logging


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    saved, level = structlog.get_config(), TRACE.output_level
    yield
    structlog.configure(**saved)
    TRACE.output_level = level
    TRACE.update()


def test_json_lines_carry_timestamp_level_event_and_keys() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    log = structlog.get_logger("ustcp.test")
    log.debug("hidden", n=1)
    log.info("state_change", conn="10.77.0.1:5000>10.77.0.2:80", old="SYN-RECV", new="ESTAB")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "state_change"
    assert record["level"] == "info"
    assert record["logger"] == "ustcp.test"
    assert record["new"] == "ESTAB"
    assert record["timestamp"].endswith("Z")


def test_console_lines_and_debug_level() -> None:
    out = io.StringIO()
    configure_logging("console", "debug", stream=out)
    structlog.get_logger("ustcp.test").debug("retransmit", seq=5)
    text = out.getvalue()
    assert "retransmit" in text and "seq=5" in text and "debug" in text


def test_bad_level_or_format() -> None:
    with pytest.raises(ValueError):
        configure_logging("console", "loud")
    with pytest.raises(ValueError):
        configure_logging("xml", "info")  # type: ignore[arg-type]


async def test_trace_tap_copies_events_and_counts_overflow() -> None:
    configure_logging("json", "info", stream=io.StringIO())
    log = structlog.get_logger("ustcp.test")
    with TRACE.subscribe(buffer=2) as sub:
        for i in range(3):
            log.info("drop", reason="checksum", i=i)
        first = sub.receive.receive_nowait()
        assert first["event"] == "drop" and first["i"] == 0
        assert sub.dropped == 1
    assert not TRACE.subscribers


async def test_a_follower_gets_its_own_level_and_the_output_stays_quiet() -> None:
    """A daemon at info: a debug follower receives debug events (with a wall-clock time),
    the output shows none of them; an info follower gets none; with no follower a debug
    event is not even processed."""
    out = io.StringIO()
    configure_logging("console", "info", stream=out)
    log = structlog.get_logger("ustcp.test")
    seen: list[str] = []

    def spy(logger: object, name: str, event: dict[str, object]) -> dict[str, object]:
        seen.append(str(event["event"]))
        return event

    config = structlog.get_config()
    structlog.configure(processors=[spy, *config["processors"]])
    log.debug("unwanted")
    with TRACE.subscribe(level="debug") as debug_sub, TRACE.subscribe(level="info") as info_sub:
        log.debug("state_change", old="SYN_RECV", new="ESTABLISHED")
        log.info("reset_received")
        got = debug_sub.receive.receive_nowait()
        assert got["event"] == "state_change" and abs(float(got["time"]) - time.time()) < 60
        assert info_sub.receive.receive_nowait()["event"] == "reset_received"
        with pytest.raises(trio.WouldBlock):
            info_sub.receive.receive_nowait()
    assert "unwanted" not in seen and "state_change" in seen
    assert "state_change" not in out.getvalue() and "reset_received" in out.getvalue()
    assert TRACE.min_level > 50  # nobody follows any more


def test_the_debug_gate_is_open_exactly_when_debug_events_go_somewhere() -> None:
    """Hot code builds debug events only behind DEBUG.on: it must be on while the output
    level or a trace follower wants debug events, and off otherwise."""
    configure_logging("json", level="warning", stream=io.StringIO())
    assert not DEBUG.on
    with TRACE.subscribe(level="debug"):
        assert DEBUG.on
    assert not DEBUG.on
    with TRACE.subscribe(level="info"):
        assert not DEBUG.on
    configure_logging("json", level="debug", stream=io.StringIO())
    assert DEBUG.on
