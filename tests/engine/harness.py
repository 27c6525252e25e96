"""Two TCP engines wired back to back on virtual time, for engine tests.

Segments travel as TcpSegment objects (no wire codecs) with a fixed one-way delay; a filter
may drop, duplicate or record them. Time only moves through :meth:`Net.run`, which jumps
from event to event (segment arrivals, engine deadlines), so a 60-second TIME_WAIT takes
microseconds of real time.
"""

from __future__ import annotations

import heapq
import itertools
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from ustcp.config import StackConfig
from ustcp.mib import Counters
from ustcp.tcp.engine import TcpEngine
from ustcp.wire.tcp import TcpSegment

A_IP = socket.inet_aton("10.0.0.1")
B_IP = socket.inet_aton("10.0.0.2")
A_IP6 = socket.inet_pton(socket.AF_INET6, "fd00::1")
B_IP6 = socket.inet_pton(socket.AF_INET6, "fd00::2")


@dataclass
class Sent:
    t: float
    src: bytes
    dst: bytes
    seg: TcpSegment


# A filter sees each segment and returns how many copies to deliver (0 = drop).
Filter = Callable[[Sent], int]


@dataclass
class Net:
    config_a: StackConfig = field(default_factory=StackConfig)
    config_b: StackConfig = field(default_factory=StackConfig)
    delay: float = 0.005
    now: float = 0.0
    filter: Filter | None = None
    extra_delay: Callable[[Sent], float] | None = None  # per segment: reordering, jitter
    log: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.a = TcpEngine(self.config_a, Counters(), seed=1)
        self.b = TcpEngine(self.config_b, Counters(), seed=2)
        self._inflight: list[tuple[float, int, TcpEngine, Sent]] = []
        self._tick = itertools.count()

    def engine_for(self, ip: bytes) -> TcpEngine:
        return self.a if ip in (A_IP, A_IP6) else self.b

    def flush(self) -> None:
        for engine in (self.a, self.b):
            for src, dst, seg in engine.take_output():
                sent = Sent(self.now, src, dst, seg)
                self.log.append(sent)
                copies = self.filter(sent) if self.filter else 1
                for _ in range(copies):
                    arrival = self.now + self.delay + (
                        self.extra_delay(sent) if self.extra_delay else 0.0)
                    heapq.heappush(self._inflight, (arrival, next(self._tick),
                                                    self.engine_for(dst), sent))
            engine.take_wakeups()

    def release(self) -> None:
        """The harness's door for the user calls a test makes directly on connections and
        listeners (as Stack.call is the trio driver's): before time moves, each engine
        re-reads the timers of every socket it has (TcpEngine.release)."""
        for engine in (self.a, self.b):
            for conn in list(engine.connections.values()):
                engine.release(conn)
            for listener in list(engine.listeners.values()):
                engine.release(listener)

    def run(self, until: float, *, stop: Callable[[], bool] | None = None) -> None:
        """Advance virtual time to ``until`` (or until ``stop()`` holds)."""
        self.release()
        self.flush()
        while True:
            if stop is not None and stop():
                return
            candidates = [t for t in (self.a.next_deadline(), self.b.next_deadline())
                          if t is not None]
            if self._inflight:
                candidates.append(self._inflight[0][0])
            if not candidates or min(candidates) > until:
                self.now = until
                return
            self.now = max(self.now, min(candidates))
            while self._inflight and self._inflight[0][0] <= self.now:
                _, _, engine, sent = heapq.heappop(self._inflight)
                engine.on_segment(self.now, sent.src, sent.dst, sent.seg)
            for engine in (self.a, self.b):
                engine.on_timers(self.now)
            self.flush()

    def sent_by(self, ip: bytes) -> list[Sent]:
        return [s for s in self.log if s.src == ip]
