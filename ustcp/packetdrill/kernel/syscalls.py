"""A script's system calls on real kernel sockets (the kernel target's file table).

:meth:`KernelSockets.prepare` reads a call's arguments in the runner's thread (raising
:class:`Unsupported` for what we cannot express) and returns a thunk that makes the real
system call; the runner runs the thunk in a thread of its own so that a blocking call
blocks only that thread, and notes the moment it returns. The thunk returns the call's
result or raises ``OSError`` with the kernel's errno, or :class:`CallMismatch` when an
out-value (getsockopt, ioctl, poll revents) differs from the script.

Data calls go through libc (ctypes releases the GIL, and a NULL buffer reaches the kernel
as NULL, so EFAULT comes from the kernel, not from us). Script fds are mapped onto the
real ones: ``socket() = 3`` gives script fd 3 whatever number the kernel chose.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import socket as pysocket
import struct
from collections.abc import Callable
from typing import ClassVar, NoReturn, Protocol

from ..ast import (
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
from ..sockets import (
    BIND_PORT,
    CONNECT_PORT,
    CallMismatch,
    Sockets,
    check_recvmsg,
    check_tcp_info,
    field_int,
    iov_total,
    is_null,
    recvmsg_request,
)
from ..symbols import SYMBOLS, Unsupported, c_int, evaluate, symbol_name
from .tcpinfo import read_tcp_info

LOCAL_ADDR = "192.168.0.1"
REMOTE_ADDR = "192.0.2.1"
CMSG_SPACE = 256  # room for the control messages of a recvmsg
INVALID_FD = 1 << 20  # beyond any open fd: poll reports POLLNVAL for it
DEFAULT_CONGESTION = "cubic"  # Linux's default (CONFIG_DEFAULT_TCP_CONG), and ustcp's

Thunk = Callable[[], int]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.recv.restype = ctypes.c_ssize_t
_libc.send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.send.restype = ctypes.c_ssize_t
_libc.sendto.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                         ctypes.c_void_p, ctypes.c_uint32]
_libc.sendto.restype = ctypes.c_ssize_t
_libc.poll.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int]
_libc.poll.restype = ctypes.c_int


class PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


def _checked(result: int) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


class Hooks(Protocol):
    def on_socket(self) -> None: ...
    def on_listen(self) -> None: ...
    def on_connect(self) -> None: ...


class KernelSockets:
    # System call name -> the method that prepares it: the engine target's, and epoll.
    CALLS: ClassVar[dict[str, str]] = {
        **Sockets.CALLS, "epoll_create": "epoll_create", "epoll_create1": "epoll_create",
        "epoll_ctl": "epoll_ctl", "epoll_wait": "epoll_wait",
    }

    def __init__(self, hooks: Hooks) -> None:
        self.hooks = hooks
        self.fds: dict[int, pysocket.socket] = {}
        self.epolls: dict[int, select.epoll] = {}  # script fd -> epoll instance
        self._unnamed: list[pysocket.socket | select.epoll] = []  # renamed by a newer one
        self.listen_port: int | None = None
        self.info_fd: int | None = None  # the socket %{ }% blocks look at
        # A child namespace may only pick a congestion control the host lists in its
        # (global) tcp_allowed_congestion_control, and inherits the host's default; so the
        # script's net.ipv4.tcp_congestion_control, cubic unless it says, is given to each
        # socket with TCP_CONGESTION (root may pick any), which accepted sockets inherit.
        self.congestion = DEFAULT_CONGESTION

    def prepare(self, spec: SyscallSpec) -> Thunk:
        method = self.CALLS.get(spec.name)
        if method is None:
            raise Unsupported(f"system call {spec.name}")
        handler: Callable[[SyscallSpec], Thunk] = getattr(self, method)
        return handler(spec)

    def close_all(self) -> None:
        for sock in self.fds.values():
            sock.close()
        for ep in self.epolls.values():
            ep.close()
        for older in self._unnamed:
            older.close()
        self.fds.clear()
        self.epolls.clear()
        self._unnamed.clear()

    # ------------------------------------------------------------------ helpers

    def sock(self, expr: Expr) -> pysocket.socket:
        fd = evaluate(expr)
        if fd is None or fd not in self.fds:
            return _bad_fd()
        return self.fds[fd]

    def free_fd(self, spec: SyscallSpec) -> int:
        """The script fd a new descriptor gets: the one the script expects, taken from an
        older descriptor that still has it (which stays open, unnamed, as in packetdrill;
        see ``packetdrill.sockets.Sockets.free_fd``)."""
        wanted = spec.result.value if isinstance(spec.result, IntExpr) else -1
        if wanted >= 0:
            for table in (self.fds, self.epolls):
                older = table.pop(wanted, None)
                if older is not None:
                    self._unnamed.append(older)
            return wanted
        return max(self.fds.keys() | self.epolls.keys(), default=2) + 1

    def new_fd(self, spec: SyscallSpec, sock: pysocket.socket) -> int:
        fd = self.free_fd(spec)
        self.fds[fd] = sock
        return fd

    @staticmethod
    def arg(spec: SyscallSpec, index: int) -> int:
        if index >= len(spec.args):
            return 0
        return evaluate(spec.args[index]) or 0

    # ------------------------------------------------------------------ set-up

    def socket(self, spec: SyscallSpec) -> Thunk:
        domain, kind, proto = (self.arg(spec, i) for i in range(3))
        domain = domain or pysocket.AF_INET  # '...': packetdrill's default, IPv4 here
        if domain != pysocket.AF_INET:
            raise Unsupported("IPv6 sockets")
        self.hooks.on_socket()

        def call() -> int:
            sock = pysocket.socket(domain, kind, proto)
            sock.setsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_CONGESTION,
                            self.congestion.encode())
            return self.new_fd(spec, sock)
        return call

    def bind(self, spec: SyscallSpec) -> Thunk:
        sock = self.sock(spec.args[0])

        def call() -> int:
            sock.bind((LOCAL_ADDR, BIND_PORT))
            return 0
        return call

    def listen(self, spec: SyscallSpec) -> Thunk:
        sock = self.sock(spec.args[0])
        backlog = self.arg(spec, 1)
        self.hooks.on_listen()

        def call() -> int:
            sock.listen(backlog)
            self.listen_port = sock.getsockname()[1]
            return 0
        return call

    def accept(self, spec: SyscallSpec) -> Thunk:
        sock = self.sock(spec.args[0])

        def call() -> int:
            conn, _addr = sock.accept()
            fd = self.new_fd(spec, conn)
            self.info_fd = fd
            return fd
        return call

    def connect(self, spec: SyscallSpec) -> Thunk:
        sock = self.sock(spec.args[0])
        fd = evaluate(spec.args[0])
        self.hooks.on_connect()
        self.info_fd = fd

        def call() -> int:
            sock.connect((REMOTE_ADDR, CONNECT_PORT))
            return 0
        return call

    def close(self, spec: SyscallSpec) -> Thunk:
        fd = evaluate(spec.args[0])
        ep = self.epolls.get(fd or 0)
        if ep is not None:
            def close_epoll() -> int:
                del self.epolls[fd or 0]
                ep.close()
                return 0
            return close_epoll
        sock = self.sock(spec.args[0])

        def call() -> int:
            self.fds.pop(fd or 0, None)
            sock.close()
            return 0
        return call

    def shutdown(self, spec: SyscallSpec) -> Thunk:
        sock = self.sock(spec.args[0])
        how = self.arg(spec, 1)

        def call() -> int:
            sock.shutdown(how)
            return 0
        return call

    # ------------------------------------------------------------------ data

    def read(self, spec: SyscallSpec) -> Thunk:
        return self.transfer(spec, _libc.recv)

    def write(self, spec: SyscallSpec) -> Thunk:
        return self.transfer(spec, _libc.send)

    def transfer(self, spec: SyscallSpec, libc_call: Callable[..., int]) -> Thunk:
        """``(fd, buf, size[, flags])`` through libc's recv or send (read and write are
        those with flags 0); a NULL ``buf`` is passed on as NULL. A sendto with
        MSG_FASTOPEN connects: it goes to the script's remote address."""
        sock = self.sock(spec.args[0])
        size = self.arg(spec, 2)
        flags = self.arg(spec, 3)
        null = is_null(spec.args[1])
        if flags & SYMBOLS["MSG_FASTOPEN"] and not null:
            if len(spec.args) > 4 and isinstance(spec.args[4], WordExpr) \
                    and evaluate(spec.args[4]) == SYMBOLS["AF_UNSPEC"]:
                def unspec() -> int:  # a sockaddr of family AF_UNSPEC
                    addr = ctypes.create_string_buffer(16)
                    return _checked(_libc.sendto(sock.fileno(), bytes(size), size, flags,
                                                 addr, 16))
                return unspec
            self.hooks.on_connect()
            self.info_fd = evaluate(spec.args[0])

            def fastopen() -> int:
                return sock.sendto(bytes(size), flags, (REMOTE_ADDR, CONNECT_PORT))
            return fastopen

        def call() -> int:
            buf = None if null else ctypes.create_string_buffer(max(size, 1))
            return _checked(libc_call(sock.fileno(), buf, size, flags))
        return call

    def recvmsg(self, spec: SyscallSpec) -> Thunk:
        sock = self.sock(spec.args[0])
        size, flags, msg = recvmsg_request(spec)

        def call() -> int:
            data, ancdata, msg_flags, _ = sock.recvmsg(size, CMSG_SPACE, flags)
            check_recvmsg(msg, ancdata, msg_flags)
            return len(data)
        return call

    def writev(self, spec: SyscallSpec) -> Thunk:
        sock = self.sock(spec.args[0])
        sizes = _iov_sizes(spec.args[1])

        def call() -> int:
            return os.writev(sock.fileno(), [bytes(n) for n in sizes])
        return call

    def sendmsg(self, spec: SyscallSpec) -> Thunk:
        sock = self.sock(spec.args[0])
        msg = spec.args[1]
        if not isinstance(msg, StructExpr):
            raise Unsupported("sendmsg without a msghdr")
        iov = msg.get("msg_iov")
        control = msg.get("msg_control")
        if control is not None and not (isinstance(control.value, ListExpr)
                                        and not control.value.items):
            raise Unsupported("sendmsg with control messages")
        sizes = _iov_sizes(iov.value) if iov is not None else []
        flags = self.arg(spec, 2)

        def call() -> int:
            return sock.sendmsg([bytes(n) for n in sizes], [], flags)
        return call

    # ------------------------------------------------------------------ options

    def setsockopt(self, spec: SyscallSpec) -> Thunk:
        sock = self.sock(spec.args[0])
        level, name = self.arg(spec, 1), self.arg(spec, 2)
        value = _option_bytes(spec.args[3]) if len(spec.args) > 3 else b""

        def call() -> int:
            sock.setsockopt(level, name, value)
            return 0
        return call

    def getsockopt(self, spec: SyscallSpec) -> Thunk:
        sock = self.sock(spec.args[0])
        level, name = self.arg(spec, 1), self.arg(spec, 2)
        label = symbol_name(spec.args[2])
        expected = spec.args[3] if len(spec.args) > 3 else EllipsisExpr()

        def call() -> int:
            if label == "TCP_INFO":
                check_tcp_info(read_tcp_info(sock), expected)
            elif isinstance(expected, StructExpr):  # SO_LINGER {onoff, linger}
                raw = sock.getsockopt(level, name, 8)
                actual = dict(zip(("onoff", "linger"), struct.unpack("ii", raw), strict=True))
                for member in expected.fields:
                    want = evaluate(member.value)
                    if want is not None and actual.get(member.name) != want:
                        raise CallMismatch(f"getsockopt {label} {member.name}: expected "
                                           f"{want} actual {actual.get(member.name)}")
            else:
                got = sock.getsockopt(level, name)
                want = evaluate(expected)
                if want is not None and got != c_int(want):
                    raise CallMismatch(f"getsockopt {label}: expected {want} actual {got}")
            return 0
        return call

    def fcntl(self, spec: SyscallSpec) -> Thunk:
        sock = self.sock(spec.args[0])
        cmd, arg = self.arg(spec, 1), self.arg(spec, 2)

        def call() -> int:
            return fcntl.fcntl(sock.fileno(), cmd, arg)
        return call

    def ioctl(self, spec: SyscallSpec) -> Thunk:
        sock = self.sock(spec.args[0])
        request = self.arg(spec, 1)
        label = symbol_name(spec.args[1])
        want = evaluate(spec.args[2]) if len(spec.args) > 2 else None

        def call() -> int:
            raw = fcntl.ioctl(sock.fileno(), request, bytes(4))
            actual = struct.unpack("i", raw)[0]
            if want is not None and want != actual:
                raise CallMismatch(f"ioctl {label}: expected {want} actual {actual}")
            return 0
        return call

    # ------------------------------------------------------------------ epoll

    def epoll_create(self, spec: SyscallSpec) -> Thunk:
        def call() -> int:
            fd = self.free_fd(spec)
            self.epolls[fd] = select.epoll()
            return fd
        return call

    def epoll_of(self, expr: Expr) -> select.epoll:
        ep = self.epolls.get(evaluate(expr) or -1)
        return ep if ep is not None else _bad_fd()

    def epoll_ctl(self, spec: SyscallSpec) -> Thunk:
        """``epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events=EPOLLIN, fd=4})``; the event's data
        is the script fd, given back by epoll_wait."""
        ep = self.epoll_of(spec.args[0])
        op = self.arg(spec, 1)
        sock = self.sock(spec.args[2])
        event = spec.args[3] if len(spec.args) > 3 else EllipsisExpr()
        mask = field_int(event, "events") if isinstance(event, StructExpr) else 0

        def call() -> int:
            if op == SYMBOLS["EPOLL_CTL_ADD"]:
                ep.register(sock.fileno(), mask)
            elif op == SYMBOLS["EPOLL_CTL_MOD"]:
                ep.modify(sock.fileno(), mask)
            elif op == SYMBOLS["EPOLL_CTL_DEL"]:
                ep.unregister(sock.fileno())
            else:
                raise OSError(22, os.strerror(22))  # EINVAL
            return 0
        return call

    def epoll_wait(self, spec: SyscallSpec) -> Thunk:
        """``epoll_wait(epfd, {events=EPOLLIN, fd=4}, maxevents, timeout_ms)``: the ready
        events, compared with the script's struct (or list of them) when it gives one."""
        ep = self.epoll_of(spec.args[0])
        expected = spec.args[1]
        wants = [e for e in (expected.items if isinstance(expected, ListExpr) else (expected,))
                 if isinstance(e, StructExpr)]
        maxevents = max(1, self.arg(spec, 2))
        timeout_ms = evaluate(spec.args[3]) if len(spec.args) > 3 else 0
        timeout = -1.0 if timeout_ms is None or timeout_ms < 0 else timeout_ms / 1000

        def call() -> int:
            ready = ep.poll(timeout, maxevents)
            by_real = {sock.fileno(): fd for fd, sock in self.fds.items()}
            got = [(by_real.get(real, -1), events) for real, events in ready]
            for want, (fd, events) in zip(wants, got, strict=False):
                want_events, want_fd = field_int(want, "events"), field_int(want, "fd")
                if (want_events, want_fd) != (events, fd):
                    raise CallMismatch(f"epoll_wait: expected events {want_events:#x} fd "
                                       f"{want_fd} actual events {events:#x} fd {fd}")
            return len(ready)
        return call

    def poll(self, spec: SyscallSpec) -> Thunk:
        fds = spec.args[0]
        if not isinstance(fds, ListExpr):
            raise Unsupported("poll without a pollfd array")
        entries = [p for p in fds.items if isinstance(p, StructExpr)]
        timeout_ms = evaluate(spec.args[2]) if len(spec.args) > 2 else 0
        array = (PollFd * max(len(entries), 1))()
        for i, entry in enumerate(entries):
            script_fd = field_int(entry, "fd")
            sock = self.fds.get(script_fd)
            array[i].fd = sock.fileno() if sock is not None else INVALID_FD
            array[i].events = field_int(entry, "events")

        def call() -> int:
            ready = _checked(_libc.poll(ctypes.addressof(array), len(entries),
                                        -1 if timeout_ms is None else timeout_ms))
            for i, entry in enumerate(entries):
                expected = entry.get("revents")
                want = evaluate(expected.value) if expected is not None else 0
                if want is not None and want != array[i].revents:
                    raise CallMismatch(f"poll revents: expected {want:#x} actual "
                                       f"{array[i].revents:#x}")
            return ready
        return call


def _bad_fd() -> NoReturn:
    raise OSError(9, os.strerror(9))  # EBADF


def _iov_sizes(expr: Expr) -> list[int]:
    iov_total(expr)  # the same checks (and Unsupported) as the engine target
    assert isinstance(expr, ListExpr)
    return [evaluate(item.items[1]) or 0 for item in expr.items
            if isinstance(item, BraceExpr)]


def _option_bytes(expr: Expr) -> bytes:
    if isinstance(expr, StructExpr):  # SO_LINGER {onoff=1, linger=0}
        return struct.pack("ii", field_int(expr, "onoff"), field_int(expr, "linger"))
    if isinstance(expr, StringExpr):  # TCP_CONGESTION "cubic"
        return expr.value.encode()
    value = evaluate(expr)
    if value is None:
        raise Unsupported("setsockopt with '...'")
    return struct.pack("i", c_int(value))
