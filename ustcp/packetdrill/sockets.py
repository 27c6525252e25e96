"""System calls of a script, mapped onto the engine's user calls.

Each script fd is a :class:`ScriptSocket`. A call returns its integer result or raises an
``OSError`` with the Linux errno; a call that would block on a blocking socket raises
:class:`WouldBlock` carrying a retry function, and the runner retries it as virtual time
moves on (non-blocking sockets get EAGAIN / EINPROGRESS instead, as Linux gives).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket as pysocket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from ..tcp.connection import Connection
from ..tcp.engine import TcpEngine
from ..tcp.listener import Listener
from ..tcp.options import SockOpts
from ..tcp.states import State
from .ast import (
    BraceExpr,
    EllipsisExpr,
    Expr,
    IntExpr,
    ListExpr,
    StructExpr,
    SyscallSpec,
    WordExpr,
)
from .symbols import SYMBOLS, Unsupported, evaluate, symbol_name

LOCAL_IP = pysocket.inet_aton("192.168.0.1")
REMOTE_IP = pysocket.inet_aton("192.0.2.1")
BIND_PORT = 8080  # packetdrill's --bind_port and --connect_port defaults
CONNECT_PORT = 8080
SOCK_MIN_SNDBUF = 4608  # 2 * (2048 + sizeof(struct sk_buff)), rounded as Linux does
SOCK_MIN_RCVBUF = 2304
TCP_MSS_DEFAULT = 536

Attempt = Callable[[float], int]


class WouldBlock(Exception):
    def __init__(self, attempt: Attempt, timeout_at: float | None = None) -> None:
        super().__init__("would block")
        self.attempt = attempt
        self.timeout_at = timeout_at


class CallMismatch(Exception):
    """An out-value (getsockopt, ioctl, poll revents) differs from the script."""


class Hooks(Protocol):
    def on_socket(self) -> None: ...
    def on_listen(self) -> None: ...
    def on_connect(self) -> None: ...


@dataclass(slots=True)
class ScriptSocket:
    fd: int
    sockopts: SockOpts = field(default_factory=SockOpts)
    nonblocking: bool = False
    port: int | None = None
    listener: Listener | None = None
    conn: Connection | None = None
    ip_options: dict[str, int] = field(default_factory=dict)  # IP_TOS etc., no wire effect
    zerocopy: bool = False


# Socket options: name -> (level, SockOpts field or None for options kept by the runner).
SOCKOPTS: dict[str, tuple[str, str | None]] = {
    "SO_REUSEADDR": ("SOL_SOCKET", "reuseaddr"),
    "SO_KEEPALIVE": ("SOL_SOCKET", "keepalive"),
    "SO_LINGER": ("SOL_SOCKET", "linger"),
    "SO_SNDBUF": ("SOL_SOCKET", "sndbuf"),
    "SO_RCVBUF": ("SOL_SOCKET", "rcvbuf"),
    "SO_ERROR": ("SOL_SOCKET", None),
    "SO_ZEROCOPY": ("SOL_SOCKET", None),
    "TCP_NODELAY": ("SOL_TCP", "nodelay"),
    "TCP_CORK": ("SOL_TCP", "cork"),
    "TCP_MAXSEG": ("SOL_TCP", "maxseg"),
    "TCP_LINGER2": ("SOL_TCP", "linger2"),
    "TCP_DEFER_ACCEPT": ("SOL_TCP", "defer_accept"),
    "TCP_INFO": ("SOL_TCP", None),
    "IP_TOS": ("SOL_IP", None),
    "IP_MTU_DISCOVER": ("SOL_IP", None),
}
LEVEL_ALIASES = {"IPPROTO_TCP": "SOL_TCP", "IPPROTO_IP": "SOL_IP"}
SEND_FLAGS = SYMBOLS["MSG_DONTWAIT"] | SYMBOLS["MSG_NOSIGNAL"] | SYMBOLS["MSG_ZEROCOPY"]
RECV_FLAGS = SYMBOLS["MSG_DONTWAIT"]
CONNECTED = frozenset(State) - {State.SYN_SENT, State.SYN_RECV, State.CLOSE, State.LISTEN}


def os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def is_null(expr: Expr) -> bool:
    return (isinstance(expr, WordExpr) and expr.name == "NULL") or \
        (isinstance(expr, IntExpr) and expr.value == 0)


def sockopt_support(spec: SyscallSpec) -> str | None:
    """Why a setsockopt/getsockopt cannot run, or None."""
    if len(spec.args) < 3:
        return f"{spec.name} with {len(spec.args)} arguments"
    name = symbol_name(spec.args[2])
    level = symbol_name(spec.args[1])
    known = SOCKOPTS.get(name)
    if known is None or known[0] != LEVEL_ALIASES.get(level, level):
        return f"socket option {level}/{name}"
    attr = known[1]
    if attr is not None and attr not in {f.name for f in dataclasses.fields(SockOpts)}:
        return f"socket option {name} (not in the engine's SockOpts)"
    return None


class Sockets:
    """The file descriptor table of the process under test."""

    # System call name -> the method that runs it.
    CALLS: ClassVar[dict[str, str]] = {
        "socket": "socket", "bind": "bind", "listen": "listen", "accept": "accept",
        "connect": "connect", "close": "close", "shutdown": "shutdown", "read": "read",
        "recv": "read", "recvfrom": "read", "write": "write", "send": "write",
        "sendto": "write", "writev": "writev", "sendmsg": "sendmsg",
        "setsockopt": "setsockopt", "getsockopt": "getsockopt", "fcntl": "fcntl",
        "ioctl": "ioctl", "poll": "poll",
    }
    HANDLED = frozenset(CALLS)

    def __init__(self, engine: TcpEngine, hooks: Hooks) -> None:
        self.engine = engine
        self.hooks = hooks
        self.fds: dict[int, ScriptSocket] = {}
        self.info_conn: Connection | None = None  # the socket %{ }% blocks look at

    def call(self, now: float, spec: SyscallSpec) -> int:
        method = self.CALLS.get(spec.name)
        if method is None:
            raise Unsupported(f"system call {spec.name}")
        handler: Callable[[float, SyscallSpec], int] = getattr(self, method)
        return handler(now, spec)

    # ------------------------------------------------------------------ helpers

    def sock(self, expr: Expr) -> ScriptSocket:
        fd = evaluate(expr)
        if fd is None or fd not in self.fds:
            raise os_error(errno.EBADF)
        return self.fds[fd]

    def conn_of(self, sock: ScriptSocket) -> Connection:
        if sock.conn is None:
            raise os_error(errno.ENOTCONN)
        return sock.conn

    @staticmethod
    def arg(spec: SyscallSpec, index: int) -> int | None:
        if index >= len(spec.args):
            raise Unsupported(f"{spec.name} with {len(spec.args)} arguments")
        return evaluate(spec.args[index])

    @classmethod
    def opt_arg(cls, spec: SyscallSpec, index: int) -> int:
        """An optional integer argument (flags), 0 when absent or '...'."""
        return (cls.arg(spec, index) or 0) if index < len(spec.args) else 0

    def blocking(self, sock: ScriptSocket, attempt: Attempt, now: float, *,
                 nonblocking_errno: int = errno.EAGAIN, dontwait: bool = False) -> int:
        try:
            return attempt(now)
        except WouldBlock:
            if sock.nonblocking or dontwait:
                raise os_error(nonblocking_errno) from None
            raise

    # ------------------------------------------------------------------ set-up

    def socket(self, now: float, spec: SyscallSpec) -> int:
        domain = evaluate(spec.args[0]) if spec.args else None
        if domain not in (None, SYMBOLS["AF_INET"]):
            raise Unsupported("IPv6 sockets")
        wanted = spec.result.value if isinstance(spec.result, IntExpr) else -1
        fd = wanted if wanted >= 0 and wanted not in self.fds else max(self.fds, default=2) + 1
        self.fds[fd] = ScriptSocket(fd)
        self.hooks.on_socket()
        return fd

    def bind(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        sock.port = BIND_PORT
        return 0

    def listen(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        backlog = self.arg(spec, 1) or 0
        if sock.listener is not None:
            sock.listener.set_backlog(backlog)
            return 0
        if sock.conn is not None:
            raise os_error(errno.EINVAL)
        sock.port = sock.port or BIND_PORT
        sock.listener = self.engine.listen(now, LOCAL_IP, sock.port, backlog,
                                           sockopts=sock.sockopts)
        self.hooks.on_listen()
        return 0

    def accept(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        listener = sock.listener
        if listener is None:
            raise os_error(errno.EINVAL)
        wanted = spec.result.value if isinstance(spec.result, IntExpr) else -1

        def attempt(t: float) -> int:
            if listener.closed:
                raise os_error(errno.EINVAL)
            conn = listener.accept()
            if conn is None:
                raise WouldBlock(attempt)
            fd = wanted if wanted >= 0 and wanted not in self.fds \
                else max(self.fds, default=2) + 1
            self.fds[fd] = ScriptSocket(fd, conn.sockopts, port=sock.port, conn=conn)
            self.info_conn = conn
            return fd

        return self.blocking(sock, attempt, now)

    def connect(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        if sock.conn is not None:
            if sock.conn.state == State.SYN_SENT:
                raise os_error(errno.EALREADY)
            raise os_error(errno.EISCONN)
        conn = self.engine.connect(now, LOCAL_IP, REMOTE_IP, CONNECT_PORT,
                                   local_port=sock.port, sockopts=sock.sockopts)
        sock.conn = conn
        self.info_conn = conn
        self.hooks.on_connect()

        def attempt(t: float) -> int:
            if conn.error is not None:
                err, conn.error = conn.error, None
                raise err
            if conn.state in CONNECTED:
                return 0
            if conn.state == State.CLOSE:
                raise os_error(errno.ECONNREFUSED)
            raise WouldBlock(attempt)

        if sock.nonblocking:
            raise os_error(errno.EINPROGRESS)
        return attempt(now)

    def close(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        del self.fds[sock.fd]
        if sock.listener is not None:
            sock.listener.close(now)
        if sock.conn is not None:
            sock.conn.close(now)
        return 0

    def shutdown(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        how = self.arg(spec, 1)
        if how not in (pysocket.SHUT_RD, pysocket.SHUT_WR, pysocket.SHUT_RDWR):
            raise os_error(errno.EINVAL)
        conn = self.conn_of(sock)
        if conn.state in (State.CLOSE, State.SYN_SENT, State.SYN_RECV):
            raise os_error(errno.ENOTCONN)
        conn.shutdown(now, how)
        return 0

    # ------------------------------------------------------------------ data

    def read(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        size = self.arg(spec, 2) or 0
        flags = self.opt_arg(spec, 3)
        if flags & ~RECV_FLAGS:
            raise Unsupported(f"{spec.name} flags {flags:#x}")
        if is_null(spec.args[1]) and size:
            raise os_error(errno.EFAULT)
        conn = self.conn_of(sock)

        def attempt(t: float) -> int:
            try:
                return len(conn.recv(t, size))
            except BlockingIOError:
                raise WouldBlock(attempt) from None

        return self.blocking(sock, attempt, now, dontwait=bool(flags & RECV_FLAGS))

    def write(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        size = self.arg(spec, 2) or 0
        flags = self.opt_arg(spec, 3)
        if is_null(spec.args[1]) and size:
            raise os_error(errno.EFAULT)
        return self.send_bytes(now, sock, size, flags, spec.name)

    def writev(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        return self.send_bytes(now, sock, iov_total(spec.args[1]), 0, spec.name)

    def sendmsg(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        msg = spec.args[1]
        if not isinstance(msg, StructExpr):
            raise Unsupported("sendmsg without a msghdr")
        iov = msg.get("msg_iov")
        if iov is None:
            raise Unsupported("sendmsg without msg_iov")
        control = msg.get("msg_control")
        if control is not None and not (isinstance(control.value, ListExpr)
                                        and not control.value.items):
            raise Unsupported("sendmsg with control messages")
        flags = self.arg(spec, 2) or 0
        return self.send_bytes(now, sock, iov_total(iov.value), flags, spec.name)

    def send_bytes(self, now: float, sock: ScriptSocket, size: int, flags: int,
                   name: str) -> int:
        if flags & ~SEND_FLAGS:
            raise Unsupported(f"{name} flags {flags:#x}")
        conn = self.conn_of(sock)
        sent = 0

        def attempt(t: float) -> int:
            nonlocal sent
            while sent < size:
                try:
                    taken = conn.send(t, bytes(size - sent))
                except BlockingIOError:
                    taken = 0
                if not taken:
                    if sent and (sock.nonblocking or flags & SYMBOLS["MSG_DONTWAIT"]):
                        return sent
                    raise WouldBlock(attempt)
                sent += taken
            return size

        return self.blocking(sock, attempt, now, dontwait=bool(flags & SYMBOLS["MSG_DONTWAIT"]))

    # ------------------------------------------------------------------ options

    def setsockopt(self, now: float, spec: SyscallSpec) -> int:
        reason = sockopt_support(spec)
        if reason:
            raise Unsupported(reason)
        sock = self.sock(spec.args[0])
        name = symbol_name(spec.args[2])
        value_expr = spec.args[3]
        opts = sock.sockopts
        if name == "SO_LINGER":
            if not isinstance(value_expr, StructExpr):
                raise Unsupported("SO_LINGER without a {onoff, linger} struct")
            onoff = field_int(value_expr, "onoff")
            seconds = field_int(value_expr, "linger")
            opts.linger = (bool(onoff), seconds)
            return 0
        value = evaluate(value_expr)
        if value is None:
            raise Unsupported(f"setsockopt {name} with '...'")
        if name in ("IP_TOS", "IP_MTU_DISCOVER"):
            sock.ip_options[name] = value
        elif name == "SO_ZEROCOPY":
            sock.zerocopy = bool(value)
        elif name in ("SO_REUSEADDR", "SO_KEEPALIVE", "TCP_NODELAY", "TCP_CORK"):
            setattr(opts, SOCKOPTS[name][1] or name, bool(value))
        elif name == "TCP_MAXSEG" and value and not 88 <= value <= 32767:
            raise os_error(errno.EINVAL)  # TCP_MIN_MSS .. MAX_TCP_WINDOW / 2
        else:
            attr = SOCKOPTS[name][1]
            if attr is None:
                raise Unsupported(f"setsockopt {name}")
            setattr(opts, attr, value)
        if sock.conn is not None and name in ("TCP_NODELAY", "TCP_CORK"):
            changed = getattr(sock.conn, "sockopts_changed", None)
            if callable(changed):
                changed(now)
        return 0

    def getsockopt(self, now: float, spec: SyscallSpec) -> int:
        reason = sockopt_support(spec)
        if reason:
            raise Unsupported(reason)
        sock = self.sock(spec.args[0])
        name = symbol_name(spec.args[2])
        expected = spec.args[3] if len(spec.args) > 3 else EllipsisExpr()
        if name == "TCP_INFO":
            check_tcp_info(self.conn_of(sock).tcp_info(now), expected)
            return 0
        actual = self.sockopt_value(sock, name)
        want = evaluate(expected) if not isinstance(expected, EllipsisExpr) else None
        if want is not None and want != actual:
            raise CallMismatch(f"getsockopt {name}: expected {want} actual {actual}")
        return 0

    def sockopt_value(self, sock: ScriptSocket, name: str) -> int:
        opts = sock.sockopts
        conn = sock.conn
        if name == "TCP_MAXSEG":
            if conn is not None and conn.state not in (State.CLOSE, State.LISTEN):
                return conn.tcp_info(0.0)["tcpi_snd_mss"]
            return opts.maxseg or TCP_MSS_DEFAULT
        if name == "SO_SNDBUF":
            return max(opts.sndbuf * 2, SOCK_MIN_SNDBUF) if opts.sndbuf \
                else self.engine.config.tcp_wmem[1]
        if name == "SO_RCVBUF":
            return max(opts.rcvbuf * 2, SOCK_MIN_RCVBUF) if opts.rcvbuf \
                else self.engine.config.tcp_rmem[1]
        if name == "SO_ERROR":
            if conn is None or conn.error is None:
                return 0
            err, conn.error = conn.error, None
            return err.errno or 0
        if name in ("IP_TOS", "IP_MTU_DISCOVER"):
            return sock.ip_options.get(name, 0)
        if name == "SO_ZEROCOPY":
            return int(sock.zerocopy)
        if name == "TCP_LINGER2":
            return opts.linger2 or 0
        if name == "SO_LINGER":
            raise Unsupported("getsockopt SO_LINGER")
        attr = SOCKOPTS[name][1]
        return int(getattr(opts, attr or ""))

    def fcntl(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        cmd = self.arg(spec, 1)
        if cmd == SYMBOLS["F_GETFL"]:
            return SYMBOLS["O_RDWR"] | (SYMBOLS["O_NONBLOCK"] if sock.nonblocking else 0)
        if cmd == SYMBOLS["F_SETFL"]:
            flags = self.arg(spec, 2) or 0
            sock.nonblocking = bool(flags & SYMBOLS["O_NONBLOCK"])
            return 0
        raise Unsupported(f"fcntl command {symbol_name(spec.args[1])}")

    def ioctl(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        request = symbol_name(spec.args[1])
        conn = self.conn_of(sock)
        if request in ("SIOCINQ", "FIONREAD"):
            actual = len(conn.rcv_buf)
        elif request in ("SIOCOUTQ", "TIOCOUTQ"):
            actual = (conn.write_seq - conn.snd_una) % (1 << 32)
        else:
            raise Unsupported(f"ioctl {request}")
        want = evaluate(spec.args[2]) if len(spec.args) > 2 else None
        if want is not None and want != actual:
            raise CallMismatch(f"ioctl {request}: expected {want} actual {actual}")
        return 0

    def poll(self, now: float, spec: SyscallSpec) -> int:
        fds = spec.args[0]
        if not isinstance(fds, ListExpr):
            raise Unsupported("poll without a pollfd array")
        timeout_ms = self.arg(spec, 2)
        entries = [p for p in fds.items if isinstance(p, StructExpr)]
        deadline = None if timeout_ms is None or timeout_ms < 0 else now + timeout_ms / 1000

        def attempt(t: float) -> int:
            ready = 0
            results: list[tuple[StructExpr, int]] = []
            for entry in entries:
                sock = self.fds.get(field_int(entry, "fd"))
                revents = self.revents(sock) & (field_int(entry, "events") | 0x38)
                results.append((entry, revents))
                ready += bool(revents)
            if not ready and deadline is not None and t < deadline - 1e-9:
                raise WouldBlock(attempt, deadline)
            for entry, revents in results:
                expected = entry.get("revents")
                want = evaluate(expected.value) if expected is not None else 0
                if want is not None and want != revents:
                    raise CallMismatch(f"poll revents: expected {want:#x} actual {revents:#x}")
            return ready

        return attempt(now)

    def revents(self, sock: ScriptSocket | None) -> int:
        if sock is None:
            return SYMBOLS["POLLNVAL"]
        bits = 0
        if sock.listener is not None:
            return SYMBOLS["POLLIN"] | SYMBOLS["POLLRDNORM"] if sock.listener.readable else 0
        conn = sock.conn
        if conn is None:
            return SYMBOLS["POLLOUT"] | SYMBOLS["POLLHUP"]
        if conn.readable:
            bits |= SYMBOLS["POLLIN"] | SYMBOLS["POLLRDNORM"]
        if conn.writable and conn.state in CONNECTED:
            bits |= SYMBOLS["POLLOUT"] | SYMBOLS["POLLWRNORM"]
        if conn.error is not None:
            bits |= SYMBOLS["POLLERR"]
        if conn.state == State.CLOSE:
            bits |= SYMBOLS["POLLHUP"]
        if conn.fin_received:
            bits |= SYMBOLS["POLLRDHUP"]
        return bits


def check_tcp_info(info: dict[str, int], expected: Expr) -> None:
    """``{tcpi_state=1, tcpi_snd_cwnd=10}``: each named field must match (both targets)."""
    if isinstance(expected, EllipsisExpr):
        return
    if not isinstance(expected, StructExpr):
        raise Unsupported("TCP_INFO without a {tcpi_...} struct")
    for member in expected.fields:
        want = evaluate(member.value)
        if member.name not in info:
            raise Unsupported(f"tcp_info field {member.name}")
        if want is not None and info[member.name] != want:
            raise CallMismatch(f"getsockopt TCP_INFO {member.name}: expected {want} "
                               f"actual {info[member.name]}")


def iov_total(expr: Expr) -> int:
    if not isinstance(expr, ListExpr):
        raise Unsupported("iovec array")
    total = 0
    for item in expr.items:
        if not isinstance(item, BraceExpr) or len(item.items) != 2:
            raise Unsupported("iovec entry")
        length = evaluate(item.items[1])
        total += length or 0
    return total


def field_int(struct: StructExpr, name: str) -> int:
    member = struct.get(name)
    value = evaluate(member.value) if member is not None else None
    if value is None:
        raise Unsupported(f"struct member {name}")
    return value
