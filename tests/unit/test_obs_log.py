"""structlog set-up: JSON and console output, level filtering, the trace tap."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from ustcp.obs.log import TRACE, configure_logging


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


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
