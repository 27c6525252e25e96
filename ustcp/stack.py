"""The trio driver: one host's link, IP layer and TCP engine, and the tasks that run them.

:meth:`Stack.run` runs two tasks until cancelled:

- the receive loop takes a batch of frames from the link, hands each to the IP layer, then
  flushes once for the whole batch;
- the timer loop sleeps until the engine's next deadline and runs its timers.

A flush (:meth:`Stack.kick`) sends what the engine produced in one ``send_batch``, wakes the
user tasks parked on the objects the engine names, and pulls the timer loop's wake-up
earlier if the engine now has an earlier deadline. The API calls it after every user call.
Waking works through the ``waiter`` attribute of each Connection and Listener, which the
engine never touches: the API stores a :class:`Waiters` there.

A frame the layers below fail on in an unexpected way is logged, counted as
``UstcpInternalErrors`` and dropped; it never ends the receive loop.
"""

from __future__ import annotations

import math

import structlog
import trio

from .config import StackConfig
from .ip import IpLayer
from .link.base import Link
from .obs.counters import Counters
from .tcp.engine import TcpEngine

log = structlog.get_logger("ustcp.stack")


class Waiters:
    """The tasks parked on one Connection or Listener: trio's ``ParkingLot`` cut down to
    the two operations the API and the stack use. ParkingLot's FIFO order, ``repark``
    and statistics go unused here; without them a wake-up costs 0.85 µs less, and the
    ``unpark_all`` with nobody parked that follows most engine events 0.05 µs, not 0.6."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: dict[trio.lowlevel.Task, None] = {}

    @trio.lowlevel.enable_ki_protection
    async def park(self) -> None:
        """Sleep until :meth:`unpark_all`; cancellable while parked (a checkpoint)."""
        task = trio.lowlevel.current_task()
        self._tasks[task] = None

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            del self._tasks[task]
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    @trio.lowlevel.enable_ki_protection
    def unpark_all(self) -> None:
        if self._tasks:
            tasks, self._tasks = self._tasks, {}
            for task in tasks:
                trio.lowlevel.reschedule(task)

IPV4_TCP_HEADERS = 40  # MSS = MTU minus the IPv4 and TCP headers without options


class Stack:
    """One host with the address ``local_addr`` (4 packed bytes) on ``link``."""

    def __init__(self, link: Link, config: StackConfig, counters: Counters, local_addr: bytes,
                 *, seed: int | None = None) -> None:
        self.link = link
        self.config = config
        self.counters = counters
        self.local_addr = local_addr
        self.engine = TcpEngine(config, counters, seed=seed,
                                mss_for_mtu=link.mtu - IPV4_TCP_HEADERS,
                                gso_max_size=link.gso_max_size)
        self.ip = IpLayer(self.engine, counters, {local_addr}, config,
                          tx_csum_offload=link.tx_csum_offload)
        self._timer_scope: trio.CancelScope | None = None

    async def run(self) -> None:
        """Drive the link and the timers until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive_loop)
            nursery.start_soon(self._timer_loop)

    def kick(self) -> None:
        """Flush: transmit the engine's output, wake parked tasks, re-arm the timer."""
        frames = self.ip.take_frames()
        if frames:
            self.link.send_batch(frames)
        for obj in self.engine.take_wakeups():
            waiters = obj.waiter
            if waiters is not None:
                waiters.unpark_all()
        scope = self._timer_scope
        if scope is not None:
            deadline = self.engine.next_deadline()
            if deadline is not None and deadline < scope.deadline:
                scope.deadline = deadline

    async def _receive_loop(self) -> None:
        link, ip, counters = self.link, self.ip, self.counters
        while True:
            batch = await link.receive_batch()
            now = trio.current_time()
            for frame in batch:
                try:
                    ip.on_frame(now, frame.data, frame.csum_verified)
                except Exception:
                    counters.inc("UstcpInternalErrors")
                    log.exception("internal_error", where="on_frame", length=len(frame.data))
            self.kick()

    async def _timer_loop(self) -> None:
        engine = self.engine
        while True:
            deadline = engine.next_deadline()
            with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                self._timer_scope = scope
                try:
                    await trio.sleep_forever()
                finally:
                    self._timer_scope = None
            engine.on_timers(trio.current_time())
            self.kick()
