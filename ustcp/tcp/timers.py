"""Timers: the modes of a connection's transmit timer, and the one heap every timer site
of the engine keeps its deadlines in.

:class:`XmitTimer`: the modes of the transmit timer (include/net/inet_connection_sock.h
ICSK_TIME_*). One timer, armed by ``Sender.reset_xmit_timer`` (inet_csk_reset_xmit_timer);
the mode says what its expiry does. A plain class of ints with Linux's values rather than an
IntEnum: the mode is set on every ACK that restarts the timer, and an enum member read costs
about twice a class attribute on CPython 3.11.

:class:`TimerHeap`: deadlines in a binary heap with lazy deletion, used by the engine (its
connections, listeners and the TIME_WAIT table), the TIME_WAIT table (its entries) and each
listener (its SYN queue). Moving a deadline costs nothing but a push: the old entry stays
and is dropped when it reaches the top and its owner says it is no longer live (Linux's
timer wheel can delete in place; a heap cannot).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import Final, Generic, TypeVar

T = TypeVar("T")


class XmitTimer:
    __slots__ = ()

    RTO: Final = 1  # ICSK_TIME_RETRANS: retransmission timeout (tcp_retransmit_timer)
    PROBE0: Final = 3  # ICSK_TIME_PROBE0: zero-window probe (tcp_probe_timer)
    LOSS_PROBE: Final = 5  # ICSK_TIME_LOSS_PROBE: tail loss probe (tcp_send_loss_probe)
    REO_TIMEOUT: Final = 6  # ICSK_TIME_REO_TIMEOUT: RACK reorder timer (tcp_rack_reo_timeout)


class TimerHeap(Generic[T]):
    """Items by deadline. ``live(item, when)`` tells whether an entry still stands (its
    owner's current deadline for ``item`` is ``when``); stale entries are skipped and
    dropped."""

    __slots__ = ("_heap", "_tick")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._tick = 0  # ties fire in the order they were pushed

    def __len__(self) -> int:
        return len(self._heap)

    def clear(self) -> None:
        self._heap.clear()

    def push(self, when: float, item: T) -> None:
        self._tick += 1
        heapq.heappush(self._heap, (when, self._tick, item))

    def compact(self, live: Callable[[T, float], bool]) -> None:
        """Drop every stale entry at once (and so the objects they hold): the lazy
        deletion above drops one only when it reaches the top, which for a closed
        connection's far-off RTO can be minutes after it was freed everywhere else."""
        self._heap = [entry for entry in self._heap if live(entry[2], entry[0])]
        heapq.heapify(self._heap)

    def next_deadline(self, live: Callable[[T, float], bool]) -> float | None:
        """The earliest live deadline, dropping the stale entries above it."""
        heap = self._heap
        while heap:
            when, _, item = heap[0]
            if live(item, when):
                return when
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float, live: Callable[[T, float], bool]) -> Iterator[T]:
        """Pop the live items due by ``now``, earliest first. The caller may push while it
        iterates: an entry pushed for ``now`` or earlier comes out in the same walk."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, item = heapq.heappop(heap)
            if live(item, when):
                yield item
