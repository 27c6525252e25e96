"""The control socket: JSON-line commands over an abstract unix socket, nstat baselines."""

from __future__ import annotations

import io
import itertools
import os
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog
import trio

from ustcp.obs import control
from ustcp.obs.counters import Counters
from ustcp.obs.log import configure_logging
from ustcp.obs.nstat import Nstat, format_table, select

_names = itertools.count()


@pytest.fixture
def counters() -> Counters:
    return Counters()


@pytest.fixture
async def server(counters: Counters) -> AsyncIterator[str]:
    name = f"ustcp-test-{os.getpid()}-{next(_names)}"
    srv = control.ControlServer(name)
    srv.add("nstat", Nstat(counters))
    srv.add("boom", lambda request: {"x": 1 // 0})
    srv.add_stream("trace", control.trace_events)
    listener = await srv.bind()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(srv.serve, listener)
        yield name
        nursery.cancel_scope.cancel()


async def ask(name: str, cmd: str, **args: Any) -> dict[str, Any]:
    return await trio.to_thread.run_sync(lambda: control.request(cmd, name=name, **args))


async def test_nstat_absolute_and_reset_deltas(server: str, counters: Counters) -> None:
    counters.inc("TcpPassiveOpens", 3)
    counters.inc("TcpCurrEstab", 2)
    reply = await ask(server, "nstat")
    assert reply["counters"]["TcpPassiveOpens"] == 3
    assert reply["counters"]["TcpInSegs"] == 0  # always shown
    first = await ask(server, "nstat", reset=True)
    assert first["counters"]["TcpPassiveOpens"] == 3  # since the daemon started
    counters.inc("TcpPassiveOpens")
    second = await ask(server, "nstat", reset=True)
    assert second["counters"]["TcpPassiveOpens"] == 1
    assert second["counters"]["TcpCurrEstab"] == 2  # a gauge stays absolute
    assert (await ask(server, "nstat"))["counters"]["TcpPassiveOpens"] == 4


async def test_errors_are_replies_and_the_server_survives(server: str) -> None:
    with pytest.raises(control.ControlError, match="unknown command"):
        await ask(server, "nope")
    with pytest.raises(control.ControlError, match="ZeroDivisionError"):
        await ask(server, "boom")

    def raw() -> bytes:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(control.address(server))
            sock.sendall(b"not json\n")
            return sock.makefile("rb").readline()

    assert b"bad request" in await trio.to_thread.run_sync(raw)
    assert "counters" in await ask(server, "nstat")


async def test_no_daemon_is_connection_refused() -> None:
    with pytest.raises(ConnectionRefusedError):
        control.request("nstat", name=f"ustcp-nobody-{os.getpid()}")


@pytest.fixture
def json_logging() -> Iterator[None]:
    saved = structlog.get_config()
    configure_logging("json", "info", stream=io.StringIO())
    yield
    structlog.configure(**saved)


async def test_trace_streams_filtered_events(server: str, json_logging: None) -> None:
    log = structlog.get_logger("ustcp.tcp")
    got: list[dict[str, Any]] = []

    def follower() -> None:
        for item in control.follow("trace", name=server, event=["state_change"]):
            got.append(item)
            if len(got) == 2:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, follower)
        with trio.fail_after(5):
            while len(got) < 2:
                log.info("retransmit", conn="a")
                log.info("state_change", conn="a", new="ESTAB")
                await trio.sleep(0.01)
    assert {item["event"] for item in got} == {"state_change"}
    assert got[0]["logger"] == "ustcp.tcp"


def test_format_table_hides_zeros_unless_asked() -> None:
    values = {"TcpInSegs": 0, "TcpPassiveOpens": 2}
    assert "TcpInSegs" not in format_table(select(values, [], zeros=False))
    table = format_table(select(values, [], zeros=True))
    assert table.splitlines() == ["#kernel", f"{'TcpInSegs':<32}0", f"{'TcpPassiveOpens':<32}2"]


async def test_a_trace_client_vanishing_mid_stream_leaves_the_server_up(
    server: str, json_logging: None
) -> None:
    log = structlog.get_logger("ustcp.tcp")

    def reader_that_leaves() -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(control.address(server))
            sock.sendall(b'{"cmd": "trace"}\n')
            sock.recv(10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, reader_that_leaves)
        for _ in range(300):
            log.info("state_change", payload="x" * 1000)
            await trio.sleep(0.001)
    assert "counters" in await ask(server, "nstat")
