"""Two stacks over an in-memory link, driven through the trio API on virtual time."""

from __future__ import annotations

import hashlib
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from ustcp.api import TCPStream, Waiters, open_tcp_listeners, open_tcp_stream, serve_listeners
from ustcp.config import StackConfig
from ustcp.link.base import Link, ReceivedFrame
from ustcp.link.impair import ImpairmentSpec
from ustcp.link.memory import MemoryLink, memory_link_pair
from ustcp.mib import Counters
from ustcp.stack import Stack
from ustcp.tcp.states import State

A_ADDR, B_ADDR = "10.77.0.1", "10.77.0.2"
A_ADDR6, B_ADDR6 = "fd77::1", "fd77::2"
PORT = 5000
MB = 1 << 20
VIRTUAL_TIME_LIMIT = 600.0

@asynccontextmanager
async def stacks(a_to_b: ImpairmentSpec | None = None, b_to_a: ImpairmentSpec | None = None,
                 config: StackConfig | None = None, wrap_b: Callable[[Link], Link] | None = None,
                 ) -> AsyncIterator[tuple[Stack, Stack]]:
    """Stacks A and B on an in-memory pair, running; ``wrap_b`` puts a tap around B's link."""
    ca, cb = Counters(), Counters()
    la, lb = memory_link_pair(impair_a_to_b=a_to_b, impair_b_to_a=b_to_a, counters=(ca, cb))
    a = Stack(la, config or StackConfig(), ca, socket.inet_aton(A_ADDR), seed=1,
              local_addr6=socket.inet_pton(socket.AF_INET6, A_ADDR6))
    b = Stack(lb if wrap_b is None else wrap_b(lb), config or StackConfig(), cb,
              socket.inet_aton(B_ADDR), seed=2,
              local_addr6=socket.inet_pton(socket.AF_INET6, B_ADDR6))
    # A stalled transfer has no timer left: the virtual clock jumps here and fails the test.
    with trio.fail_after(VIRTUAL_TIME_LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            yield a, b
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def connected(a_to_b: ImpairmentSpec | None = None, b_to_a: ImpairmentSpec | None = None,
                    config: StackConfig | None = None,
                    ) -> AsyncIterator[tuple[TCPStream, TCPStream, Stack, Stack]]:
    async with stacks(a_to_b, b_to_a, config) as (a, b):
        [listener] = await open_tcp_listeners(b, PORT)
        client = await open_tcp_stream(a, B_ADDR, PORT)
        server = await listener.accept()
        yield client, server, a, b


def payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


async def receive_all(stream: TCPStream) -> bytes:
    chunks = []
    while chunk := await stream.receive_some():
        chunks.append(chunk)
    return b"".join(chunks)


async def exchange(client: TCPStream, server: TCPStream, size: int) -> None:
    """``size`` bytes each way at the same time, then EOF both ways; check sha256."""
    up, down = payload(size, 1), payload(size, 2)
    got: dict[str, bytes] = {}

    async def send(stream: TCPStream, data: bytes) -> None:
        await stream.send_all(data)
        await stream.send_eof()

    async def receive(stream: TCPStream, key: str) -> None:
        got[key] = await receive_all(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, client, up)
        nursery.start_soon(send, server, down)
        nursery.start_soon(receive, server, "up")
        nursery.start_soon(receive, client, "down")
    assert hashlib.sha256(got["up"]).hexdigest() == hashlib.sha256(up).hexdigest()
    assert hashlib.sha256(got["down"]).hexdigest() == hashlib.sha256(down).hexdigest()


# ---------------------------------------------------------------------- data transfer


async def test_connect_accept_addresses(autojump_clock: MockClock) -> None:
    async with connected() as (client, server, _a, _b):
        assert client.remote_address == (B_ADDR, PORT)
        assert server.local_address == (B_ADDR, PORT)
        assert server.remote_address == client.local_address
        assert client.local_address[0] == A_ADDR
        assert client.connection.state == State.ESTABLISHED


async def test_megabyte_each_way(autojump_clock: MockClock) -> None:
    async with connected() as (client, server, _a, _b):
        await exchange(client, server, MB)


async def test_megabyte_each_way_with_delay(autojump_clock: MockClock) -> None:
    delay = ImpairmentSpec(delay=0.005, rate=100e6)
    async with connected(delay, delay) as (client, server, _a, _b):
        start = trio.current_time()
        await exchange(client, server, MB)
        assert trio.current_time() - start > 0.08  # at least 1 MB at 100 Mbit/s


async def test_half_close(autojump_clock: MockClock) -> None:
    async with connected() as (client, server, _a, _b):
        await client.send_all(b"request")
        await client.send_eof()
        assert await receive_all(server) == b"request"
        await server.send_all(b"response after the peer's FIN")
        await server.aclose()
        assert await receive_all(client) == b"response after the peer's FIN"
        with pytest.raises(trio.ClosedResourceError, match="after sending EOF"):
            await client.send_all(b"more")
        await client.send_eof()  # a second EOF is a no-op


async def test_aclose_semantics(autojump_clock: MockClock) -> None:
    async with connected() as (client, server, _a, _b):
        assert not client.closed
        await client.aclose()
        assert client.closed
        await client.aclose()  # idempotent
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"x")
        with pytest.raises(trio.ClosedResourceError):
            await client.receive_some()
        with pytest.raises(trio.ClosedResourceError):
            await client.send_eof()
        with pytest.raises(trio.ClosedResourceError):
            await client.wait_send_all_might_not_block()
        assert await server.receive_some() == b""  # the peer sees our FIN
        await server.aclose()


async def test_aclose_wakes_blocked_receiver(autojump_clock: MockClock) -> None:
    async with connected() as (client, _server, _a, _b):
        async def close_soon() -> None:
            await trio.sleep(1)
            await client.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_soon)
            with pytest.raises(trio.ClosedResourceError):
                await client.receive_some()


async def test_aclose_when_cancelled_still_closes(autojump_clock: MockClock) -> None:
    async with connected() as (client, server, _a, _b):
        with trio.CancelScope() as scope:
            scope.cancel()
            await client.aclose()
        assert scope.cancelled_caught
        assert await server.receive_some() == b""


async def test_receive_cancelled_while_parked_is_forgotten(autojump_clock: MockClock) -> None:
    """A receiver cancelled while it waits leaves the connection's Waiters: the data that
    comes afterwards wakes only the receiver waiting then (a stale entry would have trio
    reschedule a task that is not blocked)."""
    async with connected() as (client, server, _a, _b):
        with trio.move_on_after(1) as scope:
            await client.receive_some()
        assert scope.cancelled_caught
        got: list[bytes] = []

        async def receive() -> None:
            got.append(await client.receive_some())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            await server.send_all(b"after")
        assert got == [b"after"]


def count_parks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A count of Waiters.park calls."""
    parks = [0]
    real_park = Waiters.park

    async def park(self: Waiters) -> None:
        parks[0] += 1
        await real_park(self)

    monkeypatch.setattr(Waiters, "park", park)
    return parks


async def test_busy_read_brings_its_data_without_parking(
        autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """net.core.busy_read: a receive that finds nothing polls the link itself, runs what
    comes through the stack in its own task and returns its data without ever parking."""
    parks = count_parks(monkeypatch)
    async with connected(config=StackConfig(busy_read=1_000_000)) as (client, server, _a, _b):
        parks[0] = 0
        for i in range(50):
            message = payload(1 + i, i)
            await client.send_all(message)
            assert await server.receive_some() == message
            await server.send_all(message)
            assert await client.receive_some() == message
        assert parks[0] == 0  # every busy read found its data


async def test_busy_read_parks_once_its_budget_is_spent(
        autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing coming, busy_read gives up after its budget (100 µs of real time) and
    the reader parks until the data arrives, as without busy polling."""
    parks = count_parks(monkeypatch)
    polls = [0]
    real_poll = MemoryLink.poll_batch

    def poll_batch(self: MemoryLink) -> list[ReceivedFrame]:
        polls[0] += 1
        return real_poll(self)

    monkeypatch.setattr(MemoryLink, "poll_batch", poll_batch)
    async with connected(config=StackConfig(busy_read=100)) as (client, server, _a, _b):
        parks[0] = polls[0] = 0

        async def send_later() -> None:
            await trio.sleep(1)
            await client.send_all(b"late")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_later)
            assert await server.receive_some() == b"late"
        assert polls[0] > 0  # the reader spun on the link ...
        assert parks[0] >= 1  # ... then gave up and parked


async def test_concurrent_use_is_busy(autojump_clock: MockClock) -> None:
    async with connected() as (client, _server, _a, _b):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.receive_some)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await client.receive_some()
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload(8 * MB, 3))  # more than fits
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await client.send_all(b"x")
            with pytest.raises(trio.BusyResourceError):
                await client.send_eof()
            nursery.cancel_scope.cancel()


async def test_receive_some_arguments(autojump_clock: MockClock) -> None:
    async with connected() as (client, server, _a, _b):
        with pytest.raises(ValueError, match="max_bytes"):
            await client.receive_some(0)
        await server.send_all(b"0123456789")
        await trio.sleep(0.1)
        assert await client.receive_some(4) == b"0123"
        assert await client.receive_some() == b"456789"
        await client.wait_send_all_might_not_block()
        await client.send_all(b"")


async def test_every_call_is_a_checkpoint(autojump_clock: MockClock) -> None:
    async with connected() as (client, server, _a, _b):
        await server.send_all(b"ready")
        await trio.sleep(0.1)
        with trio.testing.assert_checkpoints():
            await client.send_all(b"x")
        with trio.testing.assert_checkpoints():
            await client.receive_some()
        with trio.testing.assert_checkpoints():
            await client.wait_send_all_might_not_block()
        with trio.testing.assert_checkpoints():
            await client.send_eof()
        with trio.testing.assert_checkpoints():
            await client.aclose()


# ---------------------------------------------------------------------- errors


async def test_refused_connection(autojump_clock: MockClock) -> None:
    async with stacks() as (a, _b):
        with pytest.raises(ConnectionRefusedError):
            await open_tcp_stream(a, B_ADDR, PORT + 1)
        assert not a.engine.connections


async def test_connect_timeout(autojump_clock: MockClock) -> None:
    blackhole = ImpairmentSpec(loss=1.0)
    async with stacks(a_to_b=blackhole) as (a, _b):
        start = trio.current_time()
        with pytest.raises(TimeoutError):
            await open_tcp_stream(a, B_ADDR, PORT)
        # tcp_syn_retries=6: 1+2+4+8+16+32+64 s (Linux gives up after ~127 s)
        assert 100 < trio.current_time() - start < 140


async def test_cancelled_connect_is_abandoned(autojump_clock: MockClock) -> None:
    async with stacks(a_to_b=ImpairmentSpec(loss=1.0)) as (a, _b):
        with trio.move_on_after(3):
            await open_tcp_stream(a, B_ADDR, PORT)
        await trio.sleep(0)
        assert not a.engine.connections


async def test_reset_is_broken_resource(autojump_clock: MockClock) -> None:
    async with connected() as (client, server, _a, _b):
        server.abort()
        with pytest.raises(trio.BrokenResourceError) as info:
            await client.receive_some()
        assert isinstance(info.value.__cause__, ConnectionResetError)
        with pytest.raises(trio.BrokenResourceError):
            await client.send_all(b"after reset")
        await client.aclose()


# ---------------------------------------------------------------------- listeners


@pytest.mark.parametrize("serve", [trio.serve_listeners, serve_listeners],
                         ids=["trio", "ustcp"])
async def test_serve_listeners_echo(serve: Any, autojump_clock: MockClock) -> None:
    """Each connection in a task of its own; the handler never closes the stream, the serve
    loop does once it returns (else the clients would wait for EOF forever)."""

    async def echo(stream: TCPStream) -> None:
        while data := await stream.receive_some():
            await stream.send_all(data)

    async with stacks() as (a, b):
        listeners = await open_tcp_listeners(b, PORT)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, echo, listeners)
            await trio.testing.wait_all_tasks_blocked()

            async def client(n: int) -> None:
                stream = await open_tcp_stream(a, B_ADDR, PORT)
                message = payload(100_000 + n, n)
                await stream.send_all(message)
                await stream.send_eof()
                assert await receive_all(stream) == message
                await stream.aclose()

            async with trio.open_nursery() as clients:
                for n in range(5):
                    clients.start_soon(client, n)
            nursery.cancel_scope.cancel()


async def test_listening_on_port_0_reports_the_port_chosen(autojump_clock: MockClock) -> None:
    async with stacks() as (a, b):
        [listener] = await open_tcp_listeners(b, 0)
        host, port = listener.local_address
        assert host == "0.0.0.0" and port != 0
        client = await open_tcp_stream(a, B_ADDR, port)
        server = await listener.accept()
        await client.send_all(b"hello")
        assert await server.receive_some() == b"hello"
        assert server.local_address == (B_ADDR, port)
        await client.aclose()
        await server.aclose()


async def test_listener_close(autojump_clock: MockClock) -> None:
    async with stacks() as (a, b):
        [listener] = await open_tcp_listeners(b, PORT)
        async with trio.open_nursery() as nursery:
            async def close_soon() -> None:
                await trio.sleep(1)
                await listener.aclose()

            nursery.start_soon(close_soon)
            with pytest.raises(trio.ClosedResourceError):
                await listener.accept()
        await listener.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await listener.accept()
        with pytest.raises(ConnectionRefusedError):
            await open_tcp_stream(a, B_ADDR, PORT)


async def test_listen_twice_is_addr_in_use(autojump_clock: MockClock) -> None:
    async with stacks() as (_a, b):
        await open_tcp_listeners(b, PORT)
        with pytest.raises(OSError, match="in use"):
            await open_tcp_listeners(b, PORT, host=B_ADDR)


# ---------------------------------------------------------------------- impaired links


LOSSY = ImpairmentSpec(loss=0.02, reorder=0.02, delay=0.002, seed=11)


async def test_megabyte_each_way_over_loss_and_reorder(autojump_clock: MockClock) -> None:
    b_to_a = ImpairmentSpec(loss=0.02, reorder=0.02, delay=0.002, seed=12)
    async with connected(LOSSY, b_to_a) as (client, server, a, b):
        await exchange(client, server, MB)
        assert a.counters["UstcpImpairLoss"] > 0
        assert b.counters["UstcpImpairLoss"] > 0
        assert a.counters["TcpRetransSegs"] + b.counters["TcpRetransSegs"] > 0


async def test_corruption_is_caught_by_checksums(autojump_clock: MockClock) -> None:
    noisy = ImpairmentSpec(corrupt=0.02, duplicate=0.01, delay=0.001, seed=5)
    async with connected(noisy, noisy) as (client, server, a, b):
        await exchange(client, server, MB // 2)
        corrupted = a.counters["UstcpImpairCorrupt"] + b.counters["UstcpImpairCorrupt"]
        assert corrupted > 0
        dropped = sum(v for c in (a.counters, b.counters) for k, v in c.snapshot().items()
                      if k.startswith("UstcpDrop") or k in ("TcpInCsumErrors", "IpInHdrErrors"))
        assert dropped >= corrupted


async def test_50mb_through_loss_reorder_duplication_and_corruption(
        autojump_clock: MockClock) -> None:
    # The whole path, codecs and checksums included: what corruption breaks must be caught
    # by a checksum and repaired by retransmission, never delivered.
    bad = ImpairmentSpec(loss=0.01, reorder=0.02, duplicate=0.01, corrupt=0.005,
                         delay=0.002, seed=7)
    async with connected(bad, bad) as (client, server, a, b):
        data = payload(50_000_000, 3)

        async def send() -> None:
            await client.send_all(data)
            await client.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            got = await receive_all(server)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
        corrupted = a.counters["UstcpImpairCorrupt"] + b.counters["UstcpImpairCorrupt"]
        assert corrupted > 100
        assert b.counters["TcpInCsumErrors"] + b.counters["IpInHdrErrors"] > 0


async def test_a_segment_that_cannot_be_built_is_counted_and_dropped(
        autojump_clock: MockClock) -> None:
    """Issue 13: with an IP TTL the header cannot carry (300, forced past the sysctl
    check), the server's SYN-ACK fails to build. The send path counts it as
    UstcpInternalErrors and drops it instead of ending the stack; once the value is sane
    again the same stack completes a connection."""
    async with stacks() as (a, b):
        [listener] = await open_tcp_listeners(b, PORT)
        b.config.ip_default_ttl = 300
        with trio.move_on_after(3):
            await open_tcp_stream(a, B_ADDR, PORT)
        assert b.counters["UstcpInternalErrors"] >= 1
        b.config.ip_default_ttl = 64
        client = await open_tcp_stream(a, B_ADDR, PORT)
        server = await listener.accept()
        await client.send_all(b"still alive")
        assert await server.receive_some() == b"still alive"


# ---------------------------------------------------------------------- IPv6


async def test_dual_stack_listener_and_v6_literals_with_loss(autojump_clock: MockClock) -> None:
    """A listener on ``::`` takes an IPv4 and an IPv6 client; the v6 stream moves a megabyte
    each way intact over a lossy link; the socket facade says AF_INET6."""
    loss = ImpairmentSpec(loss=0.02, seed=3)
    async with stacks(loss, loss) as (a, b):
        [listener] = await open_tcp_listeners(b, PORT, host="::")
        v4 = await open_tcp_stream(a, B_ADDR, PORT)
        assert (await listener.accept()).remote_address[0] == A_ADDR
        v6 = await open_tcp_stream(a, B_ADDR6, PORT)
        server = await listener.accept()
        assert server.remote_address == (A_ADDR6, v6.local_address[1])
        assert v6.socket.family == socket.AF_INET6 and v4.socket.family == socket.AF_INET
        assert v6.connection.rcv.advmss == 1500 - 60
        await exchange(v6, server, MB)
        assert b.counters["Ip6InReceives"] > 0 and a.counters["TcpRetransSegs"] > 0
        with pytest.raises(OSError):
            await open_tcp_stream(a, "not-a-literal", PORT)
