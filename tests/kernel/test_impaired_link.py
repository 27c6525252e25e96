"""5 MB each way between the kernel and the stack through a bad link (issue 5): 2% loss,
10 ms delay, 2% reordering, 1% duplication and 0.5% corruption in both directions, via
``ustcp serve --impair``. Hashes must match; the counters must show the damage."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from tests.kernel.nsutil import daemon, netns
from ustcp.apps.http import content

IMPAIR = "loss=2%,delay=10ms,reorder=2%,duplicate=1%,corrupt=0.5%,seed=11"
SIZE = 5_000_000


@pytest.mark.parametrize("offload", ["on", "off"])
def test_5mb_each_way_through_a_bad_link(offload: str, tmp_path: Path) -> None:
    body = os.urandom(SIZE)
    (tmp_path / "body").write_bytes(body)
    with netns() as ns, daemon(ns, tmp_path / "serve.log", "--impair", IMPAIR,
                              "--offload", offload) as d:
        down = d.run("curl", "-s", "-m", "120", f"http://{d.addr}/bytes/{SIZE}", timeout=150)
        up = d.run("curl", "-s", "-m", "120", "--data-binary", f"@{tmp_path / 'body'}",
                   f"http://{d.addr}/sha256", timeout=150)
        stats = d.run(sys.executable, "-m", "ustcp.cli", "nstat", "-a", "-j")
    assert down.returncode == 0 and up.returncode == 0, (down.stderr, up.stderr)
    expected = hashlib.sha256()
    for chunk in content(SIZE):
        expected.update(chunk)
    assert hashlib.sha256(down.stdout).digest() == expected.digest()
    assert up.stdout.decode().strip() == hashlib.sha256(body).hexdigest()
    data = json.loads(stats.stdout)
    counters = data["kernel"]
    assert counters["UstcpImpairCorrupt"] > 0 and counters["UstcpImpairLoss"] > 0
    caught = sum(v for k, v in counters.items()
                 if k in ("TcpInCsumErrors", "IpInHdrErrors") or k.startswith("UstcpDrop"))
    assert caught > 0  # corrupted frames were dropped by checksum checks, not delivered
    assert counters["TcpRetransSegs"] > 0
