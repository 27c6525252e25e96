"""The socket layer, sans-IO: what setsockopt, getsockopt, poll, ioctl, shutdown and close do
to a TCP socket, with Linux's semantics (net/core/sock.c sk_setsockopt/sk_getsockopt,
net/ipv4/tcp.c do_tcp_setsockopt/do_tcp_getsockopt, tcp_poll, tcp_ioctl, inet_shutdown).

A :class:`Sock` is one socket: its options (:class:`~ustcp.tcp.options.SockOpts`) and the
connection or listener it has become. The trio API (``ustcp.api``) and the packetdrill runner
both go through it, so an option means the same thing to a program and to a script.
Errors are ``OSError`` with Linux's errno: EINVAL for a value out of range or too short,
ENOPROTOOPT for an option (or level) the socket does not have, ENOENT for an unknown
congestion control.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
from typing import Final

from ..config import StackConfig
from .congestion import AVAILABLE
from .connection import Connection
from .fastopen import TFO_CLIENT_ENABLE
from .listener import Listener
from .options import (
    TCP_MIN_MSS,
    TCP_MSS_DEFAULT,
    SockOpts,
    rcvbuf_size,
    retrans_to_secs,
    secs_to_retrans,
    sndbuf_size,
)
from .pacing import PACING_UNLIMITED
from .states import State
from .tcpinfo import pack_tcp_info

SOL_SOCKET: Final = socket.SOL_SOCKET
IPPROTO_TCP: Final = socket.IPPROTO_TCP
IPPROTO_IPV6: Final = socket.IPPROTO_IPV6

# Linux's defaults for net.core.wmem_max / rmem_max: SO_SNDBUF / SO_RCVBUF clamp to them.
WMEM_MAX: Final = 212992
RMEM_MAX: Final = 212992
MAX_TCP_WINDOW: Final = 32767  # the largest TCP_MAXSEG (include/net/tcp.h MAX_TCP_WINDOW)
MAX_TCP_KEEPIDLE: Final = 32767
MAX_TCP_KEEPINTVL: Final = 32767
MAX_TCP_KEEPCNT: Final = 127
MAX_TCP_SYNCNT: Final = 127
TCP_FIN_TIMEOUT_MAX: Final = 120  # seconds: the largest TCP_LINGER2
TCP_CA_NAME_MAX: Final = 16
TCP_FASTOPEN_CONNECT: Final = 30  # include/uapi/linux/tcp.h (Python's socket module lacks it)

SIOCINQ: Final = 0x541B  # = FIONREAD
SIOCOUTQ: Final = 0x5411  # = TIOCOUTQ
SIOCOUTQNSD: Final = 0x894B

TCP_NOTSENT_LOWAT: Final = 25  # linux/tcp.h (Python's socket module lacks it)
SO_MAX_PACING_RATE: Final = 47  # asm-generic/socket.h (Python's socket module lacks it)
TCP_INQ: Final = 36  # linux/tcp.h, also the control message's type (TCP_CM_INQ)
TCP_CM_INQ: Final = TCP_INQ

POLLIN: Final = select.POLLIN
POLLOUT: Final = select.POLLOUT
POLLERR: Final = select.POLLERR
POLLHUP: Final = select.POLLHUP
POLLRDNORM: Final = select.POLLRDNORM
POLLWRNORM: Final = select.POLLWRNORM
POLLRDHUP: Final = 0x2000

# The option table: every (level, option) this layer has. Others are ENOPROTOOPT.
OPTIONS: dict[int, frozenset[int]] = {
    SOL_SOCKET: frozenset({
        socket.SO_REUSEADDR, socket.SO_KEEPALIVE, socket.SO_LINGER, socket.SO_SNDBUF,
        socket.SO_RCVBUF, socket.SO_ERROR, socket.SO_TYPE, socket.SO_DOMAIN,
        socket.SO_PROTOCOL, socket.SO_ACCEPTCONN, SO_MAX_PACING_RATE}),
    IPPROTO_TCP: frozenset({
        socket.TCP_NODELAY, socket.TCP_CORK, socket.TCP_MAXSEG, socket.TCP_KEEPIDLE,
        socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT, socket.TCP_LINGER2, socket.TCP_DEFER_ACCEPT,
        socket.TCP_QUICKACK, socket.TCP_CONGESTION, socket.TCP_INFO, socket.TCP_FASTOPEN,
        TCP_FASTOPEN_CONNECT, socket.TCP_USER_TIMEOUT, TCP_NOTSENT_LOWAT, TCP_INQ,
        socket.TCP_SYNCNT}),
    IPPROTO_IPV6: frozenset({socket.IPV6_V6ONLY}),
}

_PRE_ESTABLISHED: Final = (State.SYN_SENT, State.SYN_RECV)
_NOT_CONNECTED: Final = (State.CLOSE, State.LISTEN)
_FIN_UNACKED: Final = (State.FIN_WAIT1, State.CLOSING, State.LAST_ACK)

def os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _int_value(value: int | bytes) -> int:
    """An int option's value: an int, or at least 4 bytes of one (optlen < sizeof(int) is
    EINVAL)."""
    if isinstance(value, int):
        return value
    if len(value) < 4:
        raise os_error(errno.EINVAL)
    return int.from_bytes(value[:4], "little", signed=True)


def _ranged(val: int, low: int, high: int) -> int:
    """``val``, or EINVAL when it is outside [low, high] (do_tcp_setsockopt's checks)."""
    if not low <= val <= high:
        raise os_error(errno.EINVAL)
    return val


class Sock:
    """One TCP socket: its options and the connection or listener it has become."""

    __slots__ = ("config", "conn", "defer_connect", "listener", "opts", "pingpong")

    def __init__(self, config: StackConfig, opts: SockOpts | None = None, *,
                 conn: Connection | None = None, listener: Listener | None = None) -> None:
        self.config = config
        self.opts = opts if opts is not None else SockOpts()
        self.conn = conn
        self.listener = listener
        self.pingpong = False  # TCP_QUICKACK 0 on a socket with no connection yet
        # inet->defer_connect: a TCP_FASTOPEN_CONNECT connect() with a cookie returned at
        # once, and the first write makes the SYN with its data
        self.defer_connect = False

    # ------------------------------------------------------------------ setsockopt

    def setsockopt(self, now: float, level: int, optname: int, value: int | bytes) -> None:
        if level == SOL_SOCKET:
            self._set_socket(now, optname, value)
        elif level == IPPROTO_TCP:
            self._set_tcp(now, optname, value)
        elif level == IPPROTO_IPV6 and optname == socket.IPV6_V6ONLY:
            # do_ipv6_setsockopt: only before the socket is bound (a listener or a
            # connection here), else EINVAL. (ustcp's sockets are of both families until
            # bound; Linux answers ENOPROTOOPT on an AF_INET socket.)
            if self.conn is not None or self.listener is not None:
                raise os_error(errno.EINVAL)
            self.opts.v6only = bool(_int_value(value))
        else:
            raise os_error(errno.ENOPROTOOPT)

    def _set_socket(self, now: float, optname: int, value: int | bytes) -> None:
        """sk_setsockopt."""
        opts, conn = self.opts, self.conn
        if optname == socket.SO_LINGER:
            if isinstance(value, int) or len(value) < 8:
                raise os_error(errno.EINVAL)
            onoff, seconds = struct.unpack_from("=ii", value)
            if onoff:
                opts.linger = (True, seconds)
            else:  # the linger time is kept, the flag cleared
                opts.linger = (False, opts.linger[1] if opts.linger else 0)
            return
        if optname == SO_MAX_PACING_RATE:
            # An unsigned long: 8 bytes when given as many, else an int whose ~0U means
            # no limit (sk_setsockopt)
            if isinstance(value, bytes) and len(value) >= 8:
                rate = int.from_bytes(value[:8], "little")
            else:
                rate = _int_value(value) & 0xFFFFFFFF
                if rate == 0xFFFFFFFF:
                    rate = PACING_UNLIMITED
            opts.max_pacing_rate = rate
            if conn is not None:
                conn.snd.set_max_pacing_rate()
            return
        val = _int_value(value)
        if optname == socket.SO_REUSEADDR:
            opts.reuseaddr = bool(val)
        elif optname == socket.SO_KEEPALIVE:
            opts.keepalive = bool(val)
            if conn is not None:
                conn.keepalive_changed(now)
        elif optname == socket.SO_SNDBUF:
            # min_t(u32, val, wmem_max): a negative value is a huge one. 0 still locks the
            # buffer (at its minimum), hence at least 1.
            opts.sndbuf = max(min(val & 0xFFFFFFFF, WMEM_MAX), 1)
            if conn is not None:
                conn.host.wake(conn)  # writers may now have room, or none
        elif optname == socket.SO_RCVBUF:
            opts.rcvbuf = max(min(val & 0xFFFFFFFF, RMEM_MAX), 1)
            if conn is not None:
                conn.rcv.set_rcvbuf(rcvbuf_size(self.config, opts))
        else:
            raise os_error(errno.ENOPROTOOPT)

    def _set_tcp(self, now: float, optname: int, value: int | bytes) -> None:
        """do_tcp_setsockopt."""
        opts, conn = self.opts, self.conn
        if optname == socket.TCP_CONGESTION:
            raw = value.to_bytes(4, "little") if isinstance(value, int) else bytes(value)
            if not raw:
                raise os_error(errno.EINVAL)
            name = raw[:TCP_CA_NAME_MAX].split(b"\0", 1)[0].decode("ascii", "replace")
            if name not in AVAILABLE:
                raise os_error(errno.ENOENT)
            opts.congestion = name
            if conn is not None:
                conn.snd.set_congestion_control(now, name)
            return
        val = _int_value(value)
        if optname == socket.TCP_NODELAY:
            opts.nodelay = bool(val)
            if val and conn is not None:
                conn.push_pending(now, nagle_push=True)  # __tcp_sock_set_nodelay
        elif optname == socket.TCP_CORK:
            opts.cork = bool(val)
            if not val and conn is not None:
                conn.push_pending(now, nagle_push=opts.nodelay)  # __tcp_sock_set_cork
        elif optname == socket.TCP_MAXSEG:
            opts.maxseg = _ranged(val, TCP_MIN_MSS, MAX_TCP_WINDOW) if val else 0
        elif optname == socket.TCP_KEEPIDLE:
            opts.keepidle = _ranged(val, 1, MAX_TCP_KEEPIDLE)
            if conn is not None and opts.keepalive:
                conn.keepalive_changed(now)
        elif optname == socket.TCP_KEEPINTVL:
            opts.keepintvl = _ranged(val, 1, MAX_TCP_KEEPINTVL)
        elif optname == socket.TCP_KEEPCNT:
            opts.keepcnt = _ranged(val, 1, MAX_TCP_KEEPCNT)
        elif optname == socket.TCP_LINGER2:
            # < 0: no FIN_WAIT2 at all; 0: net.ipv4.tcp_fin_timeout; at most 120 s.
            opts.linger2 = -1 if val < 0 else min(val, TCP_FIN_TIMEOUT_MAX) if val else None
        elif optname == socket.TCP_DEFER_ACCEPT:
            opts.defer_accept = max(val, 0)
        elif optname == socket.TCP_SYNCNT:
            opts.syncnt = _ranged(val, 1, MAX_TCP_SYNCNT)  # tcp_sock_set_syncnt
        elif optname == socket.TCP_USER_TIMEOUT:
            if val < 0:
                raise os_error(errno.EINVAL)  # tcp_sock_set_user_timeout
            opts.user_timeout = val
        elif optname == TCP_INQ:
            opts.recvmsg_inq = bool(_ranged(val, 0, 1))
        elif optname == TCP_NOTSENT_LOWAT:
            opts.notsent_lowat = val & 0xFFFFFFFF  # a u32 (do_tcp_setsockopt)
            if conn is not None:
                conn.host.wake(conn)  # sk_write_space: writers may now have room, or none
        elif optname == TCP_FASTOPEN_CONNECT:
            # do_tcp_setsockopt: 0 or 1, only with the client bit, only before connect().
            if not 0 <= val <= 1:
                raise os_error(errno.EINVAL)
            if not self.config.tcp_fastopen & TFO_CLIENT_ENABLE:
                raise os_error(errno.EOPNOTSUPP)
            if conn is not None or self.listener is not None:
                raise os_error(errno.EINVAL)
            opts.fastopen_connect = bool(val)
        elif optname == socket.TCP_FASTOPEN:
            # Only before or in LISTEN (do_tcp_setsockopt: TCPF_CLOSE | TCPF_LISTEN).
            if conn is not None or val < 0:
                raise os_error(errno.EINVAL)
            opts.fastopen = val
        elif optname == socket.TCP_QUICKACK:
            if conn is not None:
                conn.set_quickack(now, val)
            else:
                self.pingpong = not val
        else:
            raise os_error(errno.ENOPROTOOPT)

    # ------------------------------------------------------------------ getsockopt

    def getsockopt(self, now: float, level: int, optname: int, buflen: int = 0) -> int | bytes:
        """An option's value: an int when ``buflen`` is 0 (as Python's socket.getsockopt),
        else at most ``buflen`` bytes of what the kernel copies out."""
        if buflen < 0:
            raise os_error(errno.EINVAL)
        value: int | bytes
        if level == SOL_SOCKET and optname == SO_MAX_PACING_RATE:
            # 8 bytes for a buffer that holds them, else capped to a u32 (sk_getsockopt)
            rate = self.opts.max_pacing_rate
            value = struct.pack("=Q", rate) if buflen >= 8 else \
                struct.pack("=I", min(rate, 0xFFFFFFFF))
        elif level == SOL_SOCKET:
            value = self._get_socket(optname)
        elif level == IPPROTO_TCP:
            value = self._get_tcp(now, optname)
        elif level == IPPROTO_IPV6 and optname == socket.IPV6_V6ONLY:
            value = int(self.opts.v6only)
        else:
            raise os_error(errno.ENOPROTOOPT)
        if isinstance(value, int):
            return value if not buflen else struct.pack("=i", value)[:buflen]
        return value[:buflen] if buflen else int.from_bytes(value[:4], "little", signed=True)

    def _get_socket(self, optname: int) -> int | bytes:
        """sk_getsockopt."""
        opts, conn = self.opts, self.conn
        if optname == socket.SO_ERROR:
            err = conn.take_error() if conn is not None else None
            return err.errno or 0 if err is not None else 0
        if optname == socket.SO_REUSEADDR:
            return int(opts.reuseaddr)
        if optname == socket.SO_KEEPALIVE:
            return int(opts.keepalive)
        if optname == socket.SO_LINGER:
            onoff, seconds = opts.linger or (False, 0)
            return struct.pack("=ii", int(onoff), seconds)
        if optname == socket.SO_SNDBUF:
            return sndbuf_size(opts) or self.config.tcp_wmem[1]
        if optname == socket.SO_RCVBUF:
            return rcvbuf_size(self.config, opts)
        if optname == socket.SO_TYPE:
            return socket.SOCK_STREAM
        if optname == socket.SO_DOMAIN:
            owner = conn.local_ip if conn is not None else \
                self.listener.local_ip if self.listener is not None else b""
            return socket.AF_INET6 if len(owner) == 16 else socket.AF_INET
        if optname == socket.SO_PROTOCOL:
            return IPPROTO_TCP
        if optname == socket.SO_ACCEPTCONN:
            return int(self.listener is not None and not self.listener.closed)
        raise os_error(errno.ENOPROTOOPT)

    def _get_tcp(self, now: float, optname: int) -> int | bytes:
        """do_tcp_getsockopt."""
        opts, conn, cfg = self.opts, self.conn, self.config
        if optname == socket.TCP_NODELAY:
            return int(opts.nodelay)
        if optname == socket.TCP_CORK:
            return int(opts.cork)
        if optname == socket.TCP_MAXSEG:
            # mss_cache once connected; before, the user's clamp or TCP_MSS_DEFAULT.
            if conn is not None and conn.state not in _NOT_CONNECTED:
                return conn.snd.mss
            return opts.maxseg or TCP_MSS_DEFAULT
        if optname == socket.TCP_KEEPIDLE:
            return opts.keepidle or cfg.tcp_keepalive_time
        if optname == socket.TCP_KEEPINTVL:
            return opts.keepintvl or cfg.tcp_keepalive_intvl
        if optname == socket.TCP_KEEPCNT:
            return opts.keepcnt or cfg.tcp_keepalive_probes
        if optname == socket.TCP_LINGER2:
            linger2 = opts.linger2
            return -1 if linger2 is not None and linger2 < 0 else linger2 or cfg.tcp_fin_timeout
        if optname == socket.TCP_DEFER_ACCEPT:
            return retrans_to_secs(secs_to_retrans(opts.defer_accept))
        if optname == socket.TCP_FASTOPEN:
            return opts.fastopen
        if optname == TCP_FASTOPEN_CONNECT:
            return int(opts.fastopen_connect)
        if optname == socket.TCP_USER_TIMEOUT:
            return opts.user_timeout
        if optname == socket.TCP_SYNCNT:
            return opts.syncnt or cfg.tcp_syn_retries
        if optname == TCP_INQ:
            return int(opts.recvmsg_inq)
        if optname == TCP_NOTSENT_LOWAT:
            lowat = opts.notsent_lowat
            return lowat - (1 << 32) if lowat >= 1 << 31 else lowat  # the u32 as an int
        if optname == socket.TCP_QUICKACK:
            return int(not (conn.rcv.pingpong if conn is not None else self.pingpong))
        if optname == socket.TCP_CONGESTION:
            name = conn.snd.cc.name if conn is not None \
                else opts.congestion or cfg.tcp_congestion_control
            return name.encode().ljust(TCP_CA_NAME_MAX, b"\0")
        if optname == socket.TCP_INFO:
            return pack_tcp_info(self.tcp_info(now))
        raise os_error(errno.ENOPROTOOPT)

    def tcp_info(self, now: float) -> dict[str, int]:
        """struct tcp_info's fields by name (tcp_get_info); a socket with no connection
        reports its state only, as Linux does for a closed or listening socket."""
        if self.conn is not None:
            return self.conn.tcp_info(now)
        state = State.LISTEN if self.listener is not None else State.CLOSE
        return {"tcpi_state": int(state)}

    # ------------------------------------------------------------------ poll, ioctl

    def poll(self) -> int:
        """The readiness bits tcp_poll computes."""
        listener = self.listener
        if listener is not None:
            return POLLIN | POLLRDNORM if listener.readable else 0  # inet_csk_listen_poll
        conn = self.conn
        if conn is None:
            if self.defer_connect:
                return POLLOUT | POLLWRNORM  # tcp_poll: write() will make the SYN
            return POLLOUT | POLLWRNORM | POLLHUP  # a fresh socket: TCP_CLOSE
        state = conn.state
        closed = state == State.CLOSE
        rcv_shut = closed or conn.rcv_shutdown or conn.rcv.fin_received
        snd_shut = closed or conn.snd.fin_queued
        mask = 0
        if closed or (rcv_shut and snd_shut):
            mask |= POLLHUP
        if rcv_shut:
            mask |= POLLIN | POLLRDNORM | POLLRDHUP
        if state not in _PRE_ESTABLISHED:
            if len(conn.rcv.rcv_buf):
                mask |= POLLIN | POLLRDNORM
            if snd_shut or conn.writable:
                mask |= POLLOUT | POLLWRNORM
        if conn.error is not None:
            mask |= POLLERR
        return mask

    def ioctl(self, request: int) -> int:
        """tcp_ioctl: SIOCINQ (unread bytes), SIOCOUTQ (unacknowledged and unsent bytes),
        SIOCOUTQNSD (unsent bytes)."""
        if request not in (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD):
            raise os_error(errno.ENOTTY)
        if self.listener is not None:
            raise os_error(errno.EINVAL)
        conn = self.conn
        if conn is None or conn.state in _PRE_ESTABLISHED:
            return 0
        if request == SIOCINQ:
            return len(conn.rcv.rcv_buf)
        if request == SIOCOUTQ:
            return (conn.snd.write_seq - conn.snd.snd_una) % (1 << 32)
        return (conn.snd.write_seq - conn.snd.snd_nxt) % (1 << 32)

    # ------------------------------------------------------------------ data, accept

    def send(self, now: float, data: bytes | bytearray | memoryview, more: bool = False,
             eor: bool = False) -> int:
        """send(2): how many bytes the send buffer took (0 when full); ``more`` is
        MSG_MORE, ``eor`` MSG_EOR (the write ends a record: later data never shares its
        last skb or a packet with it). EPIPE after shutdown(SHUT_WR), and on a socket that
        never connected (tcp_sendmsg_locked: sk_stream_wait_connect's answer)."""
        if self.conn is None:
            raise os_error(errno.EPIPE)
        return self.conn.send(now, data, more, eor)

    def recv(self, now: float, max_bytes: int) -> bytes:
        """recv(2): up to ``max_bytes``, ``b""`` at end of stream, BlockingIOError when
        there is nothing to read yet."""
        if self.conn is None:
            if self.defer_connect:
                raise BlockingIOError(errno.EAGAIN, "no SYN sent yet")  # as in SYN_SENT
            raise os_error(errno.ENOTCONN)
        return self.conn.recv(now, max_bytes)

    def recvmsg(self, now: float, max_bytes: int) -> tuple[bytes, list[tuple[int, int, bytes]]]:
        """recvmsg(2), shaped as Python's ``socket.recvmsg`` returns it: the data and the
        control messages. With TCP_INQ set, a read that succeeds (end of stream too) carries
        TCP_CM_INQ: the bytes still to read (tcp_inq_hint)."""
        data = self.recv(now, max_bytes)
        if not self.opts.recvmsg_inq:
            return data, []
        return data, [(IPPROTO_TCP, TCP_CM_INQ, struct.pack("i", self.inq_hint()))]

    def inq_hint(self) -> int:
        """tcp_inq_hint: rcv_nxt - copied_seq, so a received FIN counts one until it is
        read, and once the stream is done (SOCK_DONE) never less than 1: a reader told 0
        would wait for data that cannot come."""
        conn = self.conn
        if conn is None:
            return 0
        done = conn.rcv.fin_received or conn.state == State.CLOSE
        inq = len(conn.rcv.rcv_buf) + conn.rcv.fin_received
        return inq if inq or not done else 1

    def accept(self, now: float) -> Connection | None:
        """accept(2) (inet_csk_accept): the oldest established child, None when the
        accept queue is empty; EINVAL on a socket that is not listening."""
        if self.listener is None:
            raise os_error(errno.EINVAL)
        return self.listener.accept()

    # ------------------------------------------------------------------ shutdown, close

    def shutdown(self, now: float, how: int) -> None:
        """shutdown(2) (inet_shutdown): EINVAL for a bad ``how``, ENOTCONN when there is no
        connection to shut down."""
        if how not in (socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR):
            raise os_error(errno.EINVAL)
        conn = self.conn
        if conn is None or conn.state in (State.CLOSE, State.SYN_SENT, State.SYN_RECV):
            raise os_error(errno.ENOTCONN)
        conn.shutdown(now, how)

    def close(self, now: float) -> float:
        """close(2): a listener stops listening; a connection closes (FIN, or RST over
        unread data or with SO_LINGER {1, 0}). Returns how long a blocking close waits
        for the FIN to be acknowledged (:attr:`closing` turning false): SO_LINGER {1, T}'s
        T seconds (inet_release passes sk_lingertime to tcp_close, whose
        sk_stream_wait_close waits), 0 when close returns at once. Unlike Linux, the
        connection is already an orphan while the caller waits."""
        if self.listener is not None:
            self.listener.close(now)
        conn = self.conn
        if conn is None:
            return 0.0
        conn.close(now)
        onoff, seconds = self.opts.linger or (False, 0)
        # l_linger is taken as unsigned (sk_setsockopt): a negative one waits ~136 years.
        return float(seconds & 0xFFFFFFFF) if onoff and self.closing else 0.0

    def abort(self, now: float) -> None:
        """close(2) with SO_LINGER {1, 0}: a RST at once, queued data dropped (tcp_disconnect)."""
        if self.listener is not None:
            self.listener.close(now)
        if self.conn is not None:
            self.conn.abort(now)

    @property
    def recv_ready(self) -> bool:
        """recv(2) would return at once (data, the end of the stream, an error) rather than
        raise BlockingIOError: asking costs less than the exception."""
        conn = self.conn
        return conn is None or conn.readable or conn.rcv_shutdown

    @property
    def closing(self) -> bool:
        """sk_stream_closing (net/core/stream.c): our FIN is queued or sent and not yet
        acknowledged."""
        conn = self.conn
        return conn is not None and conn.state in _FIN_UNACKED
