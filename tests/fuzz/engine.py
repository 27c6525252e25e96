"""Fuzzing the TCP engine on virtual time (issue 13).

- :class:`PairMachine`: a hypothesis RuleBasedStateMachine driving two engines over the
  in-memory link of tests/engine/harness.py through arbitrary interleavings of send, recv,
  shutdown, close, time advances and loss, duplication and reordering of segments;
- :func:`run_hostile`: one engine's live connection against arbitrary segments (any flags,
  sequence and acknowledgment numbers near and far from the window, absurd options).

Both check :func:`check_connection` after every step: sequence variables consistent, every
queue within its bound, the out-of-order queue well formed; the pair also checks that what
each side reads is a prefix of what the other wrote (in order, exactly once, intact) and,
when nobody closed or reset, that everything arrives once the link heals.
"""

from __future__ import annotations

import contextlib
import random
import socket
from operator import attrgetter

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.engine.harness import A_IP, B_IP, Net, Sent
from tests.engine.util import open_pair
from ustcp.config import StackConfig
from ustcp.tcp.connection import Connection
from ustcp.tcp.engine import TcpEngine
from ustcp.tcp.seq import seq_add, seq_diff
from ustcp.tcp.states import State
from ustcp.wire.tcp import TcpOptions, TcpSegment

MAX_WINDOW = 65535 << 14


def check_connection(conn: Connection) -> None:
    """Invariants of one connection, whatever happened to it."""
    if conn.state in (State.SYN_SENT, State.CLOSE):
        return
    in_flight = seq_diff(conn.snd.snd_nxt, conn.snd.snd_una)
    assert 0 <= in_flight <= len(conn.snd.snd_buf) + 2, ("SND.UNA <= SND.NXT", in_flight)
    # write_seq is not moved by the FIN: once the FIN is acknowledged it is SND.UNA - 1.
    assert -1 <= seq_diff(conn.snd.write_seq, conn.snd.snd_una) <= len(conn.snd.snd_buf) + 1
    assert len(conn.snd.snd_buf) <= max(conn.config.tcp_wmem[2], conn.sockopts.sndbuf * 2)
    assert 0 <= conn.rcv.rcv_wnd <= MAX_WINDOW
    assert 0 <= conn.snd.snd_wnd <= MAX_WINDOW
    assert conn.rcv.rcvbuf <= max(conn.config.tcp_rmem[2], conn.sockopts.rcvbuf * 2, 2304)
    buf = conn.rcv.rcv_buf
    # In-order data passes the buffer by the window's rounding at most (Connection._rcv_room);
    # out-of-order data never passes the buffer.
    assert len(buf) <= conn.rcv.rcvbuf + max(1 << conn.rcv.rcv_wscale, conn.rcv.rcvbuf >> 4)
    assert buf.ofo_truesize <= conn.rcv.rcvbuf
    check_ofo(conn)


def check_ofo(conn: Connection) -> None:
    """The out-of-order queue is sorted, disjoint, not adjacent, beyond RCV.NXT, and its
    byte and piece counts are true; the SACK order holds at most four of its ranges."""
    buf, rcv_nxt = conn.rcv.rcv_buf, conn.rcv.rcv_nxt
    prev_end = 0
    nbytes = pieces = 0
    for blk in buf.ofo:
        start, end = seq_diff(blk.start, rcv_nxt), seq_diff(blk.end, rcv_nxt)
        assert prev_end < start < end, ("ofo order", prev_end, start, end)
        assert sum(len(c) for c in blk.chunks) == end - start
        prev_end = end
        nbytes += end - start
        pieces += len(blk.chunks)
    assert (nbytes, pieces) == (buf.ofo_bytes, buf.ofo_pieces)
    assert len(buf.recent) <= 4 and all(any(r is b for b in buf.ofo) for r in buf.recent)


def check_engine(engine: TcpEngine) -> None:
    for conn in list(engine.connections.values()):
        check_connection(conn)


# ---------------------------------------------------------------------------- the pair

SIDES = st.sampled_from(("a", "b"))


class PairMachine(RuleBasedStateMachine):
    """Two engines, one connection, an impaired link, and an application on each side."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Net()
        self.rng = random.Random(0)
        self.loss = self.dup = self.reorder = 0.0
        self.conns: dict[str, Connection] = {}
        self.sent = {"a": bytearray(), "b": bytearray()}
        self.received = {"a": bytearray(), "b": bytearray()}
        self.closed: set[str] = set()
        self.eof: set[str] = set()
        self.errors: list[OSError] = []

    @initialize(seed=st.integers(0, 2**32 - 1), sack=st.booleans(), ts=st.booleans(),
                small_buffers=st.booleans(), cc=st.sampled_from(("cubic", "reno")))
    def connect(self, seed: int, sack: bool, ts: bool, small_buffers: bool, cc: str) -> None:
        rmem = (4096, 8192, 8192) if small_buffers else (4096, 131072, 6291456)
        config = StackConfig(tcp_sack=int(sack), tcp_timestamps=int(ts), tcp_rmem=rmem,
                             tcp_congestion_control=cc)
        self.rng = random.Random(seed)
        self.net = Net(config_a=config, config_b=config, filter=self._filter,
                       extra_delay=self._delay)
        _, client, server = open_pair(self.net)
        self.conns = {"a": client, "b": server}

    def _filter(self, sent: Sent) -> int:
        if self.rng.random() < self.loss:
            return 0
        return 2 if self.rng.random() < self.dup else 1

    def _delay(self, sent: Sent) -> float:
        return self.rng.random() * 0.05 if self.rng.random() < self.reorder else 0.0

    def _call(self, side: str, fn: str, *args: object) -> object:
        try:
            return getattr(self.conns[side], fn)(self.net.now, *args)
        except BlockingIOError:
            return None
        except OSError as exc:  # the socket API's answers: EPIPE, ECONNRESET, ...
            self.errors.append(exc)
            return None

    @rule(side=SIDES, n=st.sampled_from((1, 7, 1000, 1448, 5000, 70000)))
    def send(self, side: str, n: int) -> None:
        data = self.rng.randbytes(n)
        taken = self._call(side, "send", data)
        if isinstance(taken, int):
            self.sent[side] += data[:taken]

    @rule(side=SIDES, n=st.sampled_from((1, 100, 1 << 20)))
    def recv(self, side: str, n: int) -> None:
        if side in self.closed:
            return
        data = self._call(side, "recv", n)
        if isinstance(data, bytes):
            if data:
                self.received[side] += data
            else:
                self.eof.add(side)

    @rule(side=SIDES)
    def shutdown(self, side: str) -> None:
        self._call(side, "shutdown", socket.SHUT_WR)

    @rule(side=SIDES)
    def close(self, side: str) -> None:
        self.closed.add(side)
        self._call(side, "close")

    @rule(dt=st.sampled_from((0.001, 0.01, 0.2, 1.0, 5.0, 30.0)))
    def advance(self, dt: float) -> None:
        self.net.run(self.net.now + dt)

    @rule(loss=st.sampled_from((0.0, 0.01, 0.1, 0.5, 1.0)),
          dup=st.sampled_from((0.0, 0.1, 0.5)), reorder=st.sampled_from((0.0, 0.2, 0.9)))
    def impair(self, loss: float, dup: float, reorder: float) -> None:
        self.loss, self.dup, self.reorder = loss, dup, reorder

    @invariant()
    def consistent(self) -> None:
        for side, other in (("a", "b"), ("b", "a")):
            got = self.received[side]
            assert got == self.sent[other][:len(got)], f"{side} read bytes never written"
        check_engine(self.net.a)
        check_engine(self.net.b)

    def teardown(self) -> None:
        """When nobody closed or was reset: heal the link and every byte arrives."""
        if not self.conns or self.closed or self.errors:
            return
        self.loss = self.dup = self.reorder = 0.0
        deadline = self.net.now + 600.0
        while self.net.now < deadline:
            self.net.run(self.net.now + 1.0)
            for side in ("a", "b"):
                self.recv(side, 1 << 20)
            if all(len(self.received[s]) == len(self.sent[o]) for s, o in (("a", "b"),
                                                                             ("b", "a"))):
                return
        raise AssertionError(("data never arrived", {s: (len(self.sent[s]),
                              len(self.received["b" if s == "a" else "a"])) for s in "ab"},
                              {s: c.state for s, c in self.conns.items()}))


# ---------------------------------------------------------------------------- hostile

FLAGS = st.integers(0, 0xFF)
NEAR = st.sampled_from((0, 1, -1, 2, 100, -100, 1448, 65535, 65536, -65536, 1 << 20,
                        1 << 30, 1 << 31, -(1 << 30)))
FAR = st.integers(0, 2**32 - 1)
OPTIONS = st.builds(
    TcpOptions,
    mss=st.none() | st.sampled_from((0, 1, 64, 536, 1460, 65535)),
    wscale=st.none() | st.sampled_from((0, 7, 14, 15, 255)),
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(st.tuples(NEAR, NEAR), max_size=4).map(tuple),
    ts_val=st.none() | st.sampled_from((0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)) | FAR,
    ts_ecr=st.sampled_from((0, 1, 0xFFFFFFFF)) | FAR,
)
SEGMENTS = st.lists(st.tuples(
    FLAGS,
    st.tuples(st.sampled_from(("rcv.rcv_nxt", "window_edge", "far")), NEAR, FAR),
    st.tuples(st.sampled_from(("snd.snd_una", "snd.snd_nxt", "far")), NEAR, FAR),
    st.sampled_from((0, 1, 100, 65535)),
    OPTIONS,
    st.sampled_from((0, 1, 2, 100, 1448, 5000)),
    st.sampled_from(("conn", "conn", "conn", "listener", "closed")),
    st.sampled_from((0.0, 0.0, 0.001, 0.2, 3.0)),
), min_size=1, max_size=40)

Spec = tuple[int, tuple[str, int, int], tuple[str, int, int], int, TcpOptions, int, str, float]


def _abs(conn: Connection, anchor: tuple[str, int, int]) -> int:
    name, delta, far = anchor
    if name == "far":
        return far
    base = seq_add(conn.rcv.rcv_nxt, conn.rcv.rcv_wnd) if name == "window_edge" \
        else attrgetter(name)(conn)
    return seq_add(base, delta)


def run_hostile(specs: list[Spec], sack: bool = True, ts: bool = True) -> None:
    """Feed ``specs`` as segments into the server of a fresh pair; check after each."""
    config = StackConfig(tcp_sack=int(sack), tcp_timestamps=int(ts))
    net = Net(config_a=config, config_b=config)
    _, client, server = open_pair(net)
    server.send(net.now, b"s" * 3000)  # something in flight to acknowledge
    net.b.take_output()
    engine = net.b
    for flags, seq_spec, ack_spec, window, opts, size, where, dt in specs:
        net.now += dt
        port = {"conn": client.local_port, "listener": client.local_port ^ 1,
                "closed": 9}[where]
        dport = 80 if where != "closed" else 9
        seg = TcpSegment(port, dport, _abs(server, seq_spec), _abs(server, ack_spec), flags,
                         window, opts, bytes(size))
        engine.on_segment(net.now, A_IP, B_IP, seg)
        engine.on_timers(net.now)
        engine.take_output()
        check_engine(engine)
        with contextlib.suppress(OSError):
            server.recv(net.now, 1 << 20)
