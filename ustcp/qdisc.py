"""A model of Linux's fq qdisc (net/sched/sch_fq.c) as it treats TCP: per-flow queues that
hold each packet until its earliest departure time.

Since Linux 4.20 TCP stamps every packet with the time it may leave (``skb->tstamp``,
tcp/pacing.py) and fq honours it: ``fq_enqueue`` files the packet in its socket's flow
(``fq_classify``, which also marks the socket SK_PACING_FQ so that TCP starts pacing),
ordered by that time; ``fq_dequeue`` gives out a flow's head once its time has come
(``time_next_packet``: a flow whose head is not due is throttled until then). A packet
already due, of a flow with nothing queued, leaves at once (``fq_fastpath_check``), and so
do packets of no socket (a SYN-ACK of a listener, a RST, a TIME_WAIT ACK: fq files them
under a hash, unpaced).

What the model leaves out, and why it does not matter for TCP: the flows' round-robin
``credit`` and ``quantum`` (``initial_quantum``, ``flow_refill_delay``) and the rate fq
computes itself from ``sk_pacing_rate`` apply to packets without a departure time, which
TCP never sends; with an EDT stamp fq only enforces an explicit ``maxrate``, which the
model does not have (a script asking for it is skipped). Bounds are Linux's defaults: a
packet stamped more than ``horizon`` (10 s) ahead is dropped (``horizon_drop``), a flow
holds at most ``flow_limit`` (100) packets and the qdisc ``limit`` (10000); each drop is
counted in :attr:`Fq.stats` under ``tc -s qdisc``'s names.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

FQ_HORIZON = 10.0  # q->horizon, seconds
FQ_FLOW_PLIMIT = 100  # q->flow_plimit, packets per flow
FQ_LIMIT = 10000  # sch->limit, packets in all


class _Flow(Generic[T]):
    __slots__ = ("queue", "time_next_packet")

    def __init__(self) -> None:
        self.queue: list[tuple[float, int, T]] = []  # (time_to_send, arrival, packet)
        self.time_next_packet = 0.0  # set when the flow is throttled


class Fq(Generic[T]):
    """Packets ``T`` by flow; a flow is any hashable key (the engine uses a connection's
    4-tuple)."""

    __slots__ = ("_flows", "_seq", "qlen", "stats")

    def __init__(self) -> None:
        self._flows: dict[Hashable, _Flow[T]] = {}
        self._seq = 0
        self.qlen = 0
        self.stats = {"throttled": 0, "flows_plimit": 0, "horizon_drops": 0, "drops": 0}

    def enqueue(self, now: float, flow: Hashable, packet: T, tstamp: float) -> bool | None:
        """fq_enqueue: None when ``packet`` may leave at once, True when it is held, False
        when it is dropped (beyond the horizon, or a queue full)."""
        time_to_send = tstamp or now
        f = self._flows.get(flow)
        if time_to_send <= now and (f is None or not f.queue):
            return None  # fq_fastpath_check: due, and nothing of the flow ahead of it
        if time_to_send > now + FQ_HORIZON:
            self.stats["horizon_drops"] += 1
            return False
        if self.qlen >= FQ_LIMIT:
            self.stats["drops"] += 1
            return False
        if f is None:
            f = self._flows[flow] = _Flow()
        if len(f.queue) >= FQ_FLOW_PLIMIT:
            self.stats["flows_plimit"] += 1
            return False
        self._seq += 1
        bisect.insort(f.queue, (time_to_send, self._seq, packet),
                      key=lambda entry: (entry[0], entry[1]))  # flow_queue_add
        self.qlen += 1
        return True

    def next_time(self) -> float | None:
        """When the earliest held packet is due (q->time_next_delayed_flow)."""
        due = [max(f.queue[0][0], f.time_next_packet) for f in self._flows.values()
               if f.queue]
        return min(due) if due else None

    def dequeue(self, now: float) -> list[tuple[Hashable, T]]:
        """fq_dequeue until nothing is due: every flow's packets whose time has come, in
        order; a flow whose head is not due is throttled until it is."""
        out: list[tuple[Hashable, T]] = []
        for key, f in list(self._flows.items()):
            queue = f.queue
            while queue:
                when = max(queue[0][0], f.time_next_packet)
                if when > now:
                    if f.time_next_packet != when:
                        f.time_next_packet = when
                        self.stats["throttled"] += 1
                    break
                out.append((key, queue.pop(0)[2]))
                self.qlen -= 1
            if not queue:
                del self._flows[key]  # detached (fq_gc frees it later; nothing to keep)
        return out
