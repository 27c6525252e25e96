"""System calls of a script, mapped onto the engine's user calls and the socket layer.

Each script fd is a :class:`ScriptSocket` around a :class:`ustcp.tcp.sock.Sock`, which holds
the semantics of setsockopt, getsockopt, poll, ioctl, shutdown and close (the trio API uses the
same layer); this module maps script arguments onto it. A call returns its integer result or
raises an ``OSError`` with the Linux errno; a call that would block on a blocking socket raises
:class:`WouldBlock` carrying a retry function, and the runner retries it as virtual time
moves on (non-blocking sockets get EAGAIN / EINPROGRESS instead, as Linux gives).
"""

from __future__ import annotations

import errno
import os
import socket as pysocket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from ..tcp.connection import Connection
from ..tcp.engine import TcpEngine
from ..tcp.fastopen import TFO_CLIENT_ENABLE, TFO_CLIENT_NO_COOKIE
from ..tcp.listener import Listener
from ..tcp.seq import seq_add, seq_diff
from ..tcp.sock import OPTIONS, Sock
from ..tcp.states import State
from .ast import (
    BraceExpr,
    EllipsisExpr,
    Expr,
    IntExpr,
    ListExpr,
    StringExpr,
    StructExpr,
    SyscallSpec,
    WordExpr,
)
from .epoll import Epoll
from .symbols import SYMBOLS, Unsupported, c_int, evaluate, symbol_name

LOCAL_IP = pysocket.inet_aton("192.168.0.1")
REMOTE_IP = pysocket.inet_aton("192.0.2.1")
# The addresses of Linux's packetdrill runner (tools/testing/selftests/net/packetdrill/
# ksft_runner.sh) for --ip_version=ipv6; ipv4-mapped-ipv6 sends IPv4 from AF_INET6 sockets.
LOCAL_IP6 = pysocket.inet_pton(pysocket.AF_INET6, "fd3d:a0b:17d6::1")
REMOTE_IP6 = pysocket.inet_pton(pysocket.AF_INET6, "fd3d:fa7b:d17d::1")
IP_VERSIONS = ("ipv4", "ipv6", "ipv4-mapped-ipv6")


def addresses(ip_version: str) -> tuple[bytes, bytes]:
    """``(local, remote)`` for an ``--ip_version``."""
    return (LOCAL_IP6, REMOTE_IP6) if ip_version == "ipv6" else (LOCAL_IP, REMOTE_IP)
BIND_PORT = 8080  # packetdrill's --bind_port and --connect_port defaults
CONNECT_PORT = 8080

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
    sock: Sock
    nonblocking: bool = False
    port: int | None = None
    ip_options: dict[str, int] = field(default_factory=dict)  # IP_TOS etc., no wire effect
    zerocopy: bool = False

    @property
    def conn(self) -> Connection | None:
        return self.sock.conn

    @property
    def listener(self) -> Listener | None:
        return self.sock.listener


# Options the runner keeps itself (no effect on the wire), with their level; every other
# option goes to the socket layer.
RUNNER_OPTIONS = {"IP_TOS": SYMBOLS["SOL_IP"], "IP_MTU_DISCOVER": SYMBOLS["SOL_IP"],
                  "SO_ZEROCOPY": SYMBOLS["SOL_SOCKET"]}
SEND_FLAGS = SYMBOLS["MSG_DONTWAIT"] | SYMBOLS["MSG_NOSIGNAL"] | SYMBOLS["MSG_ZEROCOPY"] \
    | SYMBOLS["MSG_MORE"] | SYMBOLS["MSG_FASTOPEN"] | SYMBOLS["MSG_EOR"]
RECV_FLAGS = SYMBOLS["MSG_DONTWAIT"]
CONNECTED = frozenset(State) - {State.SYN_SENT, State.SYN_RECV, State.CLOSE, State.LISTEN}


def os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def is_null(expr: Expr) -> bool:
    return (isinstance(expr, WordExpr) and expr.name == "NULL") or \
        (isinstance(expr, IntExpr) and expr.value == 0)


def sockopt_args(spec: SyscallSpec) -> tuple[int, int, str]:
    """(level, optname, the option's name) of a setsockopt/getsockopt."""
    if len(spec.args) < 3:
        raise Unsupported(f"{spec.name} with {len(spec.args)} arguments")
    level, optname = evaluate(spec.args[1]), evaluate(spec.args[2])
    if level is None or optname is None:
        raise Unsupported(f"{spec.name} with '...' for the level or the option")
    return level, optname, symbol_name(spec.args[2])


def sockopt_support(spec: SyscallSpec) -> str | None:
    """Why a setsockopt/getsockopt cannot run (an option ustcp does not have), or None."""
    try:
        level, optname, name = sockopt_args(spec)
    except Unsupported as exc:
        return str(exc)
    if RUNNER_OPTIONS.get(name) == level or optname in OPTIONS.get(level, ()):
        return None
    return f"socket option {symbol_name(spec.args[1])}/{name}"


class Sockets:
    """The file descriptor table of the process under test."""

    # System call name -> the method that runs it.
    CALLS: ClassVar[dict[str, str]] = {
        "socket": "socket", "bind": "bind", "listen": "listen", "accept": "accept",
        "connect": "connect", "close": "close", "shutdown": "shutdown", "read": "read",
        "recv": "read", "recvfrom": "read", "recvmsg": "recvmsg", "write": "write",
        "send": "write",
        "sendto": "write", "writev": "writev", "sendmsg": "sendmsg",
        "setsockopt": "setsockopt", "getsockopt": "getsockopt", "fcntl": "fcntl",
        "ioctl": "ioctl", "poll": "poll", "epoll_create": "epoll_create",
        "epoll_create1": "epoll_create", "epoll_ctl": "epoll_ctl", "epoll_wait": "epoll_wait",
    }
    HANDLED = frozenset(CALLS)

    def __init__(self, engine: TcpEngine, hooks: Hooks, ip_version: str = "ipv4",
                 local_ip: bytes | None = None, remote_ip: bytes | None = None) -> None:
        self.engine = engine
        self.hooks = hooks
        local, remote = addresses(ip_version)
        self.local_ip = local_ip or local  # --local_ip, --remote_ip
        self.remote_ip = remote_ip or remote
        # packetdrill opens AF_INET6 sockets for a script's AF_INET in the IPv6 modes
        self.domains = (None, SYMBOLS["AF_INET"]) if ip_version == "ipv4" \
            else (None, SYMBOLS["AF_INET"], SYMBOLS["AF_INET6"])
        self.fds: dict[int, ScriptSocket] = {}
        self.epolls: dict[int, Epoll] = {}  # epoll instances by script fd
        self._opened: list[Sock] = []  # every socket the script made, closed ones too
        self.info_conn: Connection | None = None  # the socket %{ }% blocks look at

    def call(self, now: float, spec: SyscallSpec) -> int:
        method = self.CALLS.get(spec.name)
        if method is None:
            raise Unsupported(f"system call {spec.name}")
        handler: Callable[[float, SyscallSpec], int] = getattr(self, method)
        try:
            return handler(now, spec)
        finally:
            self._release()

    def retry(self, now: float, attempt: Attempt) -> int:
        """A blocked call's next attempt, released as a call is."""
        try:
            return attempt(now)
        finally:
            self._release()

    def _release(self) -> None:
        """The runner's door after each system call (TcpEngine.release): the engine
        re-reads the timers of every socket the script made (a handful), so a call that
        reached several (accept, close) needs no bookkeeping of which."""
        release = self.engine.release
        for sock in self._opened:
            release(sock.conn)
            release(sock.listener)
        self.observe()

    def observe(self) -> None:
        """The wake-ups since the last look reach the epoll instances (after every call,
        and whenever the engine has run)."""
        for ep in self.epolls.values():
            ep.observe()

    # ------------------------------------------------------------------ helpers

    def _open(self, sock: Sock) -> Sock:
        self._opened.append(sock)
        return sock

    def free_fd(self, spec: SyscallSpec) -> int:
        """The fd the script expects (its result), else the lowest above every fd in use.
        A script's fd is a name, as packetdrill's CHECK_FD makes it (the live fd may
        differ): a new descriptor takes the name the script gives it even when an older
        one still has it, and the older one lives on unnamed (packetdrill finds the newest
        first; Google's pure-syn-data.pkt accepts a second "4" with the first still open)."""
        wanted = spec.result.value if isinstance(spec.result, IntExpr) else -1
        if wanted >= 0:
            self.fds.pop(wanted, None)  # its Sock stays in _opened, released and closed
            self.epolls.pop(wanted, None)
            return wanted
        return max(self.fds.keys() | self.epolls.keys(), default=2) + 1

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
        if domain not in self.domains:
            raise Unsupported("IPv6 sockets (run with --ip_version=ipv6)")
        fd = self.free_fd(spec)
        self.fds[fd] = ScriptSocket(fd, self._open(Sock(self.engine.config)))
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
        sock.sock.listener = self.engine.listen(now, self.local_ip, sock.port, backlog,
                                                sockopts=sock.sock.opts)
        self.hooks.on_listen()
        return 0

    def accept(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        listener = sock.listener
        if listener is None:
            raise os_error(errno.EINVAL)

        def attempt(t: float) -> int:
            if listener.closed:
                raise os_error(errno.EINVAL)
            conn = sock.sock.accept(t)
            if conn is None:
                raise WouldBlock(attempt)
            fd = self.free_fd(spec)
            self.fds[fd] = ScriptSocket(
                fd, self._open(Sock(self.engine.config, conn.sockopts, conn=conn)),
                port=sock.port)
            self.info_conn = conn
            return fd

        return self.blocking(sock, attempt, now)

    def connect(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        if sock.conn is not None:
            if sock.conn.state == State.SYN_SENT:
                raise os_error(errno.EALREADY)
            raise os_error(errno.EISCONN)
        fastopen = None
        if sock.sock.opts.fastopen_connect:
            # tcp_fastopen_defer_connect: with a cookie (or 0x4) connect() returns at once
            # and the first write sends the SYN with its data; else the SYN asks for one.
            engine = self.engine
            if (engine.fastopen_cookie(self.remote_ip) is not None
                    or engine.config.tcp_fastopen & TFO_CLIENT_NO_COOKIE) \
                    and not engine.fastopen_blackhole.paused(
                        now, engine.config.tcp_fastopen_blackhole_timeout_sec):
                sock.sock.defer_connect = True
                return 0
            fastopen = b""
        conn = self.open_connection(now, sock, fastopen)

        def attempt(t: float) -> int:
            err = conn.take_error()
            if err is not None:
                raise err
            if conn.state in CONNECTED:
                return 0
            if conn.state == State.CLOSE:
                raise os_error(errno.ECONNREFUSED)
            raise WouldBlock(attempt)

        if sock.nonblocking:
            raise os_error(errno.EINPROGRESS)
        return attempt(now)

    def open_connection(self, now: float, sock: ScriptSocket,
                        fastopen: bytes | None) -> Connection:
        conn = self.engine.connect(now, self.local_ip, self.remote_ip, CONNECT_PORT,
                                   local_port=sock.port, sockopts=sock.sock.opts,
                                   fastopen=fastopen)
        sock.sock.conn = conn
        sock.sock.defer_connect = False
        self.info_conn = conn
        self.hooks.on_connect()
        return conn

    def fastopen_send(self, now: float, sock: ScriptSocket, size: int,
                      dontwait: bool = False) -> int:
        """sendto(MSG_FASTOPEN), or the first write after a deferred connect
        (tcp_sendmsg_fastopen): the connect happens now, with the data for the SYN. A
        non-blocking socket returns what the SYN carried, or EINPROGRESS when it carried
        none; a blocking one waits for the handshake and sends the rest."""
        conn = self.open_connection(now, sock, bytes(size))
        in_syn = conn.snd.fastopen_syn_data
        queued = seq_diff(conn.snd.write_seq, seq_add(conn.snd.iss, 1))
        if sock.nonblocking or dontwait:
            if not in_syn:
                raise os_error(errno.EINPROGRESS)
            return in_syn
        sent = queued

        def attempt(t: float) -> int:
            nonlocal sent
            err = conn.take_error()
            if err is not None:
                conn.write_pending = False
                raise err
            if conn.state not in CONNECTED:
                # inet_wait_for_connect's writebias: a writer waits, unless the SYN took
                # all of its data (tcp_send_syn_data: fo->data = NULL)
                conn.write_pending = size > in_syn
                raise WouldBlock(attempt)
            conn.write_pending = False
            while sent < size:
                taken = sock.sock.send(t, bytes(size - sent))
                if not taken:
                    raise WouldBlock(attempt)
                sent += taken
            return size

        return attempt(now)

    def close(self, now: float, spec: SyscallSpec) -> int:
        if self.epolls.pop(evaluate(spec.args[0]) or -1, None) is not None:
            return 0
        sock = self.sock(spec.args[0])
        del self.fds[sock.fd]
        for ep in self.epolls.values():
            ep.forget(sock.sock)
        sock.sock.close(now)
        return 0

    def shutdown(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        how = self.arg(spec, 1)
        sock.sock.shutdown(now, -1 if how is None else how)
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

        def attempt(t: float) -> int:
            try:
                return len(sock.sock.recv(t, size))
            except BlockingIOError:
                raise WouldBlock(attempt) from None

        return self.blocking(sock, attempt, now, dontwait=bool(flags & RECV_FLAGS))

    def recvmsg(self, now: float, spec: SyscallSpec) -> int:
        """``recvmsg(fd, {msg_iov(1)=[{..., N}], msg_flags=0, msg_control=[{cmsg_level=SOL_TCP,
        cmsg_type=TCP_CM_INQ, cmsg_data=8000}]}, flags)``: the socket layer's recvmsg, its
        control messages and flags checked against the script's."""
        sock = self.sock(spec.args[0])
        size, flags, msg = recvmsg_request(spec)

        def attempt(t: float) -> int:
            try:
                data, cmsgs = sock.sock.recvmsg(t, size)
            except BlockingIOError:
                raise WouldBlock(attempt) from None
            check_recvmsg(msg, cmsgs, 0)
            return len(data)

        return self.blocking(sock, attempt, now, dontwait=bool(flags & RECV_FLAGS))

    def write(self, now: float, spec: SyscallSpec) -> int:
        sock = self.sock(spec.args[0])
        size = self.arg(spec, 2) or 0
        flags = self.opt_arg(spec, 3)
        if is_null(spec.args[1]) and size:
            raise os_error(errno.EFAULT)
        unspec = len(spec.args) > 4 and isinstance(spec.args[4], WordExpr) \
            and evaluate(spec.args[4]) == SYMBOLS["AF_UNSPEC"]
        return self.send_bytes(now, sock, size, flags, spec.name, unspec)

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
                   name: str, unspec: bool = False) -> int:
        """A write of ``size`` bytes; ``unspec``: a sendto to an AF_UNSPEC address."""
        if flags & ~SEND_FLAGS:
            raise Unsupported(f"{name} flags {flags:#x}")
        if sock.sock.defer_connect or flags & SYMBOLS["MSG_FASTOPEN"]:
            # tcp_sendmsg_fastopen: Fast Open off for clients, or no address, is EOPNOTSUPP;
            # a connect in progress is EALREADY (__inet_stream_connect in SS_CONNECTING)
            if not self.engine.config.tcp_fastopen & TFO_CLIENT_ENABLE or unspec:
                raise os_error(errno.EOPNOTSUPP)
            if sock.conn is None:
                return self.fastopen_send(now, sock, size,
                                          bool(flags & SYMBOLS["MSG_DONTWAIT"]))
            if sock.conn.state in (State.SYN_SENT, State.SYN_RECV):
                raise os_error(errno.EALREADY)
        sent = 0

        def attempt(t: float) -> int:
            nonlocal sent
            while sent < size:
                try:
                    taken = sock.sock.send(t, bytes(size - sent),
                                           bool(flags & SYMBOLS["MSG_MORE"]),
                                           bool(flags & SYMBOLS["MSG_EOR"]))
                except BlockingIOError:
                    taken = 0
                conn = sock.conn
                if conn is not None:  # a blocking writer waits for the handshake
                    conn.write_pending = not taken and conn.state not in CONNECTED and not (
                        sock.nonblocking or flags & SYMBOLS["MSG_DONTWAIT"])
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
        level, optname, name = sockopt_args(spec)
        value_expr = spec.args[3] if len(spec.args) > 3 else EllipsisExpr()
        value: int | bytes
        if isinstance(value_expr, StructExpr) and name == "SO_LINGER":
            value = struct.pack("=ii", field_int(value_expr, "onoff"),
                                field_int(value_expr, "linger"))
        elif isinstance(value_expr, StringExpr):
            value = value_expr.value.encode()
        else:
            number = evaluate(value_expr)
            if number is None:
                raise Unsupported(f"setsockopt {name} with '...'")
            value = number
        if name in RUNNER_OPTIONS:
            if not isinstance(value, int):
                raise Unsupported(f"setsockopt {name} with a struct")
            if name == "SO_ZEROCOPY":
                sock.zerocopy = bool(value)
            else:
                sock.ip_options[name] = value
            return 0
        sock.sock.setsockopt(now, level, optname, value)
        return 0

    def getsockopt(self, now: float, spec: SyscallSpec) -> int:
        reason = sockopt_support(spec)
        if reason:
            raise Unsupported(reason)
        sock = self.sock(spec.args[0])
        level, optname, name = sockopt_args(spec)
        expected = spec.args[3] if len(spec.args) > 3 else EllipsisExpr()
        if name == "TCP_INFO":
            check_tcp_info(sock.sock.tcp_info(now), expected)
            return 0
        if name in RUNNER_OPTIONS:
            actual = int(sock.zerocopy) if name == "SO_ZEROCOPY" \
                else sock.ip_options.get(name, 0)
        elif isinstance(expected, StructExpr):
            if name != "SO_LINGER":
                raise Unsupported(f"getsockopt {name} with a struct")
            raw = sock.sock.getsockopt(now, level, optname, 8)
            assert isinstance(raw, bytes)
            onoff, linger = struct.unpack("=ii", raw)
            for field_name, got in (("onoff", onoff), ("linger", linger)):
                member = expected.get(field_name)
                want = evaluate(member.value) if member is not None else None
                if want is not None and want != got:
                    raise CallMismatch(f"getsockopt SO_LINGER {field_name}: expected {want} "
                                       f"actual {got}")
            return 0
        else:
            got = sock.sock.getsockopt(now, level, optname)
            assert isinstance(got, int)
            actual = got
        want = evaluate(expected) if not isinstance(expected, EllipsisExpr) else None
        if want is not None and c_int(want) != c_int(actual):
            raise CallMismatch(f"getsockopt {name}: expected {want} actual {actual}")
        return 0


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
        request = evaluate(spec.args[1]) if len(spec.args) > 1 else None
        if request is None:
            raise Unsupported("ioctl with '...' for the request")
        try:
            actual = sock.sock.ioctl(request)
        except OSError as exc:
            if exc.errno == errno.ENOTTY:
                raise Unsupported(f"ioctl {symbol_name(spec.args[1])}") from None
            raise
        want = evaluate(spec.args[2]) if len(spec.args) > 2 else None
        if want is not None and want != actual:
            raise CallMismatch(f"ioctl {symbol_name(spec.args[1])}: expected {want} "
                               f"actual {actual}")
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

    # ------------------------------------------------------------------ epoll

    def epoll_create(self, now: float, spec: SyscallSpec) -> int:
        """epoll_create(size) (size > 0) or epoll_create1(flags)."""
        arg = self.opt_arg(spec, 0)
        if (spec.name == "epoll_create" and arg <= 0) or \
                (spec.name == "epoll_create1" and arg & ~0o2000000):  # EPOLL_CLOEXEC
            raise os_error(errno.EINVAL)
        fd = self.free_fd(spec)
        self.epolls[fd] = Epoll()
        return fd

    def epoll_of(self, expr: Expr) -> Epoll:
        ep = self.epolls.get(evaluate(expr) or -1)
        if ep is None:
            raise os_error(errno.EINVAL if (evaluate(expr) or -1) in self.fds
                           else errno.EBADF)
        return ep

    def epoll_ctl(self, now: float, spec: SyscallSpec) -> int:
        """``epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events=EPOLLIN|EPOLLET, fd=4})``: the
        event's ``fd`` (or ``ptr``/``u64``) is the data epoll_wait gives back."""
        ep = self.epoll_of(spec.args[0])
        op = self.arg(spec, 1) or 0
        sock = self.sock(spec.args[2])
        event = spec.args[3] if len(spec.args) > 3 else EllipsisExpr()
        events = data = 0
        if isinstance(event, StructExpr):
            events = field_int(event, "events")
            data = event_data(event)
        ep.ctl(op, sock.fd, sock.sock, events, data)
        return 0

    def epoll_wait(self, now: float, spec: SyscallSpec) -> int:
        """``epoll_wait(epfd, {events=EPOLLIN, fd=4}, maxevents, timeout_ms)``: the ready
        events, checked against the script's struct (or list of them); it blocks up to
        timeout_ms (-1: until something is ready)."""
        ep = self.epoll_of(spec.args[0])
        expected = spec.args[1]
        wants = [e for e in (expected.items if isinstance(expected, ListExpr) else (expected,))
                 if isinstance(e, StructExpr)]
        maxevents = self.arg(spec, 2) or 0
        timeout_ms = self.arg(spec, 3)
        deadline = None if timeout_ms is None or timeout_ms < 0 else now + timeout_ms / 1000

        def attempt(t: float) -> int:
            got = ep.wait(maxevents)
            if not got and (deadline is None or t < deadline - 1e-9):
                raise WouldBlock(attempt, deadline)
            for want, (events, data) in zip(wants, got, strict=False):
                want_events, want_data = field_int(want, "events"), event_data(want)
                if (want_events, want_data) != (events, data):
                    raise CallMismatch(f"epoll_wait: expected events {want_events:#x} data "
                                       f"{want_data} actual events {events:#x} data {data}")
            return len(got)

        return attempt(now)

    @staticmethod
    def revents(sock: ScriptSocket | None) -> int:
        return SYMBOLS["POLLNVAL"] if sock is None else sock.sock.poll()


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


def recvmsg_request(spec: SyscallSpec) -> tuple[int, int, StructExpr]:
    """(bytes asked for, flags, the msghdr) of a recvmsg; what the runner cannot check (the
    error queue, control data other than an int) is unsupported."""
    msg = spec.args[1] if len(spec.args) > 1 else EllipsisExpr()
    if not isinstance(msg, StructExpr):
        raise Unsupported("recvmsg without a msghdr")
    iov = msg.get("msg_iov")
    if iov is None:
        raise Unsupported("recvmsg without msg_iov")
    flags = (evaluate(spec.args[2]) or 0) if len(spec.args) > 2 else 0
    if flags & ~RECV_FLAGS:
        raise Unsupported(f"recvmsg flags {flags:#x}")
    for cmsg in expected_cmsgs(msg):
        field_int(cmsg, "cmsg_data")  # an int (a struct, as the error queue's, is not)
    return iov_total(iov.value), flags, msg


def recvmsg_reason(spec: SyscallSpec) -> str | None:
    """Why a recvmsg cannot run (on either target), or None."""
    try:
        recvmsg_request(spec)
    except Unsupported as exc:
        return str(exc)
    return None


def expected_cmsgs(msg: StructExpr) -> list[StructExpr]:
    control = msg.get("msg_control")
    if control is None or isinstance(control.value, EllipsisExpr):
        return []
    items = control.value.items if isinstance(control.value, ListExpr) else ()
    cmsgs = [item for item in items if isinstance(item, StructExpr)]
    if len(cmsgs) != len(items) or any(c.get("cmsg_data") is None for c in cmsgs):
        raise Unsupported("recvmsg control messages other than {cmsg_level, cmsg_type, "
                          "cmsg_data}")
    return cmsgs


def check_recvmsg(msg: StructExpr, cmsgs: list[tuple[int, int, bytes]],
                  msg_flags: int) -> None:
    """A recvmsg's out-values against the script (both targets): msg_flags, and the control
    messages in order, each level, type and int data; none is checked when the script
    gives no msg_control."""
    member = msg.get("msg_flags")
    want_flags = evaluate(member.value) if member is not None else None
    if want_flags is not None and want_flags != msg_flags:
        raise CallMismatch(f"recvmsg msg_flags: expected {want_flags:#x} actual "
                           f"{msg_flags:#x}")
    if msg.get("msg_control") is None:
        return
    wants = expected_cmsgs(msg)
    got = [(level, kind, int.from_bytes(data[:4], "little", signed=True))
           for level, kind, data in cmsgs]
    if len(wants) != len(got):
        raise CallMismatch(f"recvmsg: expected {len(wants)} control messages actual "
                           f"{len(got)}")
    for want, (level, kind, value) in zip(wants, got, strict=True):
        expected = (field_int(want, "cmsg_level"), field_int(want, "cmsg_type"),
                    field_int(want, "cmsg_data"))
        if expected != (level, kind, value):
            raise CallMismatch(f"recvmsg cmsg: expected level {expected[0]} type "
                               f"{expected[1]} data {expected[2]} actual level {level} "
                               f"type {kind} data {value}")


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


def event_data(event: StructExpr) -> int:
    """epoll_data: packetdrill writes it as ``fd=N``, ``ptr=N`` or ``u64=N``."""
    for name in ("fd", "ptr", "u32", "u64"):
        if event.get(name) is not None:
            return field_int(event, name)
    return 0


def field_int(struct: StructExpr, name: str) -> int:
    member = struct.get(name)
    value = evaluate(member.value) if member is not None else None
    if value is None:
        raise Unsupported(f"struct member {name}")
    return value
