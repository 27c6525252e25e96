"""TCP Fast Open with the kernel as the client: ``curl --tcp-fastopen`` against the daemon.

The first connection asks for a cookie (an empty Fast Open option) and gets one on the
SYN-ACK; the kernel keeps it (tcp_metrics) and the second connection sends its HTTP
request in the SYN, which the daemon accepts and acknowledges at once. Both sides count
it: the kernel TcpExtTCPFastOpenActive, the stack TcpExtTCPFastOpenCookieReqd and
TcpExtTCPFastOpenPassive.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.kernel.nsutil import daemon, in_ns, netns, ustcp_cmd

pytestmark = pytest.mark.kernel


def kernel_counter(ns: str, name: str) -> int:
    done = in_ns(ns, "nstat", "-asz", name, timeout=20)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.decode().splitlines()[1:]]
    return next(int(row[1]) for row in rows if row[0] == name)


def stack_counters(ns: str) -> dict[str, int]:
    done = in_ns(ns, *ustcp_cmd("nstat", "-a", "--json"), timeout=20)
    assert done.returncode == 0, done.stderr
    counters: dict[str, int] = json.loads(done.stdout)["kernel"]
    return counters


def test_curl_gets_a_cookie_then_sends_its_request_in_the_syn(tmp_path: Path) -> None:
    with netns() as ns, daemon(ns, tmp_path / "serve.log",
                               "--sysctl", "tcp_fastopen=0x403") as d:
        assert in_ns(ns, "sysctl", "-q", "-w", "net.ipv4.tcp_fastopen=1").returncode == 0
        in_ns(ns, "ip", "tcp_metrics", "flush", "all")  # the readiness probe's metrics
        before = stack_counters(ns)
        active = kernel_counter(ns, "TcpExtTCPFastOpenActive")
        url = f"http://{d.addr}/bytes/1000"
        for _ in range(2):
            done = d.run("curl", "-s", "-S", "-m", "20", "--tcp-fastopen", "-o", "/dev/null",
                         "-w", "%{http_code}", url, timeout=30)
            assert done.stdout == b"200", done.stderr
        after = stack_counters(ns)

        def delta(name: str) -> int:
            return after.get(name, 0) - before.get(name, 0)

        assert delta("TcpExtTCPFastOpenCookieReqd") == 1
        assert delta("TcpExtTCPFastOpenPassive") == 1
        assert delta("TcpExtTCPFastOpenPassiveFail") == 0
        assert kernel_counter(ns, "TcpExtTCPFastOpenActive") == active + 1
