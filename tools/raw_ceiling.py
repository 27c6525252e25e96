"""The raw ceiling: the least a Python process must do to move TCP bytes through a TUN device.

Run inside a network namespace of its own (``tools/bench.py`` does it)::

    ip netns exec NS python tools/raw_ceiling.py MODE [--offload on|off] [--mtu 1500]
                                                 [--max-seconds 60] [--busy-poll USEC]

It opens a TUN device exactly as ``ustcp serve`` does (``IFF_TUN | IFF_NO_PI``, plus
``IFF_VNET_HDR`` and ``TUNSETOFFLOAD(CSUM|TSO4[|TSO6])`` with ``--offload on``), gives the
kernel's side 10.77.0.1/24, prints ``ready`` and answers the kernel's TCP on 10.77.0.2 (any
port) until SIGINT/SIGTERM or ``--max-seconds``. It is *not* a TCP stack: it is the floor
under what any Python stack pays per frame (one ``read``/``write`` syscall, a ``struct``
parse, a header build) with every piece of protocol logic taken out.

What it does, by mode:

``sink`` (bulk receive ceiling)
    Answers a SYN with a SYN-ACK (MSS = MTU - 40, window scale 7, timestamps if the SYN
    offered them, no SACK). Reads every frame available (up to 256 per batch, like the
    daemon), records per connection the highest ``seq + len`` seen and the latest TSval,
    and after each batch sends one pure ACK per connection for that highest sequence with
    a fixed window of 65535 << 7 (8 MB) and the TSval echoed. A FIN is answered with FIN-ACK.
    With ``--offload off`` it verifies each frame's TCP checksum in Python (as a stack must
    when the kernel does not vouch for it) and computes the checksum of its ACKs; with
    offload on the kernel hands over GSO super-packets whose checksums it vouches for, and
    the ACKs go out with NEEDS_CSUM so the kernel finishes their checksum.
``source`` (bulk send ceiling)
    Same handshake. Once the handshake's ACK arrives (on port 80: once a request arrives,
    which it acknowledges and answers with an HTTP/1.1 response head) it sends pre-built
    frames carrying a fixed chargen-like payload, patching only sequence, ack and timestamp
    fields into the header. With offload on: GSO super-packets of 45 x MSS (GSO_TCPV4,
    NEEDS_CSUM; the checksum field holds the pseudo-header sum, constant for a length).
    With offload off: MSS-sized frames whose full TCP checksum is computed in Python per
    frame (the one piece of per-byte work a sender without offload cannot avoid). It sends
    while the kernel's advertised window (scaled) has room, sizing the last super-packet to
    fit it (the kernel drops a super-packet whose end lies beyond the window), and reads
    ACKs only to move ``snd.una`` and the window. No congestion control, no RTT
    estimation, no retransmission timer; the only recovery is go-back-N from ``snd.una`` on
    three duplicate ACKs or 200 ms without progress (counted, printed at exit).
``echo`` (request/response and connection-rate ceiling)
    Stateless: a SYN gets a SYN-ACK, a data segment gets the same bytes echoed back with
    the ACK (seq = the segment's ack, ack = its seq + len), a FIN gets a FIN-ACK, a pure ACK
    or RST gets nothing. No TIME_WAIT, no listen queue, no connection table.

What none of the modes do: out-of-order or overlapping data handling, SACK, window
management, PAWS, RST generation, retransmission timers, or delivering bytes to an
application (received payload is dropped as soon as the header is parsed; sent payload is
never produced, it is a constant buffer).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytun_pmd3

from ustcp.link.tun import in_host_netns
from ustcp.wire.checksum import checksum, pseudo_header_sum

IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
VNET_LEN = 10
NEEDS_CSUM = 1
GSO_NONE, GSO_TCPV4 = 0, 1

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
STACK_IP = bytes([10, 77, 0, 2])
KERNEL_ADDR = "10.77.0.1/24"
ISN = 1_000_000
WSCALE = 7
WINDOW = 65535
BATCH = 256
SUPER_SEGS = 45  # 45 x 1448 = 65160 payload bytes: the largest multiple under 64 KB
REWIND_IDLE = 0.2
HTTP_PORT = 80

_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_TS = struct.Struct("!BBBBII")  # nop nop kind len tsval tsecr
_VNET = struct.Struct("<BBHHHH")


def ms_clock() -> int:
    return int(time.monotonic() * 1000) & 0xFFFFFFFF


@dataclass(slots=True)
class Conn:
    """What ``sink``/``source`` remember about one connection (``echo`` keeps nothing)."""

    peer: bytes
    sport: int  # the kernel's port
    dport: int  # ours
    ts: bool
    snd_wscale: int = 0
    rcv_high: int = 0  # highest seq + len seen
    ts_recent: int = 0
    ack_due: bool = False
    # source side
    started: bool = False
    head: bytes = b""  # sent before the payload (an HTTP response head on port 80)
    stream: memoryview | None = None  # head + payload
    una: int = ISN + 1
    nxt: int = ISN + 1
    wnd: int = 0
    dupacks: int = 0
    last_progress: float = field(default_factory=time.monotonic)


class Ceiling:
    def __init__(self, mode: str, offload: bool, mtu: int, total: int) -> None:
        self.mode = mode
        self.mtu = mtu
        self.mss = mtu - 40
        self.total = total
        self.dev, self.offload = open_tun(offload)
        self.fd = self.dev.fileno()
        self.dev.mtu = mtu
        self.dev.up()
        subprocess.run(["ip", "addr", "add", KERNEL_ADDR, "dev", self.dev.name], check=True,
                       capture_output=True)
        os.set_blocking(self.fd, False)
        self.read_size = 65536 + VNET_LEN if self.offload else mtu
        self.conns: dict[tuple[bytes, int, int], Conn] = {}
        self.stats = {"frames_in": 0, "frames_out": 0, "bytes_in": 0, "bytes_out": 0,
                      "rewinds": 0, "csum_bad": 0}
        self.payload = bytes((33 + (i % 95)) for i in range(65536))
        self.ident = 0

    # -------------------------------------------------------------- frames out

    def build(self, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
              opts: bytes, payload: bytes | memoryview = b"", gso_size: int = 0) -> None:
        """Build and write one frame from 10.77.0.2:sport to dst:dport."""
        thl = 20 + len(opts)
        tlen = thl + len(payload)
        self.ident = (self.ident + 1) & 0xFFFF
        ip = bytearray(_IP.pack(0x45, 0, 20 + tlen, self.ident, 0x4000, 64, 6, 0, STACK_IP, dst))
        struct.pack_into("!H", ip, 10, checksum(ip))
        tcp = bytearray(_TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                                  (thl // 4) << 4, flags, WINDOW, 0, 0)) + opts
        phs = pseudo_header_sum(STACK_IP, dst, 6, tlen)
        if self.offload:
            struct.pack_into("!H", tcp, 16, phs)
            vnet = _VNET.pack(NEEDS_CSUM, GSO_TCPV4 if gso_size else GSO_NONE,
                              20 + thl if gso_size else 0, gso_size, 20, 16)
            os.writev(self.fd, (vnet, ip, tcp, payload))
        else:
            struct.pack_into("!H", tcp, 16, checksum(bytes(tcp) + payload, phs))
            os.writev(self.fd, (ip, tcp, payload))
        self.stats["frames_out"] += 1
        self.stats["bytes_out"] += len(payload)

    def ts_opt(self, ts: bool, ecr: int) -> bytes:
        return _TS.pack(1, 1, 8, 10, ms_clock(), ecr) if ts else b""

    def synack(self, src: bytes, sport: int, dport: int, seq: int, ts: bool, tsval: int) -> None:
        opts = struct.pack("!BBH", 2, 4, self.mss) + bytes((1, 3, 3, WSCALE))
        if ts:
            opts += self.ts_opt(True, tsval)
        self.build(src, dport, sport, ISN, seq + 1, SYN | ACK, opts)

    # -------------------------------------------------------------- frames in

    def run(self, max_seconds: float, busy_poll_us: int = 0) -> None:
        deadline = time.monotonic() + max_seconds
        poll = select.poll()
        poll.register(self.fd, select.POLLIN)
        last_busy = 0.0
        while time.monotonic() < deadline:
            got = self.read_batch()
            sent = self.pump() if self.mode == "source" else False
            if got or sent:
                last_busy = time.perf_counter()
            elif time.perf_counter() - last_busy >= busy_poll_us / 1e6:
                poll.poll(20 if self.mode == "source" and self.conns else 200)

    def read_batch(self) -> int:
        n = 0
        fd, size = self.fd, self.read_size
        while n < BATCH:
            try:
                data = os.read(fd, size)
            except BlockingIOError:
                break
            n += 1
            self.on_frame(memoryview(data)[VNET_LEN:] if self.offload else memoryview(data))
        if n and self.mode == "sink":
            for key, c in self.conns.items():
                if c.ack_due:
                    c.ack_due = False
                    self.build(key[0], c.dport, c.sport, c.nxt, c.rcv_high, ACK,
                               self.ts_opt(c.ts, c.ts_recent))
        return n

    def on_frame(self, f: memoryview) -> None:
        if len(f) < 40 or f[0] >> 4 != 4 or f[9] != 6:
            return
        ihl = (f[0] & 0x0F) * 4
        total = (f[2] << 8) | f[3]
        src = bytes(f[12:16])
        sport, dport, seq, ack, off, flags, win, _, _ = _TCP.unpack_from(f, ihl)
        thl = (off >> 4) * 4
        plen = total - ihl - thl
        self.stats["frames_in"] += 1
        self.stats["bytes_in"] += plen
        if not self.offload and plen > 0:
            tlen = total - ihl
            if checksum(f[ihl:total], pseudo_header_sum(src, STACK_IP, 6, tlen)) not in (0, 0xFFFF):
                self.stats["csum_bad"] += 1
                return
        opts = f[ihl + 20:ihl + thl]
        ts, tsval, wscale = parse_opts(opts)
        if flags & RST:
            self.conns.pop((src, sport, dport), None)
            return
        if flags & SYN:
            self.synack(src, sport, dport, seq, ts, tsval)
            if self.mode != "echo":
                self.conns[(src, sport, dport)] = Conn(src, sport, dport, ts, wscale,
                                                       rcv_high=(seq + 1) & 0xFFFFFFFF,
                                                       ts_recent=tsval)
            return
        if self.mode == "echo":
            if plen:
                payload = bytes(f[ihl + thl:total])
                self.build(src, dport, sport, ack, seq + plen, ACK | PSH,
                           self.ts_opt(ts, tsval), payload)
            if flags & FIN:
                self.build(src, dport, sport, ack, seq + plen + 1, FIN | ACK,
                           self.ts_opt(ts, tsval))
            return
        c = self.conns.get((src, sport, dport))
        if c is None:
            return
        if ts:
            c.ts_recent = tsval
        end = (seq + plen + (1 if flags & FIN else 0)) & 0xFFFFFFFF
        if ((end - c.rcv_high) & 0xFFFFFFFF) < 0x80000000:
            c.rcv_high = end
        if self.mode == "sink":
            if flags & FIN:
                self.build(src, dport, sport, ISN + 1, c.rcv_high, FIN | ACK,
                           self.ts_opt(c.ts, c.ts_recent))
                self.conns.pop((src, sport, dport), None)
            elif plen:
                c.ack_due = True
            return
        # source: ACKs move una and the window
        c.wnd = win << c.snd_wscale
        if c.dport == HTTP_PORT and not c.started:
            if not plen:
                return  # wait for the request; answer it with a response head, then bytes
            c.head = (f"HTTP/1.1 200 OK\r\nContent-Length: {self.total}\r\n"
                      "Connection: close\r\n\r\n").encode()
            c.stream = memoryview(c.head + self.payload)
            c.ack_due = True
        if not c.started:
            c.started = True
            c.last_progress = time.monotonic()
        delta = (ack - c.una) & 0xFFFFFFFF
        if 0 < delta < 0x80000000:
            c.una = ack
            c.dupacks = 0
            c.last_progress = time.monotonic()
            if ((c.nxt - c.una) & 0xFFFFFFFF) >= 0x80000000:
                c.nxt = c.una
        elif delta == 0 and plen == 0 and c.nxt != c.una:
            c.dupacks += 1
            if c.dupacks == 3:
                c.nxt = c.una
                self.stats["rewinds"] += 1
        if flags & FIN:
            self.build(src, dport, sport, c.nxt, c.rcv_high, ACK, self.ts_opt(c.ts, c.ts_recent))

    # -------------------------------------------------------------- source

    def pump(self) -> bool:
        sent = False
        for key, c in list(self.conns.items()):
            if not c.started:
                continue
            now = time.monotonic()
            if c.nxt != c.una and now - c.last_progress > REWIND_IDLE:
                c.nxt = c.una
                c.last_progress = now
                self.stats["rewinds"] += 1
            mss = self.mss - (12 if c.ts else 0)
            unit = mss * SUPER_SEGS if self.offload else mss
            limit = (c.una + c.wnd) & 0xFFFFFFFF
            sent_bytes = (c.nxt - ISN - 1) & 0xFFFFFFFF
            if c.ack_due:  # the HTTP request
                c.ack_due = False
                self.build(key[0], c.dport, c.sport, c.nxt, c.rcv_high, ACK,
                           self.ts_opt(c.ts, c.ts_recent))
            stream = c.stream if c.stream is not None else memoryview(self.payload)
            total = self.total + len(c.head)
            while sent_bytes < total:
                room = (limit - c.nxt) & 0xFFFFFFFF
                if room >= 0x80000000 or room == 0:
                    break
                size = min(unit, room, total - sent_bytes)
                if size < unit and size < mss and sent_bytes + size < total:
                    break  # no silly segments
                if self.offload and size > mss:
                    size -= size % mss
                self.build(key[0], c.dport, c.sport, c.nxt, c.rcv_high, ACK,
                           self.ts_opt(c.ts, c.ts_recent),
                           stream[:size] if sent_bytes == 0 else stream[len(c.head):][:size],
                           gso_size=mss if self.offload and size > mss else 0)
                c.nxt = (c.nxt + size) & 0xFFFFFFFF
                sent_bytes += size
                sent = True
        return sent


def parse_opts(opts: memoryview) -> tuple[bool, int, int]:
    """(timestamps present, TSval, window scale) from a TCP option block."""
    ts, tsval, wscale = False, 0, 0
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n:
            break
        length = opts[i + 1]
        if length < 2:
            break
        if kind == 8 and length == 10:
            ts, tsval = True, int.from_bytes(opts[i + 2:i + 6], "big")
        elif kind == 3 and length == 3:
            wscale = min(opts[i + 2], 14)
        i += length
    return ts, tsval, wscale


def open_tun(offload: bool) -> tuple[pytun_pmd3.TunTapDevice, bool]:
    if offload:
        dev = pytun_pmd3.TunTapDevice(name="", flags=IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)
        for flags in (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, TUN_F_CSUM | TUN_F_TSO4):
            try:
                fcntl.ioctl(dev.fileno(), TUNSETOFFLOAD, flags)
            except OSError:
                continue
            return dev, True
        dev.close()
        print("offload refused: plain frames", file=sys.stderr)
    return pytun_pmd3.TunTapDevice(name="", flags=IFF_TUN | IFF_NO_PI), False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("sink", "source", "echo"))
    p.add_argument("--offload", choices=("on", "off"), default="on")
    p.add_argument("--mtu", type=int, default=1500)
    p.add_argument("--bytes", type=int, default=1 << 30,
                   help="source: bytes to send per connection before the FIN")
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--busy-poll", type=int, default=0, metavar="USEC",
                   help="keep reading this long after the last frame before sleeping in "
                        "poll, as ustcp's net.core.busy_poll does")
    args = p.parse_args(argv)
    if in_host_netns():
        print("raw_ceiling: run it inside a network namespace (ip netns exec NS ...)",
              file=sys.stderr)
        return 2
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    ceiling = Ceiling(args.mode, args.offload == "on", args.mtu, args.bytes)
    try:
        print(f"ready offload={'on' if ceiling.offload else 'off'}", flush=True)
        ceiling.run(args.max_seconds, args.busy_poll)
    except KeyboardInterrupt:
        pass
    finally:
        ceiling.dev.close()
        print(" ".join(f"{k}={v}" for k, v in ceiling.stats.items()), file=sys.stderr,
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
