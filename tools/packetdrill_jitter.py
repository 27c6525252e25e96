#!/usr/bin/env python3
"""How precisely the kernel target keeps a script's timeline, idle and under CPU load.

    sudo .venv/bin/python tools/packetdrill_jitter.py [--samples 2000] [--hogs 0 2 4]

For each load level it starts that many busy-looping processes (stopped when the level is
measured), then runs ``jitter.probe`` (SYNs injected every 2 ms into a listening kernel
socket, in a namespace of its own) and prints, at p50/p99/max, how late an injected packet
reached the kernel and how late the runner saw the kernel's answer. A script's timing
check holds when these stay inside its tolerance (4 ms by default; gVisor's 100 ms).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ustcp.packetdrill.kernel.jitter import describe  # noqa: E402
from ustcp.packetdrill.kernel.target import probe_timing, unavailable  # noqa: E402

HOG_LIMIT = 120.0  # s: a hog stops by itself even if this tool is killed


def hog(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--hogs", type=int, nargs="+", default=[0, 2, 4],
                        help="busy processes to run during each measurement")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        print(reason)
        return 1
    for count in args.hogs:
        # Started before the probe forks its child, so the probe's process stays
        # single-threaded; each hog exits at its deadline whatever happens here.
        ctx = multiprocessing.get_context("fork")
        hogs = [ctx.Process(target=hog, args=(time.monotonic() + HOG_LIMIT,), daemon=True)
                for _ in range(count)]
        for process in hogs:
            process.start()
        try:
            figures = probe_timing(args.samples)
        finally:
            for process in hogs:
                process.terminate()
                process.join()
        print(f"{count} busy processes:")
        print("    " + describe("injected SYN late by", figures["inject_late_us"]))
        print("    " + describe("runner sees the SYN-ACK late by", figures["outbound_lag_us"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
