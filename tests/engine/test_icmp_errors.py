"""ICMP errors reaching TCP (tcp_v4_err, tcp_v6_err, tcp_req_err) on virtual time: the
window check, hard and soft errors in each state, the soft error reported on timeout; and
the whole path from an ICMP frame through the IP layer into the engine."""

from __future__ import annotations

import errno
import socket

import pytest

from ustcp.config import StackConfig
from ustcp.ip import IpLayer
from ustcp.mib import Counters
from ustcp.tcp.engine import TcpEngine
from ustcp.tcp.states import State
from ustcp.wire import icmp, icmpv6
from ustcp.wire.ipv4 import build_ipv4_header
from ustcp.wire.ipv6 import build_ipv6_header
from ustcp.wire.tcp import SYN, TcpOptions, TcpSegment, build_tcp

from .harness import A_IP, A_IP6, B_IP, B_IP6, Net
from .util import open_pair


@pytest.mark.parametrize(("err", "kind"), [
    (errno.ECONNREFUSED, ConnectionRefusedError), (errno.EHOSTUNREACH, OSError),
    (errno.ENETUNREACH, OSError)])
def test_any_error_ends_syn_sent_with_its_errno(err: int, kind: type[OSError]) -> None:
    """tcp_v4_err: in SYN_SENT the attempt ends at once, soft error or hard (RFC 5461 4.1)."""
    engine = TcpEngine(StackConfig(), Counters(), seed=1)
    conn = engine.connect(0.0, A_IP, B_IP, 80)
    assert engine.on_icmp_error(0.5, A_IP, conn.local_port, B_IP, 80, conn.snd.iss, err, False)
    assert conn.state == State.CLOSE and conn.key not in engine.connections
    error = conn.take_error()
    assert type(error) is kind and error.errno == err
    assert engine.counters["TcpAttemptFails"] == 1


def test_error_outside_snd_una_snd_nxt_is_dropped() -> None:
    engine = TcpEngine(StackConfig(), Counters(), seed=1)
    conn = engine.connect(0.0, A_IP, B_IP, 80)
    for seq in (conn.snd.iss - 1, conn.snd.iss + 2):
        engine.on_icmp_error(0.5, A_IP, conn.local_port, B_IP, 80, seq & 0xFFFFFFFF,
                             errno.ECONNREFUSED, True)
    assert conn.state == State.SYN_SENT and conn.take_error() is None
    assert engine.counters["TcpExtOutOfWindowIcmps"] == 2


def test_established_remembers_a_soft_error_and_reports_it_on_timeout() -> None:
    net = Net()
    _, client, server = open_pair(net)
    net.filter = lambda sent: 0  # the path dies
    client.send(net.now, b"x" * 1000)
    net.run(net.now + 0.01)
    net.a.on_icmp_error(net.now, A_IP, client.local_port, B_IP, 80, client.snd.snd_una,
                        errno.EHOSTUNREACH, False)
    assert client.state == State.ESTABLISHED and client.take_error() is None
    assert client.err_soft == errno.EHOSTUNREACH
    net.run(net.now + 2000, stop=lambda: client.state == State.CLOSE)
    error = client.take_error()
    assert error is not None and error.errno == errno.EHOSTUNREACH  # not ETIMEDOUT
    assert net.a.counters["TcpExtTCPAbortOnTimeout"] == 1
    assert server.state == State.ESTABLISHED


def test_timeout_without_icmp_is_etimedout() -> None:
    net = Net()
    _, client, _ = open_pair(net)
    net.filter = lambda sent: 0
    client.send(net.now, b"x")
    net.run(net.now + 2000, stop=lambda: client.state == State.CLOSE)
    error = client.take_error()
    assert isinstance(error, TimeoutError)


@pytest.mark.parametrize(("fatal", "dropped"), [(True, True), (False, False)])
def test_request_sock_dropped_only_by_a_fatal_error(fatal: bool, dropped: bool) -> None:
    engine = TcpEngine(StackConfig(), Counters(), seed=1)
    listener = engine.listen(0.0, B_IP6, 80, 16)
    engine.on_segment(0.0, A_IP6, B_IP6, TcpSegment(40000, 80, 7, 0, SYN, 64240,
                                                    TcpOptions(mss=1440)))
    [(_, _, synack)] = engine.take_output()
    key = (B_IP6, 80, A_IP6, 40000)
    assert engine.on_icmp_error(1.0, *key, (synack.seq + 5) & 0xFFFFFFFF, errno.EPROTO, True)
    assert listener.syn_queue_len == 1 and engine.counters["TcpExtOutOfWindowIcmps"] == 1
    engine.on_icmp_error(1.0, *key, synack.seq, errno.EHOSTUNREACH, fatal)
    assert listener.syn_queue_len == (0 if dropped else 1)
    assert engine.counters["TcpExtListenDrops"] == (1 if dropped else 0)


def test_time_wait_ignores_errors_and_unknown_4_tuples_are_reported() -> None:
    net = Net()
    _, client, server = open_pair(net)
    client.close(net.now)
    net.run(net.now + 0.1)
    server.close(net.now)
    net.run(net.now + 0.1)
    assert client.key in net.a.time_wait.entries
    assert net.a.on_icmp_error(net.now, *client.key, 0, errno.ECONNREFUSED, True)
    assert client.key in net.a.time_wait.entries
    assert not net.a.on_icmp_error(net.now, A_IP, 1, B_IP, 2, 0, errno.ECONNREFUSED, True)


# ------------------------------------------------------------------ through the IP layer


def stack(addr: bytes) -> tuple[IpLayer, TcpEngine]:
    counters = Counters()
    engine = TcpEngine(StackConfig(), counters, seed=1)
    return IpLayer(engine, counters, {addr}, StackConfig()), engine


def test_port_unreachable_frame_refuses_connect_v4() -> None:
    ip, engine = stack(A_IP)
    conn = engine.connect(0.0, A_IP, B_IP, 80)
    [(syn_frame, _)] = ip.take_frames()
    message = icmp.build_error(icmp.DEST_UNREACH, icmp.PORT_UNREACH, 0, syn_frame[:28])
    router = socket.inet_aton("10.0.0.254")
    ip.on_frame(0.2, build_ipv4_header(router, A_IP, 1, len(message), ttl=64, ident=1,
                                       dont_fragment=False) + message)
    error = conn.take_error()
    assert isinstance(error, ConnectionRefusedError) and conn.state == State.CLOSE
    assert engine.counters["IcmpInDestUnreachs"] == 1
    assert engine.counters["IcmpInErrors"] == 0


def test_icmpv6_unreachable_through_extension_headers_v6() -> None:
    ip, engine = stack(A_IP6)
    conn = engine.connect(0.0, A_IP6, B_IP6, 80)
    [(syn_frame, _)] = ip.take_frames()
    router = socket.inet_pton(socket.AF_INET6, "fd00::fe")
    message = icmpv6.build_error(router, A_IP6, icmpv6.DEST_UNREACH, icmpv6.UNREACH_ADDR, 0,
                                 syn_frame)
    ip.on_frame(0.2, build_ipv6_header(router, A_IP6, 58, len(message)) + message)
    error = conn.take_error()
    assert error is not None and error.errno == errno.EHOSTUNREACH
    assert engine.counters["Icmp6InDestUnreachs"] == 1


def test_error_for_no_socket_counts_an_icmp_input_error() -> None:
    ip, engine = stack(A_IP)
    seg = TcpSegment(40000, 80, 5, 0, SYN, 100, TcpOptions())
    quoted = build_ipv4_header(A_IP, B_IP, 6, 20, ttl=64, ident=1) \
        + build_tcp(seg, A_IP, B_IP, checksum="full")
    message = icmp.build_error(icmp.DEST_UNREACH, icmp.PORT_UNREACH, 0, quoted)
    ip.on_frame(0.0, build_ipv4_header(B_IP, A_IP, 1, len(message), ttl=64, ident=1)
                + message)
    assert engine.counters["IcmpInErrors"] == 1
