"""Running scripts on the kernel target from the ``ustcp packetdrill`` process.

Each attempt is a worker process (``worker.py``) with its own network namespace. A script
that fails on timing alone is run again, up to ``TIMING_RETRIES`` more times, since a
real-time run on a loaded machine can miss a few-millisecond window through no fault of
the kernel (packetdrill's own harnesses retry the same way); the attempts are reported.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..runner import Result

TIMING_RETRIES = 2
WORKER_TIMEOUT = 300.0  # s: the longest script in the shared set takes under 10


@dataclass(slots=True)
class KernelRun:
    result: Result
    attempts: int
    inject_lateness: list[float]  # s, every injected packet of the last attempt


def unavailable() -> str | None:
    """Why the kernel target cannot run here, or None."""
    if os.geteuid() != 0:
        return "the kernel target needs root (a network namespace and a TUN device)"
    if not os.path.exists("/dev/net/tun"):
        return "the kernel target needs /dev/net/tun"
    if shutil.which("ip") is None:
        return "the kernel target needs ip (iproute2)"
    return None


def kernel_release() -> str:
    return platform.release()


def _worker(args: list[str], timeout: float) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "ustcp.packetdrill.kernel.worker", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        error = done.stderr.strip().splitlines()
        raise RuntimeError(f"kernel worker exited {done.returncode}: "
                           f"{error[-1] if error else 'no output'}")
    payload: dict[str, object] = json.loads(lines[-1])
    return payload


def run_once(path: Path, name: str) -> tuple[Result, list[float]]:
    try:
        payload = _worker([str(path), name], WORKER_TIMEOUT)
    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        return Result(name, "fail", None, f"kernel target: {exc}"), []
    raw = payload["result"]
    assert isinstance(raw, dict)
    raw["sent"] = {int(line): text for line, text in raw.get("sent", {}).items()}
    lateness = payload.get("inject_lateness", [])
    assert isinstance(lateness, list)
    return Result(**raw), [float(x) for x in lateness]


def run_on_kernel(path: Path, name: str | None = None,
                  retries: int = TIMING_RETRIES) -> KernelRun:
    display = name or str(path)
    attempts = 0
    while True:
        attempts += 1
        result, lateness = run_once(path, display)
        if result.status != "fail" or "timing" not in result.message or attempts > retries:
            return KernelRun(result, attempts, lateness)


def probe_timing(samples: int) -> dict[str, list[float]]:
    """The runner's own lateness on this machine (``jitter.probe`` in a worker), in µs."""
    payload = _worker(["--probe", str(samples)], 120.0)
    return {key: [float(v) for v in value] for key, value in payload.items()
            if isinstance(value, list)}
