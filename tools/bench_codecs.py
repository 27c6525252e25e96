"""Microseconds per operation: ustcp's struct codecs against dpkt.

Run: ``.venv/bin/python tools/bench_codecs.py``. Prints the best of several repeats, so the
figures are what the code costs on an idle core, not a distribution.
"""

from __future__ import annotations

import socket
import timeit
from collections.abc import Callable

import dpkt

from ustcp.config import StackConfig
from ustcp.ip import IpLayer
from ustcp.mib import Counters
from ustcp.wire.checksum import checksum
from ustcp.wire.ipv4 import PROTO_TCP, build_ipv4_header, parse_ipv4
from ustcp.wire.tcp import ACK, PSH, TcpOptions, TcpSegment, build_tcp, parse_tcp

SRC = socket.inet_aton("10.77.0.1")
DST = socket.inet_aton("10.77.0.2")
REPEATS = 5


def per_op_us(fn: Callable[[], object], seconds: float = 0.2) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * seconds / 0.2))
    return min(timer.repeat(REPEATS, number)) / number * 1e6


def our_frame(seg: TcpSegment, mode: str = "full") -> bytes:
    tcp = build_tcp(seg, SRC, DST, checksum=mode)  # type: ignore[arg-type]
    ip = build_ipv4_header(SRC, DST, PROTO_TCP, len(tcp) + len(seg.payload), ttl=64, ident=1)
    return b"".join((ip, tcp, seg.payload))


def dpkt_frame(seg: TcpSegment) -> bytes:
    opts = bytes.fromhex("0101080a") + seg.options.ts_val.to_bytes(4, "big") \
        + seg.options.ts_ecr.to_bytes(4, "big") if seg.options.ts_val is not None else b""
    tcp = dpkt.tcp.TCP(sport=seg.src_port, dport=seg.dst_port, seq=seg.seq, ack=seg.ack,
                       flags=seg.flags, win=seg.window, off=5 + len(opts) // 4, opts=opts,
                       data=bytes(seg.payload))
    ip = dpkt.ip.IP(src=SRC, dst=DST, p=PROTO_TCP, ttl=64, id=1, df=1, data=tcp)
    return bytes(ip)


class NullEngine:
    def on_segment(self, now: float, src_ip: bytes, dst_ip: bytes, seg: TcpSegment) -> None:
        pass

    def take_output(self) -> list[tuple[bytes, bytes, TcpSegment]]:
        return []


def parse_ours(frame: bytes) -> TcpSegment:
    hdr, payload = parse_ipv4(frame)
    return parse_tcp(payload, hdr.src, hdr.dst, verify_checksum=False)


def rows() -> list[tuple[str, float, float | None]]:
    seg = TcpSegment(40000, 80, 123456, 654321, ACK | PSH, 502,
                     TcpOptions(ts_val=1000, ts_ecr=2000), bytes(range(256)) * 5 + bytes(180))
    frame = our_frame(seg)
    assert frame == dpkt_frame(seg), "our frame and dpkt's must be identical"
    ack = TcpSegment(40000, 80, 123456, 654321, ACK, 502, TcpOptions(ts_val=1000, ts_ecr=2000))
    ip = IpLayer(NullEngine(), Counters(), {DST}, StackConfig())
    to_us = our_frame(TcpSegment(40000, 80, 1, 2, ACK | PSH, 502,
                                 TcpOptions(ts_val=1, ts_ecr=2), bytes(1448)))
    b1500 = bytes(range(256)) * 5 + bytes(220)
    b64k = bytes(range(256)) * 256
    return [
        ("parse IPv4+TCP, 1460 B (struct vs dpkt.ip.IP)", per_op_us(lambda: parse_ours(frame)),
         per_op_us(lambda: dpkt.ip.IP(frame))),
        ("build IPv4+TCP+TS, 1460 B, full checksum", per_op_us(lambda: our_frame(seg)),
         per_op_us(lambda: dpkt_frame(seg))),
        ("build IPv4+TCP+TS, 1460 B, partial checksum",
         per_op_us(lambda: our_frame(seg, "partial")), None),
        ("build bare ACK with TS, full checksum", per_op_us(lambda: our_frame(ack)),
         per_op_us(lambda: dpkt_frame(ack))),
        ("checksum 1500 B", per_op_us(lambda: checksum(b1500)),
         per_op_us(lambda: dpkt.in_cksum(b1500))),
        ("checksum 64 KB", per_op_us(lambda: checksum(b64k)),
         per_op_us(lambda: dpkt.in_cksum(b64k))),
        ("IpLayer.on_frame 1448 B, TCP checksum verified by us",
         per_op_us(lambda: ip.on_frame(0.0, to_us)), None),
        ("IpLayer.on_frame 1448 B, csum_verified (vnet NEEDS_CSUM)",
         per_op_us(lambda: ip.on_frame(0.0, to_us, csum_verified=True)), None),
    ]


def main() -> None:
    print(f"{'operation':58} {'ustcp µs':>9} {'dpkt µs':>9} {'ratio':>6}")
    for name, ours, theirs in rows():
        other = f"{theirs:9.2f} {theirs / ours:5.1f}x" if theirs is not None else ""
        print(f"{name:58} {ours:9.2f} {other}")


if __name__ == "__main__":
    main()
