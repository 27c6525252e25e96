"""ECN with the kernel: its tcp_ecn=1 client negotiates ECN with the daemon (the kernel's
TCP_INFO says so), and a run whose frames the link marks CE (``--impair out:ce=3%``)
completes with the marks counted on both sides. The sender's once-per-window response is
checked on virtual time in tests/engine/test_ecn.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.kernel.nsutil import daemon, in_ns, netns, ustcp_cmd
from ustcp.demo import ecn as ecn_demo

pytestmark = pytest.mark.kernel

TCPI_OPT_ECN = 8
def kernel_counter(ns: str, name: str) -> int:
    done = in_ns(ns, "nstat", "-asz", name, timeout=20)
    rows = [line.split() for line in done.stdout.decode().splitlines()[1:]]
    return next((int(row[1]) for row in rows if row and row[0] == name), 0)


def test_kernel_client_negotiates_ecn_and_ce_marks_slow_the_sender(tmp_path: Path) -> None:
    with netns() as ns, daemon(ns, tmp_path / "serve.log", "--impair", "out:ce=3%",
                               "--sysctl", "tcp_ecn=2") as d:
        assert in_ns(ns, "sysctl", "-q", "-w", "net.ipv4.tcp_ecn=1").returncode == 0
        ce_before = kernel_counter(ns, "IpExtInCEPkts")
        size = 3_000_000
        done = d.run("python3", "-c", ecn_demo.CLIENT, d.addr, str(size), timeout=60)
        assert done.returncode == 0, done.stderr
        options, total = (int(x) for x in done.stdout.split())
        assert options & TCPI_OPT_ECN, options  # the kernel's TCP_INFO: ECN negotiated
        assert total > size  # the body and the headers: the run completed
        assert kernel_counter(ns, "IpExtInCEPkts") > ce_before  # marks reached the kernel
        stack = d.run(*ustcp_cmd("nstat", "-a", "--json"), timeout=20)

        counters = json.loads(stack.stdout)["kernel"]
        assert counters["UstcpImpairCE"] > 0
