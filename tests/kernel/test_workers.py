"""``ustcp serve --workers 2``: two processes, two queues of one TUN device, both serving;
``ustcp nstat`` and ``ustcp ss`` add up the workers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.kernel.nsutil import ADDR, Daemon, daemon, netns

pytestmark = pytest.mark.kernel

CONNECTIONS = 24
ASK = """
import json, sys
from ustcp.obs.ctl import request
print(json.dumps(request(sys.argv[2], sys.argv[1])))
"""


def _ask(d: Daemon, name: str, cmd: str) -> dict[str, Any]:
    """One worker's own answer (``ustcp nstat`` would add up the others)."""
    done = d.run(sys.executable, "-c", ASK, name, cmd, timeout=30)
    assert done.returncode == 0, done.stderr
    reply: dict[str, Any] = json.loads(done.stdout)
    return reply


def test_two_workers_both_serve(tmp_path: Path) -> None:
    with netns() as ns, daemon(ns, tmp_path / "serve.log", "--workers", "2") as d:
        codes = [d.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "10",
                       f"http://{d.addr}/", timeout=30).stdout for _ in range(CONNECTIONS)]
        alone = [_ask(d, name, "nstat")["counters"]
                 for name in ("ustcp-control", "ustcp-control-1")]
        total = json.loads(d.run(sys.executable, "-m", "ustcp.cli", "nstat", "-azj",
                                 timeout=30).stdout)["kernel"]
        listeners = d.run(sys.executable, "-m", "ustcp.cli", "ss", "-tlnH", "sport", "=",
                          ":80", timeout=30).stdout.decode().splitlines()
        # a knob set through the daemon's name reaches every worker
        d.run(sys.executable, "-m", "ustcp.cli", "sysctl", "tcp_syncookies=2", timeout=30)
        knobs = [_ask(d, name, "sysctl")["sysctl"]["tcp_syncookies"]
                 for name in ("ustcp-control", "ustcp-control-1")]
        status = d.stop()
    assert codes == [b"200"] * CONNECTIONS
    opens = [w["TcpPassiveOpens"] for w in alone]
    # The kernel steered flows to both queues: the chance that 24 or more flows all hash
    # to one of two queues is below 2^-23.
    assert all(n > 0 for n in opens), opens
    assert total["TcpPassiveOpens"] == sum(opens) >= CONNECTIONS
    # each worker listens on :80 (its IPv4 and its IPv6 address)
    assert sum(f"{ADDR}:80" in line for line in listeners) == 2
    assert knobs == [2, 2]
    assert status == 0
