"""Apps on socket callbacks: served from the receive loop, with no task per connection.

Linux's own in-kernel users of TCP (the NFS server's sunrpc transport, the kernel's TLS and
NBD code) do not sleep in recvmsg: they replace a socket's ``sk_data_ready``,
``sk_write_space`` and ``sk_state_change`` callbacks, and the TCP stack calls those from its
receive path the moment something changes. The same here: a :class:`CallbackListener` or
:class:`CallbackSocket` is the ``waiter`` of its engine object, so the stack's flush
(:meth:`ustcp.stack.Stack.kick`) calls its :meth:`~CallbackSocket.notify` in the receive
loop's task; the app reads and writes at once, and what it sends leaves in the same
``send_batch`` as the ACKs of the frames that woke it.

What this saves against a handler task on a :class:`ustcp.api.TCPStream` (docs/
performance.md has the figures): an echo round trip takes one scheduler pass (the receive
loop's wake-up) instead of three (that one, the reader task's, and ``send_all``'s
checkpoint); a connection needs no task, nursery entry, cancel scope or parking lot.
What it costs: an app never blocks and never awaits; it keeps its own state between calls
(data it could not send yet, where it is in a protocol) and must hand :meth:`send` data
that does not change afterwards (``bytes``, or a view of ``bytes``), since the engine keeps
a view of what it takes until it is acknowledged. The daemon's echo, discard and chargen are
written this way (:mod:`ustcp.apps`); HTTP and your own handlers use trio streams.

The contract of :meth:`SocketApp.ready`: it is called after the connection is accepted and
whenever the engine names it (data or a FIN arrived, send space was freed, a state changed,
an error is pending; more than once per change is allowed); it reads with
:meth:`CallbackSocket.recv` (``None``: nothing yet, ``b""``: the peer's FIN), writes with
:meth:`CallbackSocket.send` (the bytes the send buffer took) and ends the connection with
:meth:`CallbackSocket.close`. An ``OSError`` it lets through (the peer reset the
connection) ends that connection quietly; any other exception is logged and the connection
reset, as :func:`ustcp.api.serve_listeners` does for a failing handler.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
import trio

from .stack import Stack
from .tcp.connection import Connection
from .tcp.listener import Listener
from .tcp.sock import Sock
from .wire.addr import endpoint

log = structlog.get_logger("ustcp.callbacks")


class SocketApp(Protocol):
    """One connection's app: :meth:`ready` runs whenever the connection may have changed."""

    def ready(self, sock: CallbackSocket) -> None: ...


@dataclass(frozen=True)
class CallbackApp:
    """An app served on socket callbacks: ``make()`` is one connection's :class:`SocketApp`
    (what ``ustcp serve`` tells from a trio stream handler)."""

    make: Callable[[], SocketApp]


class IdleWatch(Protocol):
    """What ends connections that stopped moving (the daemon's ``--idle-timeout``)."""

    def watch(self, conn: Connection, expire: Callable[[], None]) -> None: ...

    def unwatch(self, conn: Connection) -> None: ...


class CallbackSocket:
    """A connection whose app runs on its callbacks. Every call goes through the stack's
    door (:meth:`Stack.call`); inside a flush, that flush sends the output."""

    __slots__ = ("_idle", "_sock", "app", "closed", "conn", "stack")

    def __init__(self, stack: Stack, conn: Connection, app: SocketApp,
                 idle: IdleWatch | None = None) -> None:
        self.stack = stack
        self.conn = conn
        self.app = app
        self.closed = False
        self._sock = Sock(stack.config, conn.sockopts, conn=conn)
        self._idle = idle
        conn.sockopts.nodelay = True  # as a trio stream: small writes go at once
        conn.waiter = self
        if idle is not None:
            idle.watch(conn, self.close)

    def notify(self) -> bool:
        """sk_data_ready, sk_write_space and sk_state_change in one: run the app, here and
        now (no task becomes runnable)."""
        if self.closed:
            return False
        try:
            self.app.ready(self)
        except OSError as exc:
            log.debug("app_connection_gone", error=repr(exc))
            self.close()
        except Exception:  # a failing app must not take the receive loop down
            log.exception("app_failed", app=type(self.app).__qualname__,
                          peer=endpoint(self.conn.remote_ip, self.conn.remote_port))
            self.abort()
        return False

    def recv(self, max_bytes: int) -> bytes | None:
        """Up to ``max_bytes``; ``b""`` after the peer's FIN; None when nothing is there
        yet (the app is called again when something comes)."""
        stack, sock = self.stack, self._sock
        if not sock.recv_ready:
            return None
        now = stack.call_begin()  # Stack.call's work, with a native call of Sock.recv
        try:
            return sock.recv(now, max_bytes)
        except BlockingIOError:
            return None
        finally:
            stack.call_end(sock, now)

    def send(self, data: bytes | memoryview) -> int:
        """Queue ``data`` (immutable: the engine keeps a view of it); returns how many
        bytes the send buffer took, 0 when it is full (the app is called again when space
        is freed)."""
        stack, sock = self.stack, self._sock
        now = stack.call_begin()  # as in recv
        try:
            return sock.send(now, data)
        except BlockingIOError:
            return 0
        finally:
            stack.call_end(sock, now)

    def close(self) -> None:
        """close(2): FIN after what is queued (RST over unread data, as Linux); the
        connection goes on as an orphan, and the app is not called again."""
        if not self.closed:
            self._release()
            self.stack.call(self._sock, Sock.close)

    def abort(self) -> None:
        """Close with a RST at once: queued data is lost."""
        if not self.closed:
            self._release()
            self.stack.call(self._sock, Sock.abort)

    def _release(self) -> None:
        self.closed = True
        self.conn.waiter = None
        if self._idle is not None:
            self._idle.unwatch(self.conn)


class CallbackListener:
    """A listening socket whose accepted connections each get ``make_app()`` as their app,
    accepted as soon as the engine names the listener (no accept loop task)."""

    __slots__ = ("_idle", "_sock", "closed", "listener", "make_app", "stack")

    def __init__(self, stack: Stack, listener: Listener, make_app: Callable[[], SocketApp],
                 idle: IdleWatch | None = None) -> None:
        self.stack = stack
        self.listener = listener
        self.make_app = make_app
        self.closed = False
        self._sock = Sock(stack.config, listener.sockopts, listener=listener)
        self._idle = idle
        listener.waiter = self

    def notify(self) -> bool:
        """The accept queue may hold children: accept them all (bounded by the backlog);
        no task becomes runnable."""
        stack, sock = self.stack, self._sock
        while not self.closed:
            conn = stack.call(sock, Sock.accept)
            if conn is None:
                break
            # Data may be there already (TCP_DEFER_ACCEPT, Fast Open): the app looks now.
            CallbackSocket(stack, conn, self.make_app(), self._idle).notify()
        return False

    def close(self) -> None:
        """Stop listening; accepted connections go on."""
        if not self.closed:
            self.closed = True
            self.listener.waiter = None
            self.stack.call(self._sock, Sock.close)


async def serve_callbacks(stack: Stack, listeners: Sequence[Listener], app: CallbackApp,
                          idle: IdleWatch | None = None) -> None:
    """Serve ``app`` on ``listeners`` on socket callbacks until cancelled, then close the
    listeners; the connections they accepted go on (the daemon's shutdown resets them after
    its grace period)."""
    served = [CallbackListener(stack, listener, app.make, idle) for listener in listeners]
    try:
        for callback_listener in served:
            callback_listener.notify()  # children that came before the app took over
        await trio.sleep_forever()
    finally:
        for callback_listener in served:
            callback_listener.close()
