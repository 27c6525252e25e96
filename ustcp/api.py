"""trio streams over the engine: :class:`TCPStream`, :class:`TCPListener`,
:func:`open_tcp_stream`, :func:`open_tcp_listeners`.

They behave as trio's ``SocketStream`` and ``SocketListener`` do, so ``trio.serve_listeners``,
``trio.SSLStream`` and h11 work unchanged (:func:`serve_listeners` here is a leaner
``trio.serve_listeners`` for these streams):

- every operation is a checkpoint (cancellable before it has an effect; after it has
  taken effect the checkpoint is shielded, as in trio's socket methods);
- errors of the connection (reset, timeout, broken pipe) become ``trio.BrokenResourceError``
  with the ``OSError`` as ``__cause__``; using a stream after our own ``aclose`` gives
  ``trio.ClosedResourceError``, and so does a task blocked in it when another task closes it;
  two tasks sending (or receiving) at once get ``trio.BusyResourceError``;
- like trio, a new stream turns Nagle's algorithm off (``set_nodelay(False)`` restores it);
- ``setsockopt``/``getsockopt`` take the socket module's constants, as trio's
  ``SocketStream`` and ``SocketListener`` do, with Linux's semantics
  (:mod:`ustcp.tcp.sock`): TCP_NODELAY, TCP_CORK, SO_KEEPALIVE, TCP_KEEPIDLE, SO_LINGER,
  TCP_MAXSEG, TCP_CONGESTION, SO_RCVBUF, TCP_INFO (bytes laid out as ``struct tcp_info``),
  SO_MAX_PACING_RATE (``ustcp.tcp.sock.SO_MAX_PACING_RATE``: the socket module lacks it), ...

A task waits by parking on the :class:`Waiters` stored in the connection's (or
listener's) ``waiter``; the stack unparks it whenever the engine reports a status change.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import NoReturn, TypeVar

import structlog
import trio

from .sockfacade import StreamSocket
from .stack import Stack
from .tcp.buffers import unchangeable
from .tcp.connection import Connection
from .tcp.listener import Listener
from .tcp.options import SockOpts
from .tcp.sock import Sock
from .tcp.states import SYNCHRONIZED, State
from .wire.addr import ntop, pton

log = structlog.get_logger("ustcp.api")

StreamT = TypeVar("StreamT", bound=trio.abc.AsyncResource)

DEFAULT_RECEIVE_SIZE = 65536  # trio's default for SocketStream.receive_some
MAX_BACKLOG = 0xFFFF  # trio's backlog when none is given; the engine caps it at somaxconn


class Waiters:
    """The tasks parked on one Connection or Listener: trio's ``ParkingLot`` cut down to
    the two operations the API and the stack use (the stack calls ``notify`` through the
    object's ``waiter``, a :class:`ustcp.stack.Notified`). ParkingLot's FIFO order,
    ``repark`` and statistics go unused here; without them a wake-up costs 0.85 µs less,
    and the ``notify`` with nobody parked that follows most engine events 0.05 µs, not
    0.6. It stays interpreted when the stack is compiled: trio's KI protection marks a
    function's code object, which a compiled function does not have."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: dict[trio.lowlevel.Task, None] = {}

    @trio.lowlevel.enable_ki_protection
    async def park(self) -> None:
        """Sleep until :meth:`notify`; cancellable while parked (a checkpoint)."""
        task = trio.lowlevel.current_task()
        self._tasks[task] = None

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            del self._tasks[task]
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    @trio.lowlevel.enable_ki_protection
    def notify(self) -> bool:
        """Wake every parked task; returns whether there was one."""
        if not self._tasks:
            return False
        tasks, self._tasks = self._tasks, {}
        for task in tasks:
            trio.lowlevel.reschedule(task)
        return True


class _ConflictDetector:
    """Raise ``trio.BusyResourceError`` when two tasks enter at once."""

    def __init__(self, message: str) -> None:
        self._message = message
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(self._message)
        self._held = True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._held = False


def _waiters(obj: Connection | Listener) -> Waiters:
    if obj.waiter is None:
        obj.waiter = Waiters()
    waiters: Waiters = obj.waiter
    return waiters


def _broken(exc: OSError) -> trio.BrokenResourceError:
    return trio.BrokenResourceError(f"connection broken: {exc}")


class TCPStream(trio.abc.HalfCloseableStream):
    """A connected TCP stream of a :class:`~ustcp.stack.Stack`."""

    def __init__(self, stack: Stack, connection: Connection, *, nodelay: bool = True) -> None:
        self.stack = stack
        self.connection = connection
        self._sock = Sock(stack.engine.config, connection.sockopts, conn=connection)
        self._waiters = _waiters(connection)
        self._closed = False
        self._eof_sent = False
        self._send_conflict = _ConflictDetector(
            "another task is currently sending data on this TCPStream")
        self._receive_conflict = _ConflictDetector(
            "another task is currently receiving data on this TCPStream")
        # TCP_NODELAY before the application has queued anything: nothing to push yet.
        connection.sockopts.nodelay = nodelay

    @property
    def local_address(self) -> tuple[str, int]:
        conn = self.connection
        return ntop(conn.local_ip), conn.local_port

    @property
    def remote_address(self) -> tuple[str, int]:
        conn = self.connection
        return ntop(conn.remote_ip), conn.remote_port

    @property
    def socket(self) -> StreamSocket:
        """What frameworks read from ``SocketStream.socket`` (family, getsockname,
        getpeername, getsockopt, setsockopt), answered from the connection."""
        return StreamSocket(self)

    def set_nodelay(self, nodelay: bool) -> None:
        """TCP_NODELAY: True sends small segments at once instead of waiting for ACKs."""
        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        """setsockopt(2) on this connection, as ``trio.SocketStream.setsockopt``; raises
        ``OSError`` with Linux's errno (EINVAL, ENOPROTOOPT, ENOENT)."""
        self.stack.call(self._sock, Sock.setsockopt, level, option, value)

    def getsockopt(self, level: int, option: int, buffersize: int = 0) -> int | bytes:
        """getsockopt(2), as ``trio.SocketStream.getsockopt``: an int, or with
        ``buffersize`` the option's bytes (``TCP_INFO``: ``struct tcp_info``). Reading
        ``SO_ERROR`` clears the pending error."""
        return self.stack.call(self._sock, Sock.getsockopt, level, option, buffersize)

    @property
    def closed(self) -> bool:
        """Whether this stream was closed (``aclose`` or ``abort``)."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this stream was already closed")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_sent:
            raise trio.ClosedResourceError("can't send data after sending EOF")
        with self._send_conflict:
            self._check_open()
            # What the caller could change while this waits is copied once, here; a view
            # of bytes goes as it is (the http app's chunks): the send buffer's own rule.
            view = memoryview(unchangeable(data))
            if not view:
                await trio.lowlevel.checkpoint()
                return
            sock, stack, total = self._sock, self.stack, 0
            while total < len(view):
                await trio.lowlevel.checkpoint_if_cancelled()
                self._check_open()
                try:
                    sent = stack.call(sock, Sock.send, view[total:])
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    raise _broken(exc) from exc
                if sent:
                    total += sent
                    await trio.lowlevel.cancel_shielded_checkpoint()
                else:
                    await self._waiters.park()

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_conflict:
            self._check_open()
            while not self.connection.writable:
                await self._waiters.park()
                self._check_open()
            await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        with self._send_conflict:
            await trio.lowlevel.checkpoint()
            self._check_open()
            if self._eof_sent:
                return
            self._eof_sent = True
            try:
                self.stack.call(self._sock, Sock.shutdown, socket.SHUT_WR)
            except OSError as exc:
                raise _broken(exc) from exc

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        with self._receive_conflict:
            conn, stack = self.connection, self.stack
            yielded = False  # a park or a busy read already was the schedule point
            while True:
                await trio.lowlevel.checkpoint_if_cancelled()
                self._check_open()
                # Nothing to read (recv would raise BlockingIOError, which costs more than
                # asking): net.core.busy_read spins on the link once, then park.
                if not self._sock.recv_ready:
                    if not (stack.config.busy_read and not yielded
                            and await stack.busy_read(conn)):
                        await self._waiters.park()
                    yielded = True
                    continue
                try:
                    data = stack.call(self._sock, Sock.recv, max_bytes)
                except OSError as exc:
                    raise _broken(exc) from exc
                if not yielded:  # as in trio: yield once if nothing else did
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return data

    async def aclose(self) -> None:
        """close(2): FIN after the queued data (RST if unread data is discarded, as Linux
        does). With SO_LINGER {1, T} it waits until the FIN is acknowledged or T seconds
        pass, then returns; the connection goes on as an orphan either way (tcp_close,
        sk_stream_wait_close). Idempotent; the stream is closed even if this is cancelled."""
        linger = 0.0
        if not self._closed:
            self._closed = True
            linger = self.stack.call(self._sock, Sock.close)
            self._waiters.notify()
        if not linger:
            await trio.lowlevel.checkpoint()
            return
        with trio.move_on_after(linger):
            while self._sock.closing:
                await self._waiters.park()

    def abort(self) -> None:
        """Close with a RST at once (SO_LINGER on with a zero timeout): queued data is lost."""
        if not self._closed:
            self._closed = True
            self.stack.call(self._sock, Sock.abort)
            self._waiters.notify()


class TCPListener(trio.abc.Listener[TCPStream]):
    """A listening socket; :meth:`accept` returns established :class:`TCPStream` objects."""

    def __init__(self, stack: Stack, listener: Listener) -> None:
        self.stack = stack
        self.listener = listener
        self._sock = Sock(stack.engine.config, listener.sockopts, listener=listener)
        self._waiters = _waiters(listener)
        self._closed = False

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        """setsockopt(2) on the listening socket; accepted connections inherit the options
        (TCP_DEFER_ACCEPT, TCP_MAXSEG, SO_RCVBUF, SO_KEEPALIVE, ...) as in Linux."""
        self.stack.call(self._sock, Sock.setsockopt, level, option, value)

    def getsockopt(self, level: int, option: int, buffersize: int = 0) -> int | bytes:
        return self.stack.call(self._sock, Sock.getsockopt, level, option, buffersize)

    @property
    def local_address(self) -> tuple[str, int]:
        return ntop(self.listener.local_ip), self.listener.port

    async def accept(self) -> TCPStream:
        parked = False  # a park is the schedule point; only an immediate accept yields
        while True:
            await trio.lowlevel.checkpoint_if_cancelled()
            if self._closed:
                raise trio.ClosedResourceError("this listener was already closed")
            conn = self.stack.call(self._sock, Sock.accept)
            if conn is not None:
                if not parked:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return TCPStream(self.stack, conn)
            await self._waiters.park()
            parked = True

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self.stack.call(self._sock, Sock.close)
            self._waiters.notify()
        await trio.lowlevel.checkpoint()


async def open_tcp_listeners(stack: Stack, port: int, *, host: str = "0.0.0.0",
                             backlog: int | None = None,
                             v6only: bool = False) -> list[TCPListener]:
    """Listen on ``host:port`` (an IPv4 or IPv6 literal; ``0.0.0.0`` = any IPv4 address,
    ``::`` = any address of either version unless ``v6only`` (IPV6_V6ONLY); port 0 = a free
    ephemeral port, see ``local_address``) and return the listener in a list, as
    ``trio.open_tcp_listeners`` does, for ``trio.serve_listeners``."""
    local_ip = _literal(host)
    await trio.lowlevel.checkpoint()
    listener = stack.listen(local_ip, port,
                            MAX_BACKLOG if backlog is None else min(backlog, MAX_BACKLOG),
                            SockOpts(v6only=v6only))
    return [TCPListener(stack, listener)]


def _literal(host: str) -> bytes:
    """An address literal, packed; ``OSError(EINVAL)`` for anything else, as
    ``socket.inet_pton`` (no name resolution here)."""
    try:
        return pton(host)
    except ValueError as exc:
        raise OSError(errno.EINVAL, f"not an IPv4 or IPv6 address literal: {host!r}") from exc


async def serve_listeners(handler: Callable[[StreamT], Awaitable[object]],
                          listeners: Sequence[trio.abc.Listener[StreamT]], *,
                          handler_nursery: trio.Nursery | None = None) -> NoReturn:
    """Accept forever on every listener and run ``handler(stream)`` in a task of its own
    (in ``handler_nursery`` if given, so cancelling the accept loops leaves the handlers
    running), closing the stream when the handler returns, as ``trio.serve_listeners`` does;
    any trio listener works (a ``trio.SSLListener`` around ours, for one).

    Unlike trio's, a handler's exception ends its own connection only (see
    :func:`_run_handler`). trio closes with ``trio.aclose_forcefully`` (a cancelled scope
    and a ``Cancelled`` raised and caught, about 28 µs here), made for streams whose
    ``aclose`` may wait. :meth:`TCPStream.aclose` does not wait (the FIN or RST is queued)
    unless the handler set SO_LINGER {1, T}, and then only in that connection's task, as
    close(2) would; so a plain ``aclose`` closes a TCPStream just as surely, and a
    connection costs less.
    """
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_serve_one_listener, listener, handler_nursery or nursery,
                               handler)
    raise AssertionError("unreachable: the accept loops never return")


async def _serve_one_listener(listener: trio.abc.Listener[StreamT], nursery: trio.Nursery,
                              handler: Callable[[StreamT], Awaitable[object]]) -> None:
    async with listener:
        while True:
            nursery.start_soon(_run_handler, await listener.accept(), handler)


def _transport(stream: trio.abc.AsyncResource) -> TCPStream | None:
    """The TCPStream under ``stream`` (itself, or under a trio.SSLStream), if any."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream if isinstance(stream, TCPStream) else None


async def _run_handler(stream: StreamT, handler: Callable[[StreamT], Awaitable[object]]) -> None:
    """One connection's handler. Its exception ends that connection only: a peer that went
    away is routine (debug), anything else is logged with its traceback and the connection
    reset, so the peer sees the failure instead of a clean end of stream."""
    tcp = _transport(stream)
    try:
        await handler(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("handler_connection_gone", error=repr(exc))
    except Exception:
        peer = "{}:{}".format(*tcp.remote_address) if tcp is not None else repr(stream)
        log.exception("handler_failed", handler=getattr(handler, "__qualname__", repr(handler)),
                      peer=peer)
        if tcp is not None:
            tcp.abort()
    finally:
        if stream is tcp:
            if not tcp.closed:  # most handlers close it: no second checkpoint at task end
                await stream.aclose()
        else:
            await trio.aclose_forcefully(stream)


async def open_tcp_stream(stack: Stack, host: str, port: int, *,
                          local_port: int | None = None) -> TCPStream:
    """Active open to ``host:port`` (an IPv4 or IPv6 literal, from the stack's address of
    that version). Returns once the handshake completes; raises the connection's ``OSError``
    (``ConnectionRefusedError`` on a RST, ``TimeoutError`` when the SYN retries run out).
    Cancelling abandons the attempt."""
    remote_ip = _literal(host)
    conn = stack.connect(remote_ip, port, local_port)
    waiters = _waiters(conn)
    try:
        while conn.state not in SYNCHRONIZED:
            err = conn.take_error()
            if err is not None:
                raise err
            if conn.state == State.CLOSE:
                raise ConnectionAbortedError(errno.ECONNABORTED, "closed during the handshake")
            await waiters.park()
    except BaseException:
        stack.call(Sock(stack.config, conn.sockopts, conn=conn), Sock.close)
        raise
    return TCPStream(stack, conn)
