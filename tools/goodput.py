"""Goodput through loss, for issue 5's table: the in-memory pair and the kernel peer, at 0%,
1% and 5% loss, with cubic and with reno.

- in-memory: two stacks (codecs, checksums, the trio driver and API) over the in-memory
  link with ``loss=X%,delay=1ms`` both ways, on the real clock; the sender runs the chosen
  congestion control; 20 MB.
- kernel: ``ustcp serve --impair loss=X%,delay=1ms --sysctl tcp_congestion_control=CC`` in
  a namespace of its own, and the kernel downloading ``/bytes/N`` with curl (so the stack
  is the sender whose congestion control is measured); 20 MB.

Run as root: ``sudo .venv/bin/python tools/goodput.py [--size MB] [--json FILE]``. Every
namespace is deleted on the way out; every transfer is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

import trio

from ustcp.api import open_tcp_listeners, open_tcp_stream
from ustcp.config import StackConfig
from ustcp.demo.netns import STACK_ADDR, Namespace
from ustcp.link.impair import ImpairmentSpec
from ustcp.link.memory import memory_link_pair
from ustcp.mib import Counters
from ustcp.obs.log import configure_logging
from ustcp.stack import Stack

LOSSES = (0.0, 0.01, 0.05)
ALGORITHMS = ("cubic", "reno")


async def memory_goodput(loss: float, cc: str, size: int) -> float:
    """MB/s of one transfer of ``size`` bytes between two in-process stacks."""
    spec = ImpairmentSpec(loss=loss, delay=0.001, seed=5)
    sender_config = StackConfig()
    sender_config.tcp_congestion_control = cc
    ca, cb = Counters(), Counters()
    la, lb = memory_link_pair(impair_a_to_b=spec, impair_b_to_a=spec, counters=(ca, cb))
    a = Stack(la, sender_config, ca, socket.inet_aton("10.99.0.1"), seed=1)
    b = Stack(lb, StackConfig(), cb, socket.inet_aton("10.99.0.2"), seed=2)
    data = os.urandom(size)
    received = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.run)
        nursery.start_soon(b.run)
        [listener] = await open_tcp_listeners(b, 5001)
        client = await open_tcp_stream(a, "10.99.0.2", 5001)
        server = await listener.accept()
        start = time.perf_counter()
        with trio.fail_after(600):
            nursery.start_soon(client.send_all, data)
            while received < size:
                chunk = await server.receive_some(1 << 20)
                received += len(chunk)
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return size / elapsed / 1e6


def kernel_goodput(loss: float, cc: str, size: int) -> float:
    """MB/s of curl downloading ``size`` bytes from the daemon through ``--impair``."""
    impair = f"loss={loss * 100:g}%,delay=1ms,seed=5"
    with Namespace("goodput") as ns:  # deleted, with the daemon, on the way out
        ns.spawn([sys.executable, "-m", "ustcp.cli", "serve", "--impair", impair,
                  "--sysctl", f"tcp_congestion_control={cc}", "--log-level", "warning"])
        for _ in range(100):
            if ns.run(["curl", "-s", "-o", "/dev/null", "-m", "2", f"http://{STACK_ADDR}/"]
                      ).returncode == 0:
                break
            time.sleep(0.2)
        done = ns.run(["curl", "-s", "-o", "/dev/null", "-m", "300", "-w",
                       "%{size_download} %{time_total}", f"http://{STACK_ADDR}/bytes/{size}"],
                      timeout=330, check=True)
    got, seconds = done.stdout.split()
    if int(got) != size:
        raise RuntimeError(f"short download: {got} of {size} bytes")
    return size / float(seconds) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=20, help="MB per transfer")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-kernel", action="store_true", help="in-memory pair only")
    args = parser.parse_args()
    configure_logging("console", level="error")
    size = args.size * 1_000_000
    rows = []
    print(f"{'loss':>5} {'cc':>6} {'in-memory MB/s':>15} {'kernel peer MB/s':>17}")
    for loss in LOSSES:
        for cc in ALGORITHMS:
            memory = trio.run(memory_goodput, loss, cc, size)
            kernel = None if args.skip_kernel else kernel_goodput(loss, cc, size)
            rows.append({"loss": loss, "cc": cc, "memory_mbps": memory, "kernel_mbps": kernel})
            kernel_text = "-" if kernel is None else f"{kernel:.1f}"
            print(f"{loss:>5.0%} {cc:>6} {memory:>15.1f} {kernel_text:>17}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
