"""Socket options through the socket layer (ustcp.tcp.sock) on a connected pair, virtual time."""

from __future__ import annotations

import errno
import itertools
import socket
import struct

from ustcp.tcp.connection import Connection
from ustcp.tcp.sock import (
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLOUT,
    POLLRDHUP,
    SIOCINQ,
    SIOCOUTQ,
    SIOCOUTQNSD,
    Sock,
)
from ustcp.tcp.states import State
from ustcp.wire.tcp import ACK, RST

from .harness import A_IP, B_IP, Net
from .util import drain, open_pair

TCP = socket.IPPROTO_TCP
SOL = socket.SOL_SOCKET


def sock_of(net: Net, conn: Connection) -> Sock:
    return Sock(conn.config, conn.sockopts, conn=conn)


def data_from(net: Net, ip: bytes, mark: int) -> list[int]:
    return [len(s.seg.payload) for s in net.log[mark:] if s.src == ip and s.seg.payload]


def test_uncork_sends_what_the_cork_held(net: Net) -> None:
    _, client, _ = open_pair(net)
    s = sock_of(net, client)
    s.setsockopt(net.now, TCP, socket.TCP_CORK, 1)
    mark = len(net.log)
    client.send(net.now, b"x" * 100)
    net.run(net.now + 0.1)
    assert data_from(net, A_IP, mark) == []  # a partial segment waits behind the cork
    s.setsockopt(net.now, TCP, socket.TCP_CORK, 0)
    net.flush()
    assert data_from(net, A_IP, mark) == [100]  # tcp_push_pending_frames at once


def test_nodelay_on_pushes_what_nagle_held(net: Net) -> None:
    _, client, _ = open_pair(net)
    s = sock_of(net, client)
    mark = len(net.log)
    client.send(net.now, b"a" * 10)  # goes: nothing in flight
    client.send(net.now, b"b" * 10)  # Nagle holds it behind the unacknowledged one
    net.flush()
    assert data_from(net, A_IP, mark) == [10]
    s.setsockopt(net.now, TCP, socket.TCP_NODELAY, 1)
    net.flush()
    assert data_from(net, A_IP, mark) == [10, 10]


def test_keepalive_with_keepidle_probes_then_times_out(net: Net) -> None:
    _, client, _server = open_pair(net)
    s = sock_of(net, client)
    s.setsockopt(net.now, SOL, socket.SO_KEEPALIVE, 1)
    s.setsockopt(net.now, TCP, socket.TCP_KEEPIDLE, 10)
    s.setsockopt(net.now, TCP, socket.TCP_KEEPINTVL, 2)
    s.setsockopt(net.now, TCP, socket.TCP_KEEPCNT, 3)
    start = net.now
    net.filter = lambda sent: 0 if sent.dst == B_IP else 1  # the server hears nothing more
    net.run(start + 30.0)
    probes = [s for s in net.log if s.src == A_IP and s.t > start
              and s.seg.flags == ACK and not s.seg.payload]
    times = [p.t - start for p in probes]
    assert len(times) == 3 and 9.9 < times[0] <= 10.0  # idle counts from the last receipt
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [2.0, 2.0]
    assert all(p.seg.seq == (client.snd.snd_una - 1) % (1 << 32) for p in probes)
    rst = [s for s in net.log if s.src == A_IP and s.seg.flags & RST]
    assert [round(r.t - probes[-1].t, 6) for r in rst] == [2.0]
    assert client.state == State.CLOSE
    assert s.poll() & POLLERR
    assert s.getsockopt(net.now, SOL, socket.SO_ERROR) == errno.ETIMEDOUT
    assert s.getsockopt(net.now, SOL, socket.SO_ERROR) == 0  # read and cleared


def test_keepalive_off_stops_the_timer(net: Net) -> None:
    _, client, _ = open_pair(net)
    s = sock_of(net, client)
    s.setsockopt(net.now, SOL, socket.SO_KEEPALIVE, 1)
    s.setsockopt(net.now, TCP, socket.TCP_KEEPIDLE, 5)
    assert client.t_keepalive is not None
    s.setsockopt(net.now, SOL, socket.SO_KEEPALIVE, 0)
    assert client.t_keepalive is None
    mark = len(net.log)
    net.run(net.now + 20.0)
    assert not [x for x in net.log[mark:] if x.src == A_IP]


def test_sndbuf_minimum_is_applied(net: Net) -> None:
    _, client, _ = open_pair(net)
    s = sock_of(net, client)
    s.setsockopt(net.now, SOL, socket.SO_SNDBUF, 1)
    assert s.getsockopt(net.now, SOL, socket.SO_SNDBUF) == 4608
    assert client.snd.send_space == 4608  # was 2: the doubled request without the minimum


def test_rcvbuf_on_a_live_connection(net: Net) -> None:
    _, client, _ = open_pair(net)
    s = sock_of(net, client)
    s.setsockopt(net.now, SOL, socket.SO_RCVBUF, 10000)
    assert client.rcv.rcvbuf == 20000 == s.getsockopt(net.now, SOL, socket.SO_RCVBUF)


def test_tcp_info_bytes_and_maxseg(net: Net) -> None:
    _, client, _ = open_pair(net)
    s = sock_of(net, client)
    raw = s.getsockopt(net.now, TCP, socket.TCP_INFO, 512)
    assert isinstance(raw, bytes) and len(raw) == 280
    state, = struct.unpack_from("=B", raw, 0)
    snd_mss, = struct.unpack_from("=I", raw, 16)
    rtt, = struct.unpack_from("=I", raw, 68)
    assert state == 1  # TCP_ESTABLISHED
    assert snd_mss == 1448 == s.getsockopt(net.now, TCP, socket.TCP_MAXSEG)
    assert 9000 <= rtt <= 11000  # the handshake's 10 ms round trip, in µs


def test_quickack_sends_the_delayed_ack(net: Net) -> None:
    _, client, server = open_pair(net)
    ss = sock_of(net, server)
    ss.setsockopt(net.now, TCP, socket.TCP_QUICKACK, 0)  # pingpong: ACKs are delayed
    assert ss.getsockopt(net.now, TCP, socket.TCP_QUICKACK) == 0
    client.send(net.now, b"q" * 100)
    net.run(net.now + 0.006)  # arrived at the server, whose ACK waits
    assert drain(server, net.now) == b"q" * 100
    assert server.rcv.t_delack is not None  # read, and still not acknowledged
    mark = len(net.log)
    ss.setsockopt(net.now, TCP, socket.TCP_QUICKACK, 1)
    net.flush()
    acks = [x for x in net.log[mark:] if x.src == B_IP and x.seg.flags & ACK]
    assert len(acks) == 1 and acks[0].seg.ack == client.snd.snd_nxt


def test_congestion_control_on_a_live_connection(net: Net) -> None:
    _, client, _ = open_pair(net)
    s = sock_of(net, client)
    assert s.getsockopt(net.now, TCP, socket.TCP_CONGESTION, 16) == b"cubic".ljust(16, b"\0")
    s.setsockopt(net.now, TCP, socket.TCP_CONGESTION, b"reno")
    assert client.snd.cc.name == "reno"
    assert s.getsockopt(net.now, TCP, socket.TCP_CONGESTION, 16) == b"reno".ljust(16, b"\0")


def test_poll_and_ioctl_through_a_close(net: Net) -> None:
    _, client, server = open_pair(net)
    cs, ss = sock_of(net, client), sock_of(net, server)
    assert cs.poll() == POLLOUT | 0x100  # POLLOUT | POLLWRNORM
    net.filter = lambda sent: 0 if sent.src == B_IP else 1  # the server's ACKs are lost
    client.send(net.now, b"z" * 3000)
    net.run(net.now + 0.02)
    assert cs.ioctl(SIOCOUTQ) == 3000
    assert cs.ioctl(SIOCOUTQNSD) == 0
    assert ss.ioctl(SIOCINQ) == 3000
    net.filter = None
    cs.shutdown(net.now, socket.SHUT_WR)
    net.run(net.now + 1.0)
    bits = ss.poll()
    assert bits & (POLLIN | POLLRDHUP) == POLLIN | POLLRDHUP
    assert not bits & POLLHUP
    server.close(net.now)
    net.run(net.now + 1.0)
    assert client.state == State.TIME_WAIT or client.state == State.CLOSE
    assert ss.poll() & POLLHUP
