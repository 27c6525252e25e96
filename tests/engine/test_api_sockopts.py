"""Socket options through the trio API on two stacks over an in-memory link, virtual time:
the ``stream.socket`` facade, and the blocking close of SO_LINGER {1, T}."""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from trio.testing import MockClock

from ustcp.api import TCPStream, open_tcp_listeners, open_tcp_stream
from ustcp.apps import lab
from ustcp.config import StackConfig
from ustcp.link.base import Link, OutFrame, ReceivedFrame
from ustcp.link.impair import ImpairmentSpec
from ustcp.link.memory import memory_link_pair
from ustcp.mib import Counters
from ustcp.stack import Stack
from ustcp.tcp.sock import SO_MAX_PACING_RATE
from ustcp.tcp.states import State
from ustcp.tcp.tcpinfo import parse_tcp_info

from .test_api_pair import A_ADDR, B_ADDR, PORT, VIRTUAL_TIME_LIMIT, connected, payload

TCP = socket.IPPROTO_TCP
LINGER_T = 5  # seconds of SO_LINGER {1, T}
ONE_WAY = ImpairmentSpec(delay=0.05)  # an RTT of 100 ms


async def test_facade_sockopts_are_the_streams(autojump_clock: MockClock) -> None:
    async with connected() as (client, _server, _a, _b):
        facade = client.socket
        facade.setsockopt(TCP, socket.TCP_NODELAY, 0)
        assert facade.getsockopt(TCP, socket.TCP_NODELAY) == 0
        assert client.getsockopt(TCP, socket.TCP_NODELAY) == 0
        facade.setsockopt(TCP, socket.TCP_NODELAY, 1)
        assert facade.getsockopt(TCP, socket.TCP_NODELAY) == 1
        info = facade.getsockopt(TCP, socket.TCP_INFO, 104)
        assert isinstance(info, bytes) and info[0] == 1  # tcpi_state: TCP_ESTABLISHED
        for call, code in ((lambda: facade.setsockopt(TCP, socket.TCP_MAXSEG, 1), errno.EINVAL),
                           (lambda: facade.getsockopt(socket.IPPROTO_IP, 1), errno.ENOPROTOOPT),
                           (lambda: facade.setsockopt(TCP, socket.TCP_CONGESTION, b"nope"),
                            errno.ENOENT)):
            with pytest.raises(OSError) as caught:
                call()
            assert caught.value.errno == code


async def test_so_max_pacing_rate_through_the_api(autojump_clock: MockClock) -> None:
    """SO_MAX_PACING_RATE as the kernel takes it: an int, ~0U for none, 8 bytes for a u64;
    tcp_info reports it and the pacing rate it caps (unset: ~0, and the rate from cwnd and
    SRTT, which paces nothing by default)."""
    async with connected() as (client, _server, _a, _b):
        info = parse_tcp_info(client.getsockopt(TCP, socket.TCP_INFO, 280))
        assert info["tcpi_max_pacing_rate"] == 2**64 - 1
        assert info["tcpi_pacing_rate"] > 125000
        assert client.getsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE) == -1  # ~0U
        client.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, 125000)
        assert client.getsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE) == 125000
        info = parse_tcp_info(client.getsockopt(TCP, socket.TCP_INFO, 280))
        assert info["tcpi_max_pacing_rate"] == info["tcpi_pacing_rate"] == 125000
        client.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, struct.pack("=Q", 2**33))
        raw = client.getsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, 8)
        assert struct.unpack("=Q", raw) == (2**33,)


# ---------------------------------------------------------------------- SO_LINGER {1, T}


class Pluggable:
    """A link whose sending can be cut: a peer that stops acknowledging anything."""

    def __init__(self, inner: Link) -> None:
        self.inner = inner
        self.mtu = inner.mtu
        self.gso_max_size = inner.gso_max_size
        self.tx_csum_offload = inner.tx_csum_offload
        self.unplugged = False

    async def receive_batch(self, unscheduled: bool = False) -> list[ReceivedFrame]:
        return await self.inner.receive_batch(unscheduled)

    def poll_batch(self) -> list[ReceivedFrame]:
        return self.inner.poll_batch()

    def send_batch(self, frames: list[OutFrame]) -> None:
        if not self.unplugged:
            self.inner.send_batch(frames)

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def plugged_pair(one_way: ImpairmentSpec | None, *, plug_client: bool,
                       ) -> AsyncIterator[tuple[TCPStream, TCPStream, Pluggable, Stack]]:
    """A connected pair (``one_way`` delay each way, if any) whose client's or server's
    sending can be cut; the client's stack comes last."""
    ca, cb = Counters(), Counters()
    la, lb = memory_link_pair(impair_a_to_b=one_way, impair_b_to_a=one_way, counters=(ca, cb))
    plug = Pluggable(la if plug_client else lb)
    a = Stack(plug if plug_client else la, StackConfig(), ca, socket.inet_aton(A_ADDR), seed=1)
    b = Stack(lb if plug_client else plug, StackConfig(), cb, socket.inet_aton(B_ADDR), seed=2)
    with trio.fail_after(VIRTUAL_TIME_LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            [listener] = await open_tcp_listeners(b, PORT)
            client = await open_tcp_stream(a, B_ADDR, PORT)
            server = await listener.accept()
            yield client, server, plug, a
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def lingering_pair() -> AsyncIterator[tuple[TCPStream, TCPStream, Pluggable, Stack]]:
    """A connected pair, RTT 100 ms; the client has SO_LINGER {1, LINGER_T}; the server's
    sending can be cut."""
    async with plugged_pair(ONE_WAY, plug_client=False) as (client, server, plug, a):
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, LINGER_T))
        yield client, server, plug, a


async def test_linger_close_returns_when_the_fin_is_acknowledged(
        autojump_clock: MockClock) -> None:
    """SO_LINGER {1, T}: aclose blocks until data and FIN are acknowledged (one RTT here,
    as the data was sent before), then returns long before T, in FIN_WAIT2."""
    data = payload(20000, 3)
    async with lingering_pair() as (client, server, _plug, _a):
        await client.send_all(data)
        start = trio.current_time()
        await client.aclose()
        took = trio.current_time() - start
        assert client.connection.state == State.FIN_WAIT2
        assert 0.1 <= took < 1.0, took  # at least the FIN's round trip; nowhere near T
        got = b""
        while chunk := await server.receive_some():
            got += chunk
        assert got == data


async def test_close_without_linger_does_not_wait(autojump_clock: MockClock) -> None:
    async with lingering_pair() as (client, _server, _plug, _a):
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, LINGER_T))
        await client.send_all(b"x" * 1000)
        start = trio.current_time()
        await client.aclose()
        assert trio.current_time() == start
        assert client.connection.state == State.FIN_WAIT1


async def test_linger_close_returns_at_the_timeout_and_leaves_an_orphan(
        autojump_clock: MockClock) -> None:
    """The peer stops acknowledging: aclose returns at T, not reset; the orphan stays in
    FIN_WAIT1 retransmitting, and completes once the peer acknowledges again."""
    async with lingering_pair() as (client, _server, plug, a):
        plug.unplugged = True
        await client.send_all(b"y" * 3000)
        start = trio.current_time()
        await client.aclose()
        took = trio.current_time() - start
        assert LINGER_T <= took < LINGER_T + 0.01, took
        conn = client.connection
        assert conn.state == State.FIN_WAIT1 and conn.orphan
        stats = a.counters.snapshot()
        assert stats["TcpOutRsts"] == 0
        assert stats["TcpRetransSegs"] >= 3  # RTOs at ~0.2, 0.6, 1.4, 3.0 s
        plug.unplugged = False
        with trio.fail_after(60):
            while conn.state == State.FIN_WAIT1:
                await trio.sleep(0.1)
        assert conn.state == State.FIN_WAIT2


async def test_linger_close_over_unread_data_resets_at_once(autojump_clock: MockClock) -> None:
    """Unread data: close sends RST as without linger (tcp_close), nothing to wait for."""
    async with lingering_pair() as (client, server, _plug, a):
        await server.send_all(b"unread")
        with trio.fail_after(1):
            while not len(client.connection.rcv.rcv_buf):
                await trio.sleep(0.01)
        start = trio.current_time()
        await client.aclose()
        assert trio.current_time() == start
        assert client.connection.state == State.CLOSE
        assert a.counters.snapshot()["TcpExtTCPAbortOnClose"] == 1


async def test_lab_dial_with_linger_reports_the_blocking_close(
        autojump_clock: MockClock) -> None:
    """The demo's lab app: ``dial HOST PORT LPORT LINGER`` closes with SO_LINGER {1, LINGER}
    and replies how long close() blocked (one round trip here); a LINGER out of range is a
    bad request."""
    async with lingering_pair() as (client, server, _plug, a):
        [greeter] = await open_tcp_listeners(a, PORT + 1)

        async def greet() -> None:
            stream = await greeter.accept()
            await stream.send_all(b"hello\n")
            await trio.sleep_forever()  # never closes first: the lab's FIN is just acked

        async with trio.open_nursery() as nursery:
            nursery.start_soon(greet)
            nursery.start_soon(lab.handle, server)
            await client.send_all(f"dial {A_ADDR} {PORT + 1} 0 {LINGER_T}\n".encode()
                                  + f"dial {A_ADDR} {PORT + 1} 0 999\n".encode())
            replies = b""
            while replies.count(b"\n") < 2:
                replies += await client.receive_some()
            ok, bad = replies.decode().splitlines()
            words = ok.split()
            assert words[0] == "ok" and words[3] == "hello", ok
            assert 0.1 <= float(words[2].removeprefix("close=")) < 0.2, ok  # RTT 100 ms
            assert bad == "error bad request: LINGER outside 0..120"
            nursery.cancel_scope.cancel()


async def test_negative_linger_time_is_a_huge_one(autojump_clock: MockClock) -> None:
    """l_linger is unsigned to Linux (sk_setsockopt): {1, -1} waits ~136 years, not 0 s (a
    zero would reset) nor -1 s; here the wait ends only when the orphan gives up."""
    async with lingering_pair() as (client, _server, plug, a):
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, -1))
        plug.unplugged = True
        with trio.move_on_after(50) as waiting:
            await client.aclose()
        assert waiting.cancelled_caught
        assert client.connection.state == State.FIN_WAIT1
        assert a.counters.snapshot()["TcpOutRsts"] == 0
