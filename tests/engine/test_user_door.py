"""The one door user calls go through (TcpEngine.release, Stack.call): a connection's user
methods arm timers without telling anyone; the engine reads them when the call is released.
Without the door, a send or close whose every segment is lost would never be retransmitted:
nothing else would ever make the engine look at that connection again."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from ustcp.tcp.states import State

from .harness import A_IP, B_IP, Net
from .test_api_pair import payload, receive_all
from .test_api_sockopts import plugged_pair
from .util import open_pair

CUT = 0.5  # seconds the client's first transmissions are lost for
IDLE = 5.0  # seconds of quiet before the cut
KEEPIDLE = 10  # TCP_KEEPIDLE of the listener whose child is tested


def test_user_call_timers_are_read_at_release(net: Net) -> None:
    """conn.send arms the RTO; the engine sees that deadline only once the call is
    released, and then exactly the connection's own."""
    _listener, client, _server = open_pair(net)
    net.run(net.now + 2.0)  # the handshake's stale heap entries fire and go
    assert net.a.next_deadline() is None  # established, idle: nothing armed
    client.send(net.now, b"x" * 100)
    assert client.deadline is not None  # the RTO, armed by the send
    assert net.a.next_deadline() is None  # not released yet: the engine has not looked
    net.a.release(client)
    assert net.a.next_deadline() == client.deadline


def test_listener_children_timers_are_read(net: Net) -> None:
    """A child the listener makes while the engine hands it the handshake's last ACK is
    born with a keepalive timer (SO_KEEPALIVE inherited, tcp_init_transfer); the engine
    reads it (TcpEngine._settle) though it handed the segment to the listener, not the
    child: after TCP_KEEPIDLE of silence the server probes."""
    listener = net.b.listen(net.now, B_IP, 80, 16)
    listener.sockopts.keepalive = True
    listener.sockopts.keepidle = KEEPIDLE
    net.a.connect(net.now, A_IP, B_IP, 80)
    net.run(net.now + 1.0, stop=lambda: listener.accept_queue_len > 0)
    child = listener.accept()
    assert child is not None and child.t_keepalive is not None
    assert child.heap_when == child.deadline  # in the engine's heap, no harness release yet
    born = net.now
    net.run(born + KEEPIDLE + 1.0)
    probes = [s for s in net.sent_by(B_IP) if s.t > born + KEEPIDLE - 0.5]
    assert probes and probes[0].t == pytest.approx(born + KEEPIDLE, abs=0.1)


async def _lossy_start_pair(autojump_clock: MockClock, close: bool) -> None:
    data = payload(3000, 7)
    async with plugged_pair(None, plug_client=True) as (client, server, plug, a):
        ca = a.counters
        await trio.sleep(IDLE)  # the handshake's heap entries have fired and gone
        plug.unplugged = True  # everything the client sends now is lost
        await client.send_all(data)
        if close:
            await client.aclose()
        await trio.sleep(CUT)
        plug.unplugged = False  # only the RTO the door armed can resend it
        if close:
            assert await receive_all(server) == data
            assert server.connection.state == State.CLOSE_WAIT
        else:
            got = b""
            while len(got) < len(data):
                got += await server.receive_some()
            assert got == data
        assert ca["TcpRetransSegs"] >= 1


async def test_lost_send_is_retransmitted(autojump_clock: MockClock) -> None:
    await _lossy_start_pair(autojump_clock, close=False)


async def test_lost_close_is_retransmitted(autojump_clock: MockClock) -> None:
    await _lossy_start_pair(autojump_clock, close=True)
