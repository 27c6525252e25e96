"""How precisely the kernel target keeps a script's timeline on this machine.

``probe(n)`` (run by a worker inside its namespace) listens on 192.168.0.1:8080 and injects
``n`` SYNs from distinct ports, one every ``INTERVAL`` s on the script clock, as a script's
``<`` lines would be. For each it records:

- ``inject_late_us``: how long after its scheduled time the write to the TUN device
  returned. The kernel processes a TUN write in the writer's own system call, so this is
  how late the packet reached the kernel's TCP;
- ``outbound_lag_us``: how long after that write returned the reader thread had the
  kernel's SYN-ACK in hand. The SYN-ACK is sent during the write, so this bounds how late
  the runner sees (and time-stamps) an outbound packet.

A script's timing check holds when these stay well inside its tolerance (4 ms by default).
"""

from __future__ import annotations

import queue
import socket as pysocket
import time

from ...wire.tcp import SYN, TcpOptions, TcpSegment
from .world import Tun

INTERVAL = 0.002
PORT_BASE = 20000
REPLY_WAIT = 1.0


def probe(samples: int) -> dict[str, list[float]]:
    tun = Tun(1500)
    listener = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_STREAM)
    try:
        listener.bind(("192.168.0.1", 8080))
        listener.listen(samples + 16)
        late: list[float] = []
        lag: list[float] = []
        start = time.monotonic() + 0.05
        for i in range(samples):
            due = start + i * INTERVAL
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            port = PORT_BASE + i
            tun.inject(tun.frame(TcpSegment(port, 8080, 1000 * i, 0, SYN, 65535,
                                            TcpOptions(mss=1460))))
            written = time.monotonic()
            late.append((written - due) * 1e6)
            seen = _reply_time(tun, port)
            if seen is not None:
                lag.append(max(0.0, seen - written) * 1e6)
        return {"inject_late_us": late, "outbound_lag_us": lag}
    finally:
        listener.close()
        tun.close()


def _reply_time(tun: Tun, port: int) -> float | None:
    limit = time.monotonic() + REPLY_WAIT
    while True:
        try:
            item = tun.frames.get(timeout=max(0.0, limit - time.monotonic()))
        except queue.Empty:
            return None
        if item.seg.dst_port == port:
            return item.time


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def describe(label: str, values_us: list[float]) -> str:
    if not values_us:
        return f"{label}: no samples"
    return (f"{label}: p50 {percentile(values_us, 50):.0f} µs, p99 "
            f"{percentile(values_us, 99):.0f} µs, max {max(values_us):.0f} µs "
            f"({len(values_us)} samples)")
