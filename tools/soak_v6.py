"""IPv6 beside IPv4 against the kernel: the daemon (dual-stack, offloads on or off) serves
curl downloads and uploads of N MB over each version, checked by sha256; prints MB/s.

Run as root: ``sudo .venv/bin/python tools/soak_v6.py [--size MB] [--rounds N]
[--offload on|off]``. The namespace and the daemon go away on the way out; every transfer
is bounded by a timeout. The CI's bounded version is tests/kernel/test_ipv6.py (20 MB).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

from ustcp.apps.http import content
from ustcp.defaults import DEFAULT_ADDR, DEFAULT_ADDR6
from ustcp.demo.netns import Namespace

HOSTS = {"v4": DEFAULT_ADDR, "v6": f"[{DEFAULT_ADDR6}]"}


def expected_digest(size: int) -> str:
    digest = hashlib.sha256()
    for chunk in content(size):
        digest.update(chunk)
    return digest.hexdigest()


def curl(ns: Namespace, *args: str, timeout: float) -> list[str]:
    done = ns.run(["curl", "-s", "-S", "-m", str(int(timeout)), *args], timeout=timeout + 30,
                  check=True)
    return done.stdout.split()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=200, help="MB per transfer")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--offload", choices=("on", "off"), default="on")
    args = parser.parse_args()
    size = args.size * 1_000_000
    want = expected_digest(size)
    failures = 0
    with Namespace("soakv6") as ns, tempfile.TemporaryDirectory() as tmp:
        ns.spawn([sys.executable, "-m", "ustcp.cli", "serve", "--offload", args.offload,
                  "--log-level", "warning"])
        for _ in range(100):
            if ns.run(["curl", "-s", "-o", "/dev/null", "-m", "2",
                       f"http://{DEFAULT_ADDR}/"]).returncode == 0:
                break
            time.sleep(0.2)
        body = Path(tmp) / "body"
        with body.open("wb") as out:
            for chunk in content(size):
                out.write(chunk)
        print(f"{'round':>5} {'ver':>4} {'down MB/s':>10} {'up MB/s':>9}  hashes")
        for rnd in range(args.rounds):
            for version, host in HOSTS.items():
                got = Path(tmp) / "got"
                down = curl(ns, "-o", str(got), "-w", "%{size_download} %{time_total}",
                            f"http://{host}/bytes/{size}", timeout=600)
                ok_down = hashlib.sha256(got.read_bytes()).hexdigest() == want
                up = curl(ns, "--data-binary", f"@{body}", "-H",
                          "Content-Type: application/octet-stream", "-w",
                          " %{size_upload} %{time_total}", f"http://{host}/sha256",
                          timeout=600)
                ok_up = up[0] == want
                failures += (not ok_down) + (not ok_up)
                print(f"{rnd:>5} {version:>4} {size / float(down[1]) / 1e6:>10.1f} "
                      f"{size / float(up[2]) / 1e6:>9.1f}  "
                      f"{'ok' if ok_down and ok_up else 'MISMATCH'}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
