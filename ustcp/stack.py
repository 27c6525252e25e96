"""The trio driver: one host's link, IP layer and TCP engine, and the tasks that run them.

:meth:`Stack.run` runs two tasks until cancelled:

- the receive loop takes a batch of frames from the link, hands each to the IP layer, then
  flushes once for the whole batch;
- the timer loop sleeps until the engine's (or the IP layer's reassembly) next deadline and
  runs their timers.

Busy polling (Linux's net.core.busy_poll and net.core.busy_read, in µs; both 0 by default)
spins on the link instead of sleeping: a sleeping vCPU takes tens of µs to wake, and a
frame that comes within the spin costs none of that. With ``busy_poll`` the receive loop
polls that long before it sleeps; with ``busy_read`` a task whose ``receive_some`` finds
nothing polls the link itself (:meth:`Stack.busy_read`, Linux's sk_busy_loop) and runs
what comes through the stack in its own task, so its data is read with no task switch.
Both go through :meth:`Stack._spin`.

Between schedule points the receive loop may run several batches (:meth:`Stack.
_unscheduled`, net_rx_action's budget): after a flush that made no task runnable, such as
one whose only waiters are apps on socket callbacks, it takes the next batch without a
pass through trio's scheduler, for at most :data:`SCHEDULER_SLICE` since the last pass;
with nothing queued, a TUN link sleeps in poll(2) rather than in the scheduler's
epoll_wait, for 1 ms at most, while the scheduler has no task to run and a whole
millisecond before its next deadline. A pass costs more than the engine's whole work for
an echo round trip; the price is that another file descriptor's readiness, or a task that
yielded at a checkpoint while frames keep coming, may wait up to one slice.

A flush (:meth:`Stack.kick`) notifies what waits on the objects the engine names (user tasks
parked there, or an app on socket callbacks, :mod:`ustcp.callbacks`, which runs at once and
may produce more output), sends what the engine produced in one ``send_batch``, and pulls
the timer loop's wake-up earlier if the engine now has an earlier deadline. Every user call
reaches the engine through one door, :meth:`Stack.call` (and :meth:`Stack.connect`,
:meth:`Stack.listen` for the calls that make a socket): it runs the socket layer's
operation, lets the engine re-read the timers of what the call reached
(``TcpEngine.release``, Linux's release_sock), and flushes, whether the operation returned
or raised (inside a flush, that flush sends its output, and the call runs at the flush's
time). A callback app's ``recv`` and ``send`` make the same door's two halves,
:meth:`Stack.call_begin` and :meth:`Stack.call_end`, around a direct call of the operation:
compiled, ``call``'s generic call of it was a quarter of the echo app's cost per round
trip.
Waking works through the ``waiter`` attribute of each Connection and Listener, which the
engine never touches: the API stores its ``Waiters`` there (the tasks parked on the object),
a callback app its socket; either is :class:`Notified`.

A frame the layers below fail on in an unexpected way is logged, counted as
``UstcpInternalErrors`` and dropped; it never ends the receive loop. The send path does the
same for a segment the IP layer cannot build and a batch the link fails to send.
"""

from __future__ import annotations

import errno
import math
import time
from collections.abc import Callable
from typing import Concatenate, Final, ParamSpec, Protocol, TypeVar

import structlog
import trio

from .config import StackConfig
from .ip import IpLayer
from .link.base import Link, ReceivedFrame
from .mib import Counters, Mib
from .tcp.connection import Connection
from .tcp.engine import TcpEngine
from .tcp.listener import Listener
from .tcp.options import SockOpts
from .tcp.sock import Sock
from .tcp.states import State

log = structlog.get_logger("ustcp.stack")

P = ParamSpec("P")
R = TypeVar("R")


class Notified(Protocol):
    """What a Connection's or Listener's ``waiter`` holds: told by each flush that the
    engine named the object (data, space, a state change or an error may be new)."""

    def notify(self) -> bool:
        """Returns whether a task became runnable (the receive loop then lets it run
        before its next batch)."""
        ...


BUSY_POLL_SLICE: Final = 10e-6  # the longest a spin keeps the other tasks waiting (s)
SCHEDULER_SLICE: Final = 2e-3  # longest run of receives without a schedule point (s)
# Schedule points the receive loop makes after a flush that woke a task: trio runs a batch
# of runnable tasks in random order, so at the first the woken task may come after the
# receive loop in the same batch and then wait out the slice; by the second it has run.
# The second pass costs a bulk sender (GET /bytes/N 7.6-8.1 Gbit/s against 8.7-9.3 with
# one): a cheaper proof that the task ran is still to find (docs/performance.md).
WAKE_PASSES: Final = 2
NOTIFY_ROUNDS: Final = 16  # a flush's rounds of notifications (callback apps wake more objects)


class Stack:
    """One host with the address ``local_addr`` (4 packed bytes) and, when dual-stack,
    ``local_addr6`` (16 packed bytes) on ``link``."""

    def __init__(self, link: Link, config: StackConfig, counters: Counters, local_addr: bytes,
                 *, seed: int | None = None, local_addr6: bytes | None = None) -> None:
        self.link = link
        self.config = config
        self.counters = counters
        self.local_addr = local_addr
        self.local_addr6 = local_addr6
        self.engine = TcpEngine(config, counters, seed=seed, mtu=link.mtu,
                                gso_max_size=link.gso_max_size)
        addrs = {local_addr} if local_addr6 is None else {local_addr, local_addr6}
        self.ip = IpLayer(self.engine, counters, addrs, config,
                          tx_csum_offload=link.tx_csum_offload, mtu=link.mtu)
        self._timer_scope: trio.CancelScope | None = None
        self._busy_readers = 0  # tasks in busy_read: the receive loop leaves them the link
        self._flushing = False  # in kick: a callback app's calls leave the flush to it
        self._renotify = False  # the last flush left objects named: the timer loop runs now
        self._flush_now = 0.0  # the time of the flush under way, for the calls made in it
        self._passes_owed = 0  # schedule points owed to tasks a flush made runnable
        self._slice_end = -math.inf  # when the receive loop owes the scheduler a pass

    async def run(self) -> None:
        """Drive the link and the timers until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive_loop)
            nursery.start_soon(self._timer_loop)

    def call(self, sock: Sock, op: Callable[Concatenate[Sock, float, P], R],
             *args: P.args, **kwargs: P.kwargs) -> R:
        """A user call on a socket (lock_sock ... release_sock): ``op(sock, now, *args)``
        between :meth:`call_begin` and :meth:`call_end`."""
        now = self.call_begin()
        try:
            return op(sock, now, *args, **kwargs)
        finally:
            self.call_end(sock, now)

    def call_begin(self) -> float:
        """The time a user call runs at: the flush's when a callback app calls from inside
        one (as Linux reads tcp_mstamp once per event), else trio's clock. A caller that
        cannot afford :meth:`call`'s generic call of its operation (a callback app's
        ``recv`` and ``send``, once per round trip each) calls the operation itself between
        this and :meth:`call_end`."""
        return self._flush_now if self._flushing else trio.current_time()

    def call_end(self, sock: Sock, now: float) -> None:
        """After a user call's operation, whether it returned or raised: the engine
        re-reads the timers of the connection or listener it reached, and the output goes
        out."""
        engine = self.engine
        engine.release(sock.conn)
        engine.release(sock.listener)
        self.kick(now)

    def connect(self, remote_ip: bytes, remote_port: int, local_port: int | None = None,
                sockopts: SockOpts | None = None) -> Connection:
        """Active open from this host's address of ``remote_ip``'s version; the SYN goes
        out at once."""
        now = self.call_begin()
        try:
            return self.engine.connect(now, self.source_for(remote_ip), remote_ip,
                                       remote_port, local_port, sockopts)
        finally:
            self.kick(now)

    def listen(self, local_ip: bytes, port: int, backlog: int,
               sockopts: SockOpts | None = None) -> Listener:
        """A listening socket on ``local_ip:port`` (port 0: an ephemeral one)."""
        return self.engine.listen(trio.current_time(), local_ip, port, backlog, sockopts)

    def kick(self, now: float) -> None:
        """Flush, at ``now``: notify what waits on the objects the engine named, transmit
        the engine's output, re-arm the timer. A callback app notified here calls the
        engine through :meth:`call`, whose flush is this one: everything its calls produce
        goes out in the same batch, and what they wake is notified in the next round."""
        if self._flushing:
            return
        self._flushing = True
        self._flush_now = now
        try:
            engine, settled = self.engine, False
            for _ in range(NOTIFY_ROUNDS):
                woken = engine.take_wakeups()
                if not woken:
                    settled = True
                    break
                for obj in woken:
                    waiter = obj.waiter
                    if waiter is not None and waiter.notify():
                        self._passes_owed = WAKE_PASSES
            frames = self.ip.take_frames()
            if frames:
                try:
                    self.link.send_batch(frames)
                except Exception:  # as on_frame: counted, logged, dropped, never fatal
                    self.counters.inc(Mib.UstcpInternalErrors)
                    log.exception("internal_error", where="send_batch", frames=len(frames))
            self._renotify = not settled
            scope = self._timer_scope
            if scope is not None:
                deadline = self._timer_deadline()
                if deadline < scope.deadline:
                    scope.deadline = deadline
        finally:
            self._flushing = False

    def reset_all(self) -> int:
        """Reset every connection that is not closed yet (what remains when the daemon
        stops): a RST on the wire for each, so peers learn at once, as when a host's
        sockets are closed with SO_LINGER {on, 0}. TIME_WAIT entries go silently. Returns
        how many were reset."""
        now, engine = trio.current_time(), self.engine
        live = [c for c in engine.connections.values()
                if c.state not in (State.CLOSE, State.TIME_WAIT)]
        for conn in live:  # Stack.call's work, with one flush for them all
            conn.abort(now)
            engine.release(conn)
        self.kick(now)
        return len(live)

    def source_for(self, remote_ip: bytes) -> bytes:
        """The local address to connect from: the one of ``remote_ip``'s version."""
        if len(remote_ip) == 16:
            if self.local_addr6 is None:
                raise OSError(errno.ENETUNREACH, "no IPv6 address on this stack")
            return self.local_addr6
        return self.local_addr

    def open_connections(self) -> int:
        """Connections not yet closed (TIME_WAIT aside)."""
        return sum(c.state not in (State.CLOSE, State.TIME_WAIT)
                   for c in self.engine.connections.values())

    async def _receive_loop(self) -> None:
        link, config = self.link, self.config
        unscheduled = False
        while True:
            if config.busy_poll and not self._busy_readers \
                    and await self._spin(config.busy_poll, None):
                continue
            batch = await link.receive_batch(unscheduled)
            now = trio.current_time()
            self._on_batch(batch, now)
            unscheduled = self._unscheduled(now)

    def _unscheduled(self, now: float) -> bool:
        """Whether the next receive may go without a schedule point (net_rx_action's time
        budget, netdev_budget_usecs): not once :data:`SCHEDULER_SLICE` has passed since
        the last one, nor for :data:`WAKE_PASSES` receives after a flush that woke a task,
        nor while a task busy-reads or the timer loop is running its timers. The link
        then also checks that the scheduler has nothing to run and how long until its
        next deadline (``TunLink.receive_batch``)."""
        if self._passes_owed or self._busy_readers or self._timer_scope is None \
                or now >= self._slice_end:
            self._passes_owed = max(0, self._passes_owed - 1)
            self._slice_end = now + SCHEDULER_SLICE
            return False
        return True

    def _on_batch(self, batch: list[ReceivedFrame], now: float) -> None:
        """Every frame of a batch through the IP layer, then one flush."""
        ip, counters = self.ip, self.counters
        for frame in batch:
            try:
                ip.on_frame(now, frame.data, frame.csum_verified)
            except Exception:
                counters.inc(Mib.UstcpInternalErrors)
                log.exception("internal_error", where="on_frame", length=len(frame.data))
        self.kick(now)

    async def busy_read(self, conn: Connection) -> bool:
        """net.core.busy_read (Linux sk_busy_loop): poll the link for up to busy_read µs
        in the calling task, running what comes through the stack, until ``conn`` is
        readable. Returns whether it is. Meanwhile the receive loop leaves the link to the
        caller (it sleeps in epoll instead of spinning beside it)."""
        self._busy_readers += 1
        try:
            return await self._spin(self.config.busy_read, conn)
        finally:
            self._busy_readers -= 1

    async def _spin(self, budget_us: int, reader: Connection | None) -> bool:
        """Busy polling: poll the link for up to ``budget_us`` µs and run what comes
        through the stack; for the receive loop (``reader`` None) until a batch came, for
        a reader until its connection is readable. Returns whether that happened.

        The first two polls each follow a schedule point, so every task the last batch
        woke has run before the spin, whichever order trio runs its batch in. After that
        the link is polled in slices of :data:`BUSY_POLL_SLICE` without the scheduler (a
        pass costs several µs, a poll a fraction of one), with a schedule point between
        slices so that no other task waits longer than one slice. The receive loop stops
        at a slice's end once a reader spins.
        """
        poll, clock = self.link.poll_batch, time.perf_counter
        spin_until = clock() + budget_us / 1e6
        passes = 0
        while True:
            await trio.lowlevel.checkpoint()
            if reader is not None and reader.readable:
                return True  # another task's batch brought it meanwhile
            passes += 1
            slice_end = min(spin_until, clock() + BUSY_POLL_SLICE) if passes > 2 else 0.0
            while True:
                frames = poll()
                if frames:
                    # LINUX_MIB_BUSYPOLLRXPACKETS (napi_busy_loop): what spinning brought
                    self.counters.inc(Mib.TcpExtBusyPollRxPackets, len(frames))
                    self._on_batch(frames, trio.current_time())
                    if reader is None or reader.readable:
                        return True
                now = clock()
                if now >= slice_end:
                    break
            if now >= spin_until or (reader is None and self._busy_readers):
                return False

    def _timer_deadline(self) -> float:
        """When the timer loop runs next: at once if the last flush left objects to
        notify (they get their turn from it, not at the next frame), else at the next
        deadline."""
        return -math.inf if self._renotify else self._next_deadline()

    def _next_deadline(self) -> float:
        """The engine's next timer or the IP layer's (reassembly), whichever is first."""
        deadline, reasm = self.engine.next_deadline(), self.ip.next_deadline()
        if reasm is not None and (deadline is None or reasm < deadline):
            deadline = reasm
        return math.inf if deadline is None else deadline

    async def _timer_loop(self) -> None:
        engine = self.engine
        while True:
            with trio.CancelScope(deadline=self._timer_deadline()) as scope:
                self._timer_scope = scope
                try:
                    await trio.sleep_forever()
                finally:
                    self._timer_scope = None
            now = trio.current_time()
            engine.on_timers(now)
            self.ip.on_timers(now)
            self.kick(now)
