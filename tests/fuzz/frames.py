"""A frame fuzzer for the IP layer (issue 13): mutated real frames into ``IpLayer.on_frame``.

The corpus is the frames of tests/fixtures pcaps plus every frame a client host sends to a
server host in a scripted session (handshake, data both ways with a loss so SACK blocks
appear, an ICMP echo, the close), built by the stack itself. Each fuzzed frame is a corpus
frame mutated (bits flipped, bytes and header fields set to edge values, truncated,
extended, spliced, TCP options rewritten), and most of the time its IP and TCP checksums are
made right again so that it reaches TCP and the connection. The target is a server host
with a live connection from the same session (same seeds, same clock: the corpus frames'
sequence numbers are the connection's), rebuilt every few thousand frames.

Checked per frame: no exception escapes ``on_frame``; a counter other than IpInReceives
moved (delivered to a protocol or dropped with a reason); the host's output is drained and
its timers run, as the daemon would.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

from ustcp.config import StackConfig
from ustcp.ip import IpLayer
from ustcp.mib import Counters
from ustcp.tcp.connection import Connection
from ustcp.tcp.engine import TcpEngine
from ustcp.wire.icmp import ECHO_REQUEST, build_echo
from ustcp.wire.ipv4 import build_ipv4_header

CLIENT_IP = socket.inet_aton("10.77.0.1")
SERVER_IP = socket.inet_aton("10.77.0.2")
PORT = 80
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REBUILD_EVERY = 5000  # frames into one target before a fresh one
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000,
               0xFFFFFFFF)


class Host:
    """One host: an IP layer over a TCP engine, frames in and out, full checksums."""

    def __init__(self, addr: bytes, seed: int) -> None:
        self.counters = Counters()
        self.engine = TcpEngine(StackConfig(), self.counters, seed=seed)
        self.ip = IpLayer(self.engine, self.counters, {addr}, StackConfig())


@dataclass
class Session:
    """A client and a server host exchanging frames on a fake clock (deterministic)."""

    now: float = 1.0
    client: Host = field(default_factory=lambda: Host(CLIENT_IP, 1))
    server: Host = field(default_factory=lambda: Host(SERVER_IP, 2))
    to_server: list[bytes] = field(default_factory=list)

    def settle(self, drop_nth_data: int = -1) -> None:
        n = 0
        while True:
            out_c = [f for f, _ in self.client.ip.take_frames()]
            out_s = [f for f, _ in self.server.ip.take_frames()]
            if not out_c and not out_s:
                return
            self.now += 0.001
            for frame in out_c:
                self.to_server.append(frame)
                if len(frame) > 60:
                    n += 1
                    if n == drop_nth_data:
                        continue
                self.server.ip.on_frame(self.now, frame)
            for frame in out_s:
                self.client.ip.on_frame(self.now, frame)

    def connect(self) -> tuple[Connection, Connection]:
        listener = self.server.engine.listen(self.now, SERVER_IP, PORT, 128)
        client = self.client.engine.connect(self.now, CLIENT_IP, SERVER_IP, PORT)
        self.settle()
        server = listener.accept()
        assert server is not None
        return client, server


def session_frames() -> list[bytes]:
    """Every frame the client sends in a scripted session, the handshake first."""
    s = Session()
    client, server = s.connect()
    client.send(s.now, bytes(range(256)) * 40)
    s.settle(drop_nth_data=2)  # a hole: SACK blocks, a retransmission
    for _ in range(50):
        s.now += 0.05
        s.client.engine.on_timers(s.now)
        s.server.engine.on_timers(s.now)
        s.settle()
    server.send(s.now, server.recv(s.now, 1 << 20))
    s.settle()
    client.recv(s.now, 1 << 20)
    client.shutdown(s.now, socket.SHUT_WR)
    s.settle()
    server.close(s.now)
    s.settle()
    icmp = build_echo(ECHO_REQUEST, 7, 1, b"ping" * 8)
    s.to_server.append(build_ipv4_header(CLIENT_IP, SERVER_IP, 1, len(icmp), ttl=64,
                                         ident=1) + icmp)
    return s.to_server


def pcap_frames() -> list[bytes]:
    frames = []
    for path in sorted(FIXTURES.glob("*.pcap")):
        with path.open("rb") as f:
            reader = dpkt.pcap.Reader(f)
            if reader.datalink() == dpkt.pcap.DLT_RAW or reader.datalink() == 101:
                frames.extend(bytes(buf) for _, buf in reader)
    return frames


def corpus() -> list[bytes]:
    return session_frames() + pcap_frames()


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def fix_checksums(frame: bytearray) -> None:
    """Make the IPv4 header checksum, and the TCP/ICMP one where the lengths allow, right."""
    if len(frame) < 20:
        return
    ihl = (frame[0] & 0x0F) * 4
    if ihl < 20 or ihl > len(frame):
        return
    frame[10:12] = b"\0\0"
    frame[10:12] = struct.pack("!H", _csum(bytes(frame[:ihl])))
    total = struct.unpack_from("!H", frame, 2)[0]
    end = min(total, len(frame))
    proto = frame[9]
    if proto == 6 and end - ihl >= 18:
        frame[ihl + 16:ihl + 18] = b"\0\0"
        pseudo = bytes(frame[12:20]) + struct.pack("!BBH", 0, 6, end - ihl)
        frame[ihl + 16:ihl + 18] = struct.pack("!H", _csum(pseudo + bytes(frame[ihl:end])))
    elif proto == 1 and end - ihl >= 4:
        frame[ihl + 2:ihl + 4] = b"\0\0"
        frame[ihl + 2:ihl + 4] = struct.pack("!H", _csum(bytes(frame[ihl:end])))


def _tcp_options(rng: random.Random) -> bytes:
    out = bytearray()
    for _ in range(rng.randrange(1, 6)):
        kind = rng.choice((0, 1, 2, 3, 4, 5, 8, 19, 28, 29, 30, 34, 253, 254, rng.randrange(256)))
        if kind in (0, 1):
            out.append(kind)
            continue
        length = rng.choice((0, 1, 2, 3, 4, 6, 8, 10, 18, 34, 40, 255, rng.randrange(256)))
        out += bytes((kind, length)) + rng.randbytes(max(0, min(length, 38) - 2))
    return bytes(out[:40])


def mutate(rng: random.Random, frame: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(frame)
    ihl = max(20, (buf[0] & 0x0F) * 4) if buf else 20
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        how = rng.randrange(9)
        if how == 0 and buf:  # flip bits
            for _ in range(rng.randrange(1, 5)):
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
        elif how == 1 and buf:  # an edge value into any byte
            buf[rng.randrange(len(buf))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
        elif how in (2, 3) and len(buf) > ihl + 20:  # a TCP header field to an edge value
            off, size = rng.choice(((0, 2), (2, 2), (4, 4), (8, 4), (12, 1), (13, 1),
                                    (14, 2), (18, 2)))
            value = rng.choice((*INTERESTING, rng.getrandbits(32)))
            if off in (4, 8) and rng.random() < 0.5:  # near the current value
                old = struct.unpack_from("!I", buf, ihl + off)[0]
                value = (old + rng.choice((-1, 1, -1000, 1000, 1 << 16, -(1 << 16),
                                           1 << 30, 1 << 31))) & 0xFFFFFFFF
            struct.pack_into("!" + {1: "B", 2: "H", 4: "I"}[size], buf, ihl + off,
                             value & ((1 << 8 * size) - 1))
        elif how == 4 and len(buf) >= 20:  # an IP header field
            off, size = rng.choice(((0, 1), (1, 1), (2, 2), (4, 2), (6, 2), (8, 1),
                                    (9, 1), (12, 4), (16, 4)))
            value = rng.choice((*INTERESTING, rng.getrandbits(32)))
            struct.pack_into("!" + {1: "B", 2: "H", 4: "I"}[size], buf, off,
                             value & ((1 << 8 * size) - 1))
        elif how == 5 and buf:  # truncate
            del buf[rng.randrange(len(buf)):]
        elif how == 6:  # extend
            buf += rng.randbytes(rng.choice((1, 4, 40, 1000)))
        elif how == 7 and len(buf) >= ihl + 20:  # new TCP options
            opts = _tcp_options(rng)
            opts += b"\0" * (-len(opts) % 4)
            doff = (buf[ihl + 12] >> 4) * 4
            payload = bytes(buf[ihl + max(20, doff):])
            buf[ihl + 20:] = opts + payload
            buf[ihl + 12] = ((20 + len(opts)) // 4) << 4 | (buf[ihl + 12] & 0x0F)
            struct.pack_into("!H", buf, 2, min(len(buf), 0xFFFF))
        elif how == 8:  # splice with another frame
            other = rng.choice(pool)
            cut = rng.randrange(len(buf) + 1)
            buf = buf[:cut] + other[rng.randrange(len(other) + 1):]
    if rng.random() < 0.7:
        fix_checksums(buf)
    return bytes(buf)


@dataclass
class FrameReport:
    frames: int = 0
    seconds: float = 0.0
    reached_tcp: int = 0  # parsed by TCP and handed to the engine
    counters: dict[str, int] = field(default_factory=dict)


class UncountedFrame(AssertionError):
    """A frame that moved no counter but IpInReceives: a silent drop."""


def fuzz_frames(count: int, seed: int = 0) -> FrameReport:
    """Feed ``count`` mutated frames; raises on the first escaped exception or uncounted
    frame, with the frame in the message for a reproducer."""
    rng = random.Random(seed)
    pool = corpus()
    report = FrameReport()
    totals: dict[str, int] = {}
    start = time.perf_counter()
    target: Session | None = None
    for n in range(count):
        if n % REBUILD_EVERY == 0:
            if target is not None:
                _add(totals, target.server.counters.snapshot())
            target = Session()
            target.connect()
        assert target is not None
        frame = mutate(rng, rng.choice(pool), pool)
        host = target.server
        c = host.counters
        before, segs = c.total() - c["IpInReceives"], c["TcpInSegs"]
        target.now += 0.0005
        try:
            host.ip.on_frame(target.now, frame)
            if n % 64 == 0:
                host.engine.on_timers(target.now)
            host.ip.take_frames()
        except Exception as exc:
            raise AssertionError(f"frame {n} (seed {seed}) raised {exc!r}: "
                                 f"{frame.hex()}") from exc
        if c.total() - c["IpInReceives"] == before:
            raise UncountedFrame(f"frame {n} (seed {seed}) moved no counter: {frame.hex()}")
        report.reached_tcp += c["TcpInSegs"] - segs
    if target is not None:
        _add(totals, target.server.counters.snapshot())
    report.frames = count
    report.seconds = time.perf_counter() - start
    report.counters = {k: v for k, v in sorted(totals.items()) if v}
    return report


def _add(totals: dict[str, int], snapshot: dict[str, int]) -> None:
    for name, value in snapshot.items():
        totals[name] = totals.get(name, 0) + value
