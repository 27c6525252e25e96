"""Stopping the daemon (issue 13, defect 5): on SIGTERM the listeners close, connections get
``--shutdown-grace`` seconds, then what remains is reset, so connected peers learn at once
instead of waiting for their own timeouts (curl's 60 s)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kernel.nsutil import ADDR, daemon, netns, ustcp_cmd

pytestmark = pytest.mark.kernel

GRACE = 1.0  # s, --shutdown-grace
BOUND = 10.0  # s: peers must learn within this of the SIGTERM (curl alone would wait 60)

# An idle nc-like peer of the echo app: connects, says so, then waits for the end.
IDLE_PEER = r"""
import json, socket, sys, time
s = socket.create_connection((sys.argv[1], 7), timeout=5)
s.settimeout(60)
print("ready", flush=True)
try:
    end = "eof" if s.recv(100) == b"" else "data"
except ConnectionResetError:
    end = "reset"
except TimeoutError:
    end = "timeout"
print(json.dumps({"end": end, "at": time.monotonic()}), flush=True)
"""


def _established(ns: str, count: int) -> bool:
    done = subprocess.run(["ip", "netns", "exec", ns, *ustcp_cmd("ss", "--json", "--state",
                                                                   "established")],
                          capture_output=True, text=True, timeout=30)
    return done.returncode == 0 and len(json.loads(done.stdout)) >= count


def _kernel_estab_resets(ns: str) -> int:
    """The namespace kernel's TcpEstabResets: established sockets that received a RST."""
    done = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"],
                          capture_output=True, text=True, timeout=10, check=True)
    head, values = [line.split() for line in done.stdout.splitlines()
                    if line.startswith("Tcp:")]
    return int(values[head.index("EstabResets")])


def test_sigterm_resets_connected_peers_promptly_and_exits_0(tmp_path: Path) -> None:
    with netns() as ns, daemon(ns, tmp_path / "serve.log",
                              "--shutdown-grace", str(GRACE)) as d:
        # curl mid-download (rate-limited: it is still reading when the daemon stops)
        curl = subprocess.Popen(
            ["ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-m", "60",
             "--limit-rate", "100K", f"http://{ADDR}/bytes/100000000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        idle = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", IDLE_PEER,
                                 ADDR], stdout=subprocess.PIPE, text=True)
        try:
            assert idle.stdout is not None and idle.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + 30
            while not _established(ns, 2):  # curl and the idle peer, both established
                assert time.monotonic() < deadline, "the two peers never showed in ss"
                time.sleep(0.2)
            resets_before = _kernel_estab_resets(ns)
            sent = time.monotonic()
            d.proc.send_signal(signal.SIGTERM)
            status = d.proc.wait(timeout=30)
            # Both kernel sockets took a RST (curl reads what it had buffered first, at
            # its limited rate, so its exit status would come much later: not waited for).
            while _kernel_estab_resets(ns) - resets_before < 2:
                assert time.monotonic() - sent < BOUND, "the peers were not reset in time"
                time.sleep(0.1)
            reset_within = time.monotonic() - sent
            idle_result = json.loads(idle.stdout.readline())
        finally:
            for proc in (curl, idle):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        log = d.output()
    assert status == 0, log[-2000:]
    assert reset_within < BOUND
    assert idle_result["end"] == "reset" and idle_result["at"] - sent < BOUND, idle_result
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    resets = [e for e in events if e.get("event") == "shutdown_reset"]
    assert resets and resets[0]["connections"] >= 2, log[-2000:]
