"""Running scripts on the kernel target from the ``ustcp packetdrill`` process.

Each attempt is a forked child (``worker.py``) with its own network namespace. A script
that fails is run again, up to ``RETRIES`` more times, and passes if any attempt passes:
on real time a late injection does not only miss a timing window, it also changes what the
kernel measures (a 5 ms late ACK is a 5 ms longer RTT, hence another pacing rate, TSO size
and PSH placement), so a failure of any kind can come from the machine's load. The number
of attempts is printed with the result; a script that fails on the kernel's behaviour fails
every attempt.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import platform
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..runner import Result
from .jitter import probe
from .worker import in_child, script_job

RETRIES = 2
WORKER_TIMEOUT = 300.0  # s: the longest script in the shared set takes under 10
PROBE_TIMEOUT = 120.0


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
    """``6.18.44 (HZ=250)``: the version, and the timer tick when the build config says
    (TCP's timers fire on jiffies: at HZ=250 up to 4 ms after a HZ=1000 kernel's)."""
    hz = ""
    with contextlib.suppress(OSError), gzip.open("/proc/config.gz", "rt") as config:
        hz = next((line.strip().removeprefix("CONFIG_") for line in config
                   if line.startswith("CONFIG_HZ=")), "")
    return f"{platform.release()} ({hz})" if hz else platform.release()


def run_once(path: Path, name: str,
             definitions: Mapping[str, str] | None = None) -> tuple[Result, list[float]]:
    try:
        payload = in_child(script_job(path, name, definitions), WORKER_TIMEOUT)
    except (RuntimeError, TimeoutError, json.JSONDecodeError) as exc:
        return Result(name, "fail", None, f"kernel target: {exc}"), []
    raw = payload["result"]
    assert isinstance(raw, dict)
    raw["sent"] = {int(line): text for line, text in raw.get("sent", {}).items()}
    lateness = payload.get("inject_lateness", [])
    assert isinstance(lateness, list)
    return Result(**raw), [float(x) for x in lateness]


def run_on_kernel(path: Path, name: str | None = None, retries: int = RETRIES,
                  definitions: Mapping[str, str] | None = None) -> KernelRun:
    display = name or str(path)
    attempts = 0
    while True:
        attempts += 1
        result, lateness = run_once(path, display, definitions)
        if result.status != "fail" or attempts > retries:
            return KernelRun(result, attempts, lateness)


def probe_timing(samples: int) -> dict[str, list[float]]:
    """The runner's own lateness on this machine (``jitter.probe`` in a worker), in µs."""
    payload = in_child(lambda: dict(probe(samples)), PROBE_TIMEOUT)
    return {key: [float(v) for v in value] for key, value in payload.items()
            if isinstance(value, list)}
