"""A Link wrapper that passes frames through an :class:`~ustcp.link.impair.Impairer` each way.

Frames the impairer delays wait in a bounded queue per direction (``spec.limit`` frames;
beyond it they are dropped and counted as ``UstcpImpairQueueDrops``). No extra task is
needed: ``receive_batch`` — which the stack's receive loop always has pending — sleeps until
the next frame of either queue is due, and releases delayed outgoing frames as well as
incoming ones. A frame corrupted on the way in is handed up with ``csum_verified=False`` so
the stack verifies, and rejects, it even when the kernel vouched for the original.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from itertools import count
from typing import Generic, TypeVar

import trio

from ..mib import Counters, Mib
from .base import Link, OutFrame, ReceivedFrame
from .impair import Impairer, ImpairmentSpec, frame_pcount, too_big, too_big_reply

T = TypeVar("T")
ICMP_QUEUE = 256  # the path MTU's ICMP errors waiting for the stack when nothing else delays


class _DelayQueue(Generic[T]):
    """Items ordered by release time, first in first out among equal times."""

    def __init__(self, limit: int, counters: Counters) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._seq = count()
        self._limit = limit
        self._counters = counters

    def push(self, at: float, item: T) -> None:
        if len(self._heap) >= self._limit:
            self._counters.inc(Mib.UstcpImpairQueueDrops)
            return
        heapq.heappush(self._heap, (at, next(self._seq), item))

    def pop_due(self, now: float) -> list[T]:
        heap, due = self._heap, []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[2])
        return due

    @property
    def next_at(self) -> float:
        return self._heap[0][0] if self._heap else math.inf


class ImpairedLink:
    """``inner`` with ``spec_in`` applied to received frames and ``spec_out`` to sent ones
    (either may be None). Corruption of outgoing frames stays in the IPv4 header when the
    inner link completes TCP checksums itself (``tx_csum_offload``): the kernel would
    otherwise checksum the corrupted bytes and nobody could notice."""

    def __init__(self, inner: Link, spec_in: ImpairmentSpec | None,
                 spec_out: ImpairmentSpec | None, *, counters: Counters | None = None,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.inner = inner
        self.mtu = inner.mtu
        self.gso_max_size = inner.gso_max_size
        self.tx_csum_offload = inner.tx_csum_offload
        self.counters = counters if counters is not None else Counters()
        self._clock = clock
        self._in = self._impairer(spec_in, "in", False)
        self._out = self._impairer(spec_out, "out", inner.tx_csum_offload)
        self._pmtu = spec_out.pmtu if spec_out is not None else 0
        self._blackhole = spec_out is not None and spec_out.pmtu_blackhole
        self._in_queue: _DelayQueue[ReceivedFrame] = _DelayQueue(
            spec_in.limit if spec_in else ICMP_QUEUE, self.counters)
        self._out_queue: _DelayQueue[OutFrame] = _DelayQueue(
            spec_out.limit if spec_out else 1, self.counters)
        self._wait_scope: trio.CancelScope | None = None

    def _impairer(self, spec: ImpairmentSpec | None, stream: str,
                  header_only: bool) -> Impairer | None:
        if spec is None or spec.only_pmtu:
            return None
        return Impairer(spec, stream=stream, counters=self.counters,
                        header_only_corruption=header_only)

    def send_batch(self, frames: list[OutFrame]) -> None:
        if self._pmtu:
            frames = self._path_mtu(frames)
        if self._out is None:
            self.inner.send_batch(frames)
            return
        now = self._clock()
        for frame, gso_size in frames:
            for d in self._out.process(now, frame, frame_pcount(frame, gso_size)):
                self._out_queue.push(d.at, (bytes(d.data), gso_size))
        self._release_out(now)
        if self._wait_scope is not None:
            self._wait_scope.deadline = self._next_due()

    def _path_mtu(self, frames: list[OutFrame]) -> list[OutFrame]:
        """The frames a router with next-hop MTU ``pmtu`` forwards; the others are dropped,
        and (unless a black hole) answered towards the stack."""
        passed = []
        for frame, gso_size in frames:
            if not too_big(frame, gso_size, self._pmtu):
                passed.append((frame, gso_size))
                continue
            self.counters.inc(Mib.UstcpImpairPmtuDrops)
            if not self._blackhole:
                self._in_queue.push(self._clock(), ReceivedFrame(
                    too_big_reply(frame, self._pmtu), False))
                if self._wait_scope is not None:
                    self._wait_scope.deadline = self._next_due()
        return passed

    async def receive_batch(self, unscheduled: bool = False) -> list[ReceivedFrame]:
        # ``unscheduled`` is not passed on: frames held back come due on this link's own
        # clock, which the wait below watches through the scheduler.
        while True:
            now = self._clock()
            self._release_out(now)
            due = self._in_queue.pop_due(now)
            if due:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return due
            with trio.CancelScope(deadline=self._next_due()) as scope:
                self._wait_scope = scope
                try:
                    batch = await self.inner.receive_batch()
                finally:
                    self._wait_scope = None
            if scope.cancelled_caught:
                continue
            if self._in is None:
                return batch
            self._impair_in(self._in, batch, self._clock())

    def poll_batch(self) -> list[ReceivedFrame]:
        now = self._clock()
        self._release_out(now)
        batch = self.inner.poll_batch()
        if self._in is None:
            return self._in_queue.pop_due(now) + batch if self._pmtu else batch
        self._impair_in(self._in, batch, now)
        if self._wait_scope is not None:  # a receive_batch waits: wake it for these too
            self._wait_scope.deadline = self._next_due()
        return self._in_queue.pop_due(now)

    def _impair_in(self, impairer: Impairer, batch: list[ReceivedFrame], now: float) -> None:
        """Received frames through the impairer, onto the queue until they are due."""
        for frame in batch:
            for d in impairer.process(now, frame.data):
                verified = frame.csum_verified and not d.corrupted
                self._in_queue.push(d.at, ReceivedFrame(d.data, verified))

    def _release_out(self, now: float) -> None:
        due = self._out_queue.pop_due(now)
        if due:
            self.inner.send_batch(due)

    def _next_due(self) -> float:
        return min(self._in_queue.next_at, self._out_queue.next_at)

    async def aclose(self) -> None:
        await self.inner.aclose()
