"""A minimal virtual-time runner: two ustcp engines over a simulated path.

Used by ``tools/plot_windows.py`` to record how the windows move during a real transfer. The
engines are the stack's own :class:`ustcp.tcp.engine.TcpEngine`; only the path between them
is simulated:

- the data direction (A -> B) goes through a *bottleneck*: a link of ``rate_bps`` with a
  tail-drop queue of ``queue_pkts`` packets, then ``delay`` seconds of propagation;
- the ACK direction (B -> A) only has the propagation delay;
- ``drops`` lose chosen data segments (for each time listed, the first segment of new data
  A sends at or after it; retransmissions are spared), ``blackouts`` lose everything A
  sends during an interval (an outage long enough to force a retransmission timeout),
  ``loss`` loses segments at random with a seeded generator.

Time jumps from event to event (a segment arrives, an engine timer is due, the receiving
application wakes up), so a 30-second transfer takes a few seconds of real time and is
exactly reproducible. Nothing here reads a clock.
"""

from __future__ import annotations

import heapq
import itertools
import random
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ustcp.config import StackConfig
from ustcp.mib import Counters
from ustcp.tcp.connection import Connection
from ustcp.tcp.engine import TcpEngine
from ustcp.tcp.seq import seq_diff
from ustcp.wire.tcp import TcpSegment

A_IP = socket.inet_aton("10.0.0.1")  # the sender
B_IP = socket.inet_aton("10.0.0.2")  # the receiver
PORT = 5001
HEADER_BYTES = 40  # IPv4 + TCP without options, for the bottleneck's serialisation time


@dataclass
class PathConfig:
    rate_bps: float = 20e6  # bottleneck rate, data direction
    delay: float = 0.020  # one-way propagation delay, each direction
    queue_pkts: int = 60  # bottleneck buffer (tail drop); 0 = unbounded
    drops: list[float] = field(default_factory=list)  # times: lose the next new data segment
    blackouts: list[tuple[float, float]] = field(default_factory=list)  # A->B outages [t0, t1)
    loss: float = 0.0  # random loss probability, data direction
    seed: int = 1


@dataclass
class ReaderConfig:
    """The receiving application. ``phases`` lists ``(from_time, rate)``: from that time on
    it reads ``rate`` bytes per second (woken every ``tick`` seconds), ``None`` = everything
    as soon as it arrives, ``0`` = nothing at all."""

    phases: list[tuple[float, float | None]] = field(default_factory=lambda: [(0.0, None)])
    tick: float = 0.010

    def rate_at(self, t: float) -> float | None:
        rate: float | None = None
        for start, r in self.phases:
            if t >= start:
                rate = r
        return rate

    @property
    def paced(self) -> bool:
        return any(r is not None for _, r in self.phases)


@dataclass(slots=True)
class Sample:
    """The sender's view after one ACK arrived (or after one event, for the receiver)."""

    t: float
    cwnd: int  # packets
    ssthresh: int  # packets (TCP_INFINITE_SSTHRESH before the first loss)
    in_flight: int  # packets (tcp_packets_in_flight)
    snd_una: int  # bytes since the sender's ISN + 1
    snd_nxt: int
    snd_wnd: int  # bytes: the window the peer last offered (SND.WND)
    rcv_wnd: int  # bytes: the window in the ACK that just arrived (scaled)
    ca_state: int
    srtt_ms: float
    rto_s: float
    rcv_queue: int  # bytes the receiving application has not read yet


@dataclass(slots=True)
class Event:
    t: float
    kind: str  # "probe" (zero-window probe), "rto", "recovery", "drop", "winupdate"
    seq: int = 0


@dataclass
class Result:
    samples: list[Sample]
    events: list[Event]
    sender: Connection
    receiver: Connection
    counters_a: Counters
    counters_b: Counters
    bytes_delivered: int
    duration: float
    mss: int


class WindowSim:
    def __init__(self, path: PathConfig, reader: ReaderConfig, *, cc: str = "cubic",
                 config_a: StackConfig | None = None, config_b: StackConfig | None = None,
                 seed: int = 1) -> None:
        self.path = path
        self.reader = reader
        self.cfg_a = config_a or StackConfig()
        self.cfg_b = config_b or StackConfig()
        self.cfg_a.tcp_congestion_control = cc
        self.a = TcpEngine(self.cfg_a, Counters(), seed=seed)
        self.b = TcpEngine(self.cfg_b, Counters(), seed=seed + 1000)
        self.rng = random.Random(path.seed)
        self.now = 0.0
        self._tick = itertools.count()
        self._inflight: list[tuple[float, int, TcpEngine, bytes, bytes, TcpSegment]] = []
        self._queue: deque[float] = deque()  # departure times of packets in the bottleneck
        self._link_free = 0.0
        self._drops = sorted(path.drops)
        self.samples: list[Sample] = []
        self.events: list[Event] = []
        self.sender: Connection | None = None
        self.receiver: Connection | None = None
        self._read_credit = 0.0
        self._next_read = 0.0
        self.delivered = 0
        self._written = 0
        self._highest_sent = 0

    # ------------------------------------------------------------------ the path

    def _lose(self, seg: TcpSegment) -> bool:
        """Scripted and random losses, data direction only."""
        if any(t0 <= self.now < t1 for t0, t1 in self.path.blackouts):
            return True
        if self.sender is None or not seg.payload:
            return False
        start = seq_diff(seg.seq, self.sender.snd.iss + 1)
        end = start + len(seg.payload)
        if self._drops and self.now >= self._drops[0] and start >= self._highest_sent:
            self._drops.pop(0)
            self._highest_sent = end
            return True
        self._highest_sent = max(self._highest_sent, end)
        return bool(self.path.loss) and self.rng.random() < self.path.loss

    def _send_a_to_b(self, src: bytes, dst: bytes, seg: TcpSegment) -> None:
        if self._lose(seg):
            self.events.append(Event(self.now, "drop", seg.seq))
            return
        q = self._queue
        while q and q[0] <= self.now:
            q.popleft()
        if self.path.queue_pkts and len(q) >= self.path.queue_pkts:
            self.events.append(Event(self.now, "drop", seg.seq))  # tail drop
            return
        size = len(seg.payload) + HEADER_BYTES
        depart = max(self.now, self._link_free) + size * 8 / self.path.rate_bps
        self._link_free = depart
        q.append(depart)
        self._push(depart + self.path.delay, self.b, src, dst, seg)

    def _push(self, when: float, engine: TcpEngine, src: bytes, dst: bytes,
              seg: TcpSegment) -> None:
        heapq.heappush(self._inflight, (when, next(self._tick), engine, src, dst, seg))

    def _flush(self) -> None:
        for src, dst, seg in self.a.take_output():
            if self.sender is not None and not seg.payload and \
                    seg.seq == (self.sender.snd.snd_una - 1) & 0xFFFFFFFF:
                self.events.append(Event(self.now, "probe", seg.seq))
            self._send_a_to_b(src, dst, seg)
        for src, dst, seg in self.b.take_output():
            self._push(self.now + self.path.delay, self.a, src, dst, seg)
        self.a.take_wakeups()
        self.b.take_wakeups()

    # ------------------------------------------------------------------ applications

    def _read(self) -> None:
        conn = self.receiver
        if conn is None:
            return
        rate = self.reader.rate_at(self.now)
        if rate == 0:
            self._read_credit = 0.0
            return
        if rate is None:
            budget = 1 << 30
        else:
            budget = int(self._read_credit)
            if budget <= 0:
                return
        while budget > 0:
            try:
                data = conn.recv(self.now, min(budget, 1 << 20))
            except BlockingIOError:
                break
            if not data:
                break
            budget -= len(data)
            self.delivered += len(data)
            if rate is not None:
                self._read_credit -= len(data)

    def _write(self, total: int, chunk: bytes) -> int:
        conn = self.sender
        assert conn is not None
        written = 0
        while self._written < total:
            n = conn.send(self.now, memoryview(chunk)[:min(len(chunk), total - self._written)])
            if not n:
                break
            self._written += n
            written += n
        return written

    # ------------------------------------------------------------------ recording

    def _sample(self, seg: TcpSegment) -> None:
        assert self.sender is not None
        c = self.sender.snd
        ccs = c.ccs
        rcv_q = len(self.receiver.rcv.rcv_buf) if self.receiver is not None else 0
        self.samples.append(Sample(
            t=self.now, cwnd=ccs.snd_cwnd, ssthresh=ccs.snd_ssthresh,
            in_flight=c.rtx.in_flight(),  # the engine's own "pipe"
            snd_una=seq_diff(c.snd_una, c.iss + 1), snd_nxt=seq_diff(c.snd_nxt, c.iss + 1),
            snd_wnd=c.snd_wnd, rcv_wnd=seg.window << c.snd_wscale, ca_state=ccs.ca_state,
            srtt_ms=c.rtt.srtt_us / 1000, rto_s=c.rtt.backed_off(c.backoff),
            rcv_queue=rcv_q))

    # ------------------------------------------------------------------ the run

    def run(self, total_bytes: int, *, until: float = 60.0) -> Result:
        listener = self.b.listen(0.0, B_IP, PORT, 128)
        self.sender = self.a.connect(0.0, A_IP, B_IP, PORT)
        self._written = 0
        chunk = bytes(range(256)) * 1024  # 256 KB of pattern
        tcp_timeouts = 0
        recoveries = 0
        self._flush()
        reader = self.reader
        self._next_read = reader.tick
        while self.now < until:
            if self.receiver is not None and self.delivered >= total_bytes:
                break
            cands = [t for t in (self.a.next_deadline(), self.b.next_deadline())
                     if t is not None]
            if self._inflight:
                cands.append(self._inflight[0][0])
            if reader.paced:
                cands.append(self._next_read)
            if not cands:
                break
            self.now = max(self.now, min(cands))
            while self._inflight and self._inflight[0][0] <= self.now:
                _, _, engine, src, dst, seg = heapq.heappop(self._inflight)
                engine.on_segment(self.now, src, dst, seg)
                if engine is self.a and self.sender is not None and \
                        self.sender.state.name != "SYN_SENT":
                    self._sample(seg)
            self.a.on_timers(self.now)
            self.b.on_timers(self.now)
            if self.receiver is None:
                self.receiver = listener.accept()
            if self.sender.state.name in ("ESTABLISHED", "CLOSE_WAIT"):
                self._write(total_bytes, chunk)
            if reader.paced and self.now >= self._next_read:
                rate = reader.rate_at(self.now) or 0.0
                self._read_credit = min(self._read_credit + rate * reader.tick,
                                        rate * reader.tick * 4)
                self._next_read = self.now + reader.tick
            self._read()
            # Events worth marking on the plots, from the counters.
            ca = self.a.counters
            if ca["TcpExtTCPTimeouts"] > tcp_timeouts:
                tcp_timeouts = ca["TcpExtTCPTimeouts"]
                self.events.append(Event(self.now, "rto"))
            rec = ca["TcpExtTCPSackRecovery"] + ca["TcpExtTCPRenoRecovery"]
            if rec > recoveries:
                recoveries = rec
                self.events.append(Event(self.now, "recovery"))
            self._flush()
        assert self.receiver is not None
        return Result(self.samples, self.events, self.sender, self.receiver,
                      self.a.counters, self.b.counters, self.delivered, self.now,
                      self.sender.snd.mss)


def run_transfer(path: PathConfig, reader: ReaderConfig, total_bytes: int, *,
                 cc: str = "cubic", seed: int = 1, until: float = 60.0,
                 tweak_a: Callable[[StackConfig], None] | None = None,
                 tweak_b: Callable[[StackConfig], None] | None = None) -> Result:
    """Run one transfer of ``total_bytes`` from A to B and return what was recorded."""
    cfg_a, cfg_b = StackConfig(), StackConfig()
    if tweak_a:
        tweak_a(cfg_a)
    if tweak_b:
        tweak_b(cfg_b)
    sim = WindowSim(path, reader, cc=cc, config_a=cfg_a, config_b=cfg_b, seed=seed)
    return sim.run(total_bytes, until=until)
