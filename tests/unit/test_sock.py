"""The socket layer's option table without a connection: ranges, errno, doubling, read-back.

The expected values are what Linux 6.18 answers on a fresh TCP socket (checked with Python's
socket module on this kernel, net.core.wmem_max/rmem_max at their defaults of 212992).
"""

from __future__ import annotations

import dataclasses
import errno
import socket
import struct

import pytest

from ustcp.config import StackConfig
from ustcp.mib import Counters
from ustcp.tcp.engine import TcpEngine
from ustcp.tcp.options import SockOpts
from ustcp.tcp.sock import (
    POLLHUP,
    POLLOUT,
    POLLWRNORM,
    RMEM_MAX,
    SIOCINQ,
    Sock,
)
from ustcp.tcp.tcpinfo import TCP_INFO_SIZE, pack_tcp_info

TCP = socket.IPPROTO_TCP
SOL = socket.SOL_SOCKET


def fresh() -> Sock:
    return Sock(StackConfig())


def test_defaults_read_back_as_linux() -> None:
    s = fresh()
    assert s.getsockopt(0.0, SOL, socket.SO_SNDBUF) == 16384
    assert s.getsockopt(0.0, SOL, socket.SO_RCVBUF) == 131072
    assert s.getsockopt(0.0, TCP, socket.TCP_MAXSEG) == 536
    assert s.getsockopt(0.0, TCP, socket.TCP_KEEPIDLE) == 7200
    assert s.getsockopt(0.0, TCP, socket.TCP_KEEPINTVL) == 75
    assert s.getsockopt(0.0, TCP, socket.TCP_KEEPCNT) == 9
    assert s.getsockopt(0.0, TCP, socket.TCP_LINGER2) == 60
    assert s.getsockopt(0.0, TCP, socket.TCP_QUICKACK) == 1
    assert s.getsockopt(0.0, TCP, socket.TCP_CONGESTION, 16) == b"cubic".ljust(16, b"\0")
    assert s.getsockopt(0.0, SOL, socket.SO_LINGER, 8) == bytes(8)
    assert s.getsockopt(0.0, SOL, socket.SO_TYPE) == socket.SOCK_STREAM
    assert s.getsockopt(0.0, SOL, socket.SO_ACCEPTCONN) == 0
    assert s.getsockopt(0.0, SOL, socket.SO_ERROR) == 0


def test_buffers_double_with_linux_minimums_and_maximums() -> None:
    s = fresh()
    s.setsockopt(0.0, SOL, socket.SO_SNDBUF, 1)
    assert s.getsockopt(0.0, SOL, socket.SO_SNDBUF) == 4608  # SOCK_MIN_SNDBUF
    s.setsockopt(0.0, SOL, socket.SO_RCVBUF, 1)
    assert s.getsockopt(0.0, SOL, socket.SO_RCVBUF) == 2304  # SOCK_MIN_RCVBUF
    s.setsockopt(0.0, SOL, socket.SO_RCVBUF, 10**7)
    assert s.getsockopt(0.0, SOL, socket.SO_RCVBUF) == 2 * RMEM_MAX
    s.setsockopt(0.0, SOL, socket.SO_SNDBUF, -1)  # min_t(u32, ...): a huge request
    assert s.getsockopt(0.0, SOL, socket.SO_SNDBUF) == 2 * 212992
    s.setsockopt(0.0, SOL, socket.SO_SNDBUF, 50000)
    assert s.getsockopt(0.0, SOL, socket.SO_SNDBUF) == 100000


@pytest.mark.parametrize(("option", "bad", "good"), [
    (socket.TCP_MAXSEG, 87, 88), (socket.TCP_MAXSEG, 32768, 32767),
    (socket.TCP_KEEPIDLE, 0, 1), (socket.TCP_KEEPIDLE, 32768, 32767),
    (socket.TCP_KEEPINTVL, 32768, 32767), (socket.TCP_KEEPCNT, 128, 127),
])
def test_out_of_range_values_are_einval(option: int, bad: int, good: int) -> None:
    s = fresh()
    with pytest.raises(OSError) as info:
        s.setsockopt(0.0, TCP, option, bad)
    assert info.value.errno == errno.EINVAL
    s.setsockopt(0.0, TCP, option, good)
    assert s.getsockopt(0.0, TCP, option) == good


def test_errno_for_unknown_short_and_get_only_options() -> None:
    s = fresh()
    for level, option, value, code in [
        (TCP, 9999, 1, errno.ENOPROTOOPT),
        (SOL, socket.SO_ERROR, 1, errno.ENOPROTOOPT),
        (TCP, socket.TCP_INFO, 1, errno.ENOPROTOOPT),
        (socket.IPPROTO_IPV6, 1, 1, errno.ENOPROTOOPT),
        (TCP, socket.TCP_CONGESTION, b"foo", errno.ENOENT),
        (TCP, socket.TCP_NODELAY, b"\x01", errno.EINVAL),  # optlen < sizeof(int)
        (SOL, socket.SO_LINGER, 1, errno.EINVAL),  # optlen < sizeof(struct linger)
    ]:
        with pytest.raises(OSError) as info:
            s.setsockopt(0.0, level, option, value)
        assert info.value.errno == code, (level, option)
    with pytest.raises(OSError) as info:
        s.getsockopt(0.0, TCP, 9999)
    assert info.value.errno == errno.ENOPROTOOPT


def test_boolean_options_read_back_as_one() -> None:
    s = fresh()
    for level, option in [(TCP, socket.TCP_NODELAY), (TCP, socket.TCP_CORK),
                          (SOL, socket.SO_KEEPALIVE), (SOL, socket.SO_REUSEADDR)]:
        s.setsockopt(0.0, level, option, 5)
        assert s.getsockopt(0.0, level, option) == 1
        s.setsockopt(0.0, level, option, struct.pack("=i", 0))
        assert s.getsockopt(0.0, level, option) == 0


def test_linger_linger2_defer_accept_quickack_congestion() -> None:
    s = fresh()
    s.setsockopt(0.0, SOL, socket.SO_LINGER, struct.pack("=ii", 1, 5))
    assert struct.unpack("=ii", s.getsockopt(0.0, SOL, socket.SO_LINGER, 8)) == (1, 5)
    s.setsockopt(0.0, SOL, socket.SO_LINGER, struct.pack("=ii", 0, 9))
    assert struct.unpack("=ii", s.getsockopt(0.0, SOL, socket.SO_LINGER, 8)) == (0, 5)
    s.setsockopt(0.0, TCP, socket.TCP_LINGER2, 500)
    assert s.getsockopt(0.0, TCP, socket.TCP_LINGER2) == 120  # TCP_FIN_TIMEOUT_MAX
    s.setsockopt(0.0, TCP, socket.TCP_LINGER2, -5)
    assert s.getsockopt(0.0, TCP, socket.TCP_LINGER2) == -1
    s.setsockopt(0.0, TCP, socket.TCP_DEFER_ACCEPT, 5)
    assert s.getsockopt(0.0, TCP, socket.TCP_DEFER_ACCEPT) == 7  # whole SYN-ACK periods
    s.setsockopt(0.0, TCP, socket.TCP_QUICKACK, 0)
    assert s.getsockopt(0.0, TCP, socket.TCP_QUICKACK) == 0
    s.setsockopt(0.0, TCP, socket.TCP_CONGESTION, b"reno\0")
    assert s.getsockopt(0.0, TCP, socket.TCP_CONGESTION, 4) == b"reno"
    assert s.opts.congestion == "reno"


def test_fresh_socket_poll_and_ioctl() -> None:
    s = fresh()
    assert s.poll() == POLLOUT | POLLWRNORM | POLLHUP
    assert s.ioctl(SIOCINQ) == 0
    with pytest.raises(OSError) as info:
        s.ioctl(0x1234)
    assert info.value.errno == errno.ENOTTY
    with pytest.raises(OSError) as info:
        s.shutdown(0.0, socket.SHUT_WR)
    assert info.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as info:
        s.shutdown(0.0, 7)
    assert info.value.errno == errno.EINVAL


def test_tcp_info_layout_is_linux_struct() -> None:
    """Offsets of struct tcp_info (include/uapi/linux/tcp.h) as the kernel lays it out."""
    raw = pack_tcp_info({"tcpi_state": 1, "tcpi_snd_wscale": 7, "tcpi_rcv_wscale": 9,
                         "tcpi_rto": 204000, "tcpi_snd_mss": 1448, "tcpi_rtt": 1234,
                         "tcpi_snd_cwnd": 10, "tcpi_bytes_acked": 1 << 40,
                         "tcpi_snd_wnd": 65535, "tcpi_total_rto_time": 77})
    assert len(raw) == TCP_INFO_SIZE == 280
    assert raw[0] == 1 and raw[6] == 7 | 9 << 4
    assert struct.unpack_from("=I", raw, 8)[0] == 204000  # tcpi_rto
    assert struct.unpack_from("=I", raw, 16)[0] == 1448  # tcpi_snd_mss
    assert struct.unpack_from("=I", raw, 68)[0] == 1234  # tcpi_rtt
    assert struct.unpack_from("=I", raw, 80)[0] == 10  # tcpi_snd_cwnd
    assert struct.unpack_from("=Q", raw, 120)[0] == 1 << 40  # tcpi_bytes_acked
    assert struct.unpack_from("=I", raw, 228)[0] == 65535  # tcpi_snd_wnd
    assert struct.unpack_from("=I", raw, 244)[0] == 77  # tcpi_total_rto_time


def test_v6only_is_set_before_the_socket_is_bound_and_einval_after() -> None:
    """IPV6_V6ONLY (do_ipv6_setsockopt): read back as set; refused once the socket is a
    listener or a connection, as Linux refuses it once bound."""
    s = fresh()
    assert s.getsockopt(0.0, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
    s.setsockopt(0.0, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    assert s.opts.v6only and s.getsockopt(0.0, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    engine = TcpEngine(StackConfig(), Counters(), seed=1)
    bound = Sock(StackConfig(), listener=engine.listen(0.0, bytes(16), 80, 16, s.opts))
    assert bound.listener is not None and bound.listener.sockopts.v6only
    with pytest.raises(OSError) as info:
        bound.setsockopt(0.0, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    assert info.value.errno == errno.EINVAL


def test_data_calls_and_accept_on_a_fresh_socket() -> None:
    """On a socket that never connected, as Linux 6.18 answers: send(2) EPIPE, recv(2)
    ENOTCONN; accept(2) on a socket that is not listening: EINVAL (inet_csk_accept)."""
    s = fresh()
    for call, code in ((lambda: s.send(0.0, b"x"), errno.EPIPE),
                       (lambda: s.recv(0.0, 10), errno.ENOTCONN),
                       (lambda: s.accept(0.0), errno.EINVAL)):
        with pytest.raises(OSError) as caught:
            call()
        assert caught.value.errno == code
    s.abort(0.0)  # nothing to reset: a no-op, as close(2) on a fresh socket


def test_sockopts_copy_takes_every_field() -> None:
    """An accepted connection inherits every option of its listener: SockOpts.copy spells
    the fields out, so a field added later and left out of it fails here."""
    changed = {}
    for f in dataclasses.fields(SockOpts):
        default = f.default
        if isinstance(default, bool):
            changed[f.name] = not default
        elif isinstance(default, int):
            changed[f.name] = default + 7
        elif f.name == "linger":
            changed[f.name] = (True, 5)
        elif f.name == "congestion":
            changed[f.name] = "reno"
        else:
            changed[f.name] = 3
    opts = SockOpts(**changed)
    copy = opts.copy()
    assert copy is not opts
    assert dataclasses.asdict(copy) == changed


def test_tcp_syncnt_range_and_default() -> None:
    """TCP_SYNCNT as Linux 6.18 answers: 1..127 (EINVAL outside), read back; unset it reads
    net.ipv4.tcp_syn_retries."""
    s = fresh()
    assert s.getsockopt(0.0, TCP, socket.TCP_SYNCNT) == 6
    for bad in (0, 128, -1):
        with pytest.raises(OSError) as caught:
            s.setsockopt(0.0, TCP, socket.TCP_SYNCNT, bad)
        assert caught.value.errno == errno.EINVAL
    s.setsockopt(0.0, TCP, socket.TCP_SYNCNT, 127)
    assert s.getsockopt(0.0, TCP, socket.TCP_SYNCNT) == 127
