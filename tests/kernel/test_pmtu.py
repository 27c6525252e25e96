"""Path MTU discovery against the Linux kernel as a router. The daemon's namespace forwards
between the TUN device and a veth whose near end has MTU 1280; the client namespace at the
far end keeps MTU 1500, so its SYN announces MSS 1460 and only the router's real ICMP
"fragmentation needed" (IPv4) or "packet too big" (IPv6) tells the stack to send less.

    client ns  fd88::2 / 10.88.0.2 (mtu 1500) --veth-- (mtu 1280) 10.88.0.1 / fd88::1
    daemon ns: the kernel routes to 10.77.0.0/24 and fd77::/64 over the TUN device -> stack
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel.nsutil import Daemon, daemon, in_ns, kernel_unavailable, netns, ustcp_cmd
from ustcp.apps.http import content

pytestmark = pytest.mark.kernel

SIZE = 3_000_000
LAB = 7070
ROUTE_TIMEOUT = 20.0


def ip(ns: str, *args: str) -> None:
    done = in_ns(ns, "ip", *args)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.decode()}"


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    if kernel_unavailable() is not None:
        pytest.skip(f"kernel tests: {kernel_unavailable()}")
    log = tmp_path_factory.mktemp("pmtu") / "serve.log"
    with netns() as ns, netns() as client:
        ip(ns, "link", "add", "vr", "type", "veth", "peer", "name", "vc", "netns", client)
        ip(ns, "link", "set", "vr", "mtu", "1280", "up")
        ip(ns, "addr", "add", "10.88.0.1/24", "dev", "vr")
        ip(ns, "-6", "addr", "add", "fd88::1/64", "dev", "vr", "nodad")
        in_ns(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        ip(client, "link", "set", "vc", "up")
        ip(client, "addr", "add", "10.88.0.2/24", "dev", "vc")
        ip(client, "-6", "addr", "add", "fd88::2/64", "dev", "vc", "nodad")
        ip(client, "route", "add", "default", "via", "10.88.0.1")
        ip(client, "-6", "route", "add", "default", "via", "fd88::1")
        with daemon(ns, log, "--app", "http:80", "--app", f"lab:{LAB}") as d:
            yield d, client


def ss_rows(d: Daemon, port: str) -> list[dict[str, object]]:
    done = d.run(*ustcp_cmd("ss", "-ti", "--json"))
    assert done.returncode == 0, done.stderr
    return [r for r in json.loads(done.stdout) if r["peer"].endswith(port)]


# A kernel client in the far namespace that reads the first 64 KB (the stack can only have
# sent them through the router at the lowered MSS), then waits, its window closed, until the
# test has looked at the connection with ss; then reads the rest and prints its hash. Its
# receive buffer is fixed small: autotuned, it takes the whole body while the reader
# waits, and the connection is closed before ss looks (1 run in 18 under load).
PAUSED_READER = """
import hashlib, socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.settimeout(60)
s.connect((sys.argv[1], 80))
s.sendall(b"GET /bytes/" + sys.argv[2].encode()
          + b" HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
data = b""
while len(data) < 65536 and (chunk := s.recv(65536)):
    data += chunk
print("paused", flush=True)
sys.stdin.readline()
while chunk := s.recv(65536):
    data += chunk
body = data.split(b"\\r\\n\\r\\n", 1)[1]
print(len(body), hashlib.sha256(body).hexdigest(), flush=True)
"""


@pytest.mark.parametrize(("stack", "mss_after"), [("10.77.0.2", 1280 - 40 - 12),
                                                  ("fd77::2", 1280 - 60 - 12)])
def test_download_through_a_1280_router_lowers_the_mss(
        routed: tuple[Daemon, str], stack: str, mss_after: int) -> None:
    d, client = routed
    before = json.loads(d.run(*ustcp_cmd("nstat", "-a", "-s", "--json")).stdout)["kernel"]
    reader = subprocess.Popen(["ip", "netns", "exec", client, sys.executable, "-c",
                               PAUSED_READER, stack, str(SIZE)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline() == "paused\n", reader.stderr
        # The reader holds the connection open for as long as the test looks.
        rows: list[dict[str, object]] = []
        deadline = time.monotonic() + ROUTE_TIMEOUT
        while time.monotonic() < deadline:
            rows = [r for r in ss_rows(d, "") if str(r["local"]).endswith(":80")
                    and r["state"] == "ESTAB"]
            if rows and rows[0]["info"]["mss"] == mss_after:  # type: ignore[index]
                break
        reader.stdin.write("go\n")
        reader.stdin.flush()
        out, err = reader.communicate(timeout=60)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    expected = hashlib.sha256()
    for chunk in content(SIZE):
        expected.update(chunk)
    assert out.split() == [str(SIZE), expected.hexdigest()]
    assert rows, "no established connection seen in ustcp ss"
    info = rows[0]["info"]
    assert info["mss"] == mss_after and info["pmtu"] == 1280, info  # type: ignore[index]
    after = json.loads(d.run(*ustcp_cmd("nstat", "-a", "-s", "--json")).stdout)["kernel"]
    name = "Icmp6InPktTooBigs" if ":" in stack else "IcmpInDestUnreachs"
    assert after.get(name, 0) > before.get(name, 0)
    assert after["TcpRetransSegs"] > before.get("TcpRetransSegs", 0)


def dial(d: Daemon, host: str, port: int) -> tuple[str, float]:
    start = time.monotonic()
    done = d.run(sys.executable, "-m", "ustcp.demo.peer", "lab", "10.77.0.2", str(LAB), "0",
                 f"dial {host} {port} 0", timeout=30)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout.decode().splitlines()[0])["replies"][0]
    return reply, time.monotonic() - start


def test_no_route_beyond_the_router_fails_at_once(routed: tuple[Daemon, str]) -> None:
    d, _ = routed
    reply, seconds = dial(d, "10.99.0.1", 80)  # the router has no route: net unreachable
    assert reply.startswith("error ENETUNREACH"), reply
    assert seconds < 5


def test_closed_port_beyond_the_router_refused_by_icmp(routed: tuple[Daemon, str]) -> None:
    d, client = routed
    done = in_ns(client, "nft", "add table inet t; add chain inet t in "
                 "{ type filter hook input priority 0; }; "
                 "add rule inet t in tcp dport 81 reject")  # ICMP port unreachable
    assert done.returncode == 0, done.stderr
    for host in ("10.88.0.2", "fd88::2"):
        reply, seconds = dial(d, host, 81)
        assert reply.startswith("error ECONNREFUSED"), reply
        assert seconds < 5


@pytest.mark.parametrize("probing", [1])
def test_black_hole_survived_with_tcp_mtu_probing(tmp_path: Path, probing: int) -> None:
    """--impair pmtu=1280:blackhole drops the stack's big segments without a word; with
    tcp_mtu_probing=1 the stack suspects a black hole after tcp_retries1's worth of
    retransmitting, falls back to tcp_base_mss and probes up (RFC 4821)."""
    size = 1_000_000
    with netns() as ns, daemon(ns, tmp_path / "serve.log", "--impair", "pmtu=1280:blackhole",
                               "--sysctl", f"tcp_mtu_probing={probing}") as d:
        out = tmp_path / "body"
        done = d.run("curl", "-s", "-S", "-m", "50", "-o", str(out),
                     f"http://10.77.0.2/bytes/{size}", timeout=60)
        assert done.returncode == 0, done.stderr
        counters = json.loads(d.run(*ustcp_cmd("nstat", "-a", "--json")).stdout)["kernel"]
    expected = hashlib.sha256()
    for chunk in content(size):
        expected.update(chunk)
    assert hashlib.sha256(out.read_bytes()).digest() == expected.digest()
    assert counters["UstcpImpairPmtuDrops"] > 0 and counters["TcpExtTCPMTUPSuccess"] > 0
