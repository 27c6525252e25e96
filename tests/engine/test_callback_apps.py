"""Apps on socket callbacks (ustcp.callbacks) and the daemon's echo, discard and chargen
written on them: served on one stack of an in-memory pair, driven by trio streams of the
other, on virtual time."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
from trio.testing import MockClock

from ustcp.api import TCPStream, open_tcp_listeners, open_tcp_stream, serve_listeners
from ustcp.apps.chargen import CYCLE, Chargen
from ustcp.apps.discard import Discard
from ustcp.apps.echo import CHUNK as ECHO_CHUNK
from ustcp.apps.echo import Echo
from ustcp.callbacks import CallbackListener, CallbackSocket, SocketApp
from ustcp.daemon import IdleReaper
from ustcp.link.base import Link, OutFrame, ReceivedFrame
from ustcp.mib import Mib
from ustcp.stack import NOTIFY_ROUNDS, WAKE_PASSES, Stack
from ustcp.tcp.connection import Connection
from ustcp.tcp.states import State
from ustcp.wire.ipv4 import parse_ipv4
from ustcp.wire.tcp import parse_tcp

from .test_api_pair import B_ADDR, PORT, payload, receive_all, stacks

MB = 1 << 20


class Recorded:
    """An app, and the socket it was last called with."""

    def __init__(self, app: SocketApp) -> None:
        self.app = app
        self.sock: CallbackSocket | None = None

    def ready(self, sock: CallbackSocket) -> None:
        self.sock = sock
        self.app.ready(sock)

    @property
    def conn(self) -> Connection:
        assert self.sock is not None
        return self.sock.conn


@asynccontextmanager
async def served(make_app: Callable[[], SocketApp]
                 ) -> AsyncIterator[tuple[Stack, Stack, CallbackListener, list[Recorded]]]:
    """Stack B serves ``make_app`` on PORT on callbacks; A is the client's stack. The
    list holds each accepted connection's app, recorded."""
    apps: list[Recorded] = []

    def make() -> Recorded:
        apps.append(Recorded(make_app()))
        return apps[-1]

    async with stacks() as (a, b):
        [listener] = await open_tcp_listeners(b, PORT)
        yield a, b, CallbackListener(b, listener.listener, make), apps


async def test_echo_returns_a_megabyte_and_closes_after_the_fin(
        autojump_clock: MockClock) -> None:
    data = payload(MB, 7)
    async with served(Echo) as (a, _, _, apps):
        client = await open_tcp_stream(a, B_ADDR, PORT)

        async def send() -> None:
            for i in range(0, len(data), 10_000):
                await client.send_all(data[i : i + 10_000])
            await client.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            echoed = await receive_all(client)
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(data).digest()
        # The echo closed after the FIN: its socket is an orphan, no longer its waiter.
        [app] = apps
        assert app.sock is not None and app.sock.closed
        assert app.conn.state in (State.LAST_ACK, State.CLOSE)
        assert app.conn.waiter is None


async def test_echo_stops_reading_while_its_reply_cannot_be_sent(
        autojump_clock: MockClock) -> None:
    """A peer that sends and never reads: echo holds at most one read's worth unsent and
    stops reading, so the peer's writes block on flow control instead of our memory."""
    data = payload(8 * MB, 8)
    async with served(Echo) as (a, _, _, apps):
        client = await open_tcp_stream(a, B_ADDR, PORT)
        sent = 0

        async def send() -> None:
            nonlocal sent
            for i in range(0, len(data), 65536):
                await client.send_all(data[i : i + 65536])
                sent = i + 65536
            await client.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            await trio.sleep(30)  # virtual: the transfer would take well under a second
            [app] = apps
            assert isinstance(app.app, Echo)
            assert 0 < len(app.app.unsent) <= ECHO_CHUNK
            assert sent < len(data) // 2  # blocked: everything between is in buffers
            echoed = await receive_all(client)
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(data).digest()


async def test_discard_reads_everything_and_closes_after_the_fin(
        autojump_clock: MockClock) -> None:
    async with served(Discard) as (a, _, _, apps):
        client = await open_tcp_stream(a, B_ADDR, PORT)
        await client.send_all(payload(MB, 9))
        await client.send_eof()
        assert await client.receive_some() == b""  # its FIN, after ours
        [app] = apps
        assert app.conn.rcv.bytes_received == MB


async def test_chargen_sends_the_pattern_until_the_peer_closes(
        autojump_clock: MockClock) -> None:
    want = 3 * MB + 12_345
    async with served(Chargen) as (a, _, _, apps):
        client = await open_tcp_stream(a, B_ADDR, PORT)
        got = bytearray()
        while len(got) < want:
            got += await client.receive_some(want - len(got))
        cycles = want // len(CYCLE) + 1
        assert bytes(got) == (CYCLE * cycles)[:want]
        await client.send_eof()  # the peer's FIN ends chargen: its own FIN comes
        while await client.receive_some():
            pass
        [app] = apps
        assert app.sock is not None and app.sock.closed


class Failing:
    """An app with a bug: its first call raises."""

    def ready(self, sock: CallbackSocket) -> None:
        raise ValueError("a bug in the app")


async def serve_two(b: Stack, first: Callable[[], SocketApp]) -> None:
    """``first`` on PORT and the echo on PORT + 1, both on callbacks."""
    for port, make in ((PORT, first), (PORT + 1, Echo)):
        [listener] = await open_tcp_listeners(b, port)
        CallbackListener(b, listener.listener, make)


async def test_an_app_that_raises_resets_its_connection_only(
        autojump_clock: MockClock) -> None:
    async with stacks() as (a, b):
        await serve_two(b, Failing)
        client = await open_tcp_stream(a, B_ADDR, PORT)
        with pytest.raises(trio.BrokenResourceError):
            await client.receive_some()  # the RST
        other = await open_tcp_stream(a, B_ADDR, PORT + 1)
        await other.send_all(b"still served")
        assert await other.receive_some() == b"still served"


async def test_a_closed_callback_listener_refuses(autojump_clock: MockClock) -> None:
    async with served(Echo) as (a, _, listener, apps):
        listener.close()
        with pytest.raises(ConnectionRefusedError):
            await open_tcp_stream(a, B_ADDR, PORT)
        assert not apps


class SelfWaking:
    """An app that names its own connection to the engine every time it runs: without a
    bound on a flush's rounds it would hold the receive loop forever."""

    def __init__(self) -> None:
        self.calls = 0

    def ready(self, sock: CallbackSocket) -> None:
        self.calls += 1
        sock.stack.engine.wake(sock.conn)


async def test_a_self_waking_app_does_not_starve_the_stack(autojump_clock: MockClock) -> None:
    apps: list[SelfWaking] = []

    def make() -> SelfWaking:
        apps.append(SelfWaking())
        return apps[-1]

    async with stacks() as (a, b):
        await serve_two(b, make)
        busy = await open_tcp_stream(a, B_ADDR, PORT)
        other = await open_tcp_stream(a, B_ADDR, PORT + 1)
        await other.send_all(b"x")
        assert await other.receive_some() == b"x"
        [app] = apps
        calls = app.calls
        assert calls > NOTIFY_ROUNDS  # it went on running from the timer loop ...
        for _ in range(10):  # (virtual time stands still while a task is always runnable)
            await trio.lowlevel.checkpoint()
        assert app.calls > calls  # ... and still does
        await busy.aclose()


async def test_idle_timeout_closes_a_callback_connection(autojump_clock: MockClock) -> None:
    async with stacks() as (a, b):
        reaper = IdleReaper(10.0, b.counters)
        [listener] = await open_tcp_listeners(b, PORT)
        CallbackListener(b, listener.listener, Echo, reaper)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reaper.sweep)
            client = await open_tcp_stream(a, B_ADDR, PORT)
            await client.send_all(b"ping")
            assert await client.receive_some() == b"ping"
            start = trio.current_time()
            assert await client.receive_some() == b""  # the echo's FIN, once idle
            waited = trio.current_time() - start
            nursery.cancel_scope.cancel()
        assert 10.0 <= waited <= 12.5 + 0.1
        assert b.counters[Mib.UstcpAppIdleTimeouts] == 1
        assert not reaper.watched


async def test_children_queued_before_the_app_takes_over_are_served(
        autojump_clock: MockClock) -> None:
    async with stacks() as (a, b):
        [listener] = await open_tcp_listeners(b, PORT)
        client = await open_tcp_stream(a, B_ADDR, PORT)  # in the accept queue already
        await client.send_all(b"early")
        await trio.sleep(0.1)
        CallbackListener(b, listener.listener, Echo).notify()
        assert await client.receive_some() == b"early"


# ---------------------------------------------------------------------- schedule points


class Budgets:
    """B's link: records what the stack lets each receive go without a schedule point, and
    whether the batch it returned brought the server data."""

    def __init__(self, inner: Link) -> None:
        self.inner = inner
        self.mtu = inner.mtu
        self.gso_max_size = inner.gso_max_size
        self.tx_csum_offload = inner.tx_csum_offload
        self.given: list[bool] = []
        self.data: list[bool] = []

    async def receive_batch(self, unscheduled: bool = False) -> list[ReceivedFrame]:
        self.given.append(unscheduled)
        batch = await self.inner.receive_batch(unscheduled)
        self.data.append(any(_carries_data(f.data) for f in batch))
        return batch

    def after_data(self, receives: int) -> list[tuple[bool, ...]]:
        """Whether each of the ``receives`` receives after a data batch was let go
        without a schedule point."""
        return [tuple(self.given[i + 1:i + 1 + receives])
                for i, data in enumerate(self.data[:-receives]) if data]

    def poll_batch(self) -> list[ReceivedFrame]:
        return self.inner.poll_batch()

    def send_batch(self, frames: list[OutFrame]) -> None:
        self.inner.send_batch(frames)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _carries_data(frame: bytes | memoryview) -> bool:
    header, segment = parse_ipv4(frame)
    return len(parse_tcp(segment, header.src, header.dst, verify_checksum=False).payload) > 0


async def _task_echo(stream: TCPStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)


@pytest.mark.parametrize("on_callbacks", [True, False], ids=["callbacks", "task"])
async def test_a_flush_that_wakes_no_task_lets_the_next_receive_skip_the_scheduler(
        on_callbacks: bool, autojump_clock: MockClock) -> None:
    """Ping-pong against an echo: each ping wakes only the app. On callbacks that wakes no
    task, so the stack lets its next receive go without a schedule point; a handler task
    it wakes must run first, so the next WAKE_PASSES receives make one each (trio may run
    the loop before the task at the first)."""
    async with stacks(wrap_b=Budgets) as (a, b):
        link = b.link
        assert isinstance(link, Budgets)
        async with trio.open_nursery() as nursery:
            [listener] = await open_tcp_listeners(b, PORT)
            if on_callbacks:
                CallbackListener(b, listener.listener, Echo)
            else:
                nursery.start_soon(serve_listeners, _task_echo, [listener])
            client = await open_tcp_stream(a, B_ADDR, PORT)
            for i in range(50):
                await client.send_all(bytes([i]))
                assert await client.receive_some() == bytes([i])
            nursery.cancel_scope.cancel()
    after = link.after_data(WAKE_PASSES)
    assert len(after) >= 45
    if on_callbacks:
        assert all(sum(after, ()))
    else:
        # A ping that comes before the handler is back in receive_some wakes no one (1 or
        # 2 in 50 in trio's random orders); the others woke it.
        owed = (False,) * WAKE_PASSES
        assert sum(given == owed for given in after) > len(after) // 2
