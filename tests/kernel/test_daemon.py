"""``ustcp serve`` against the Linux kernel: curl, nc-like clients, ping, ``ustcp connect``.

Most tests share one daemon (module scope) in a namespace of their own; the tests that need
their own process or an empty namespace make one.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import dpkt
import pytest

from tests.kernel.nsutil import (
    ADDR,
    PEER_ADDR,
    Daemon,
    connect_to_kernel_server,
    daemon,
    in_ns,
    netns,
    peer_cmd,
    ustcp_cmd,
)
from ustcp.apps.http import content
from ustcp.defaults import DEFAULT_ADDR6 as ADDR6

pytestmark = pytest.mark.kernel

MB20 = 20_000_000


def curl(d: Daemon, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return d.run("curl", "-s", "-S", "-m", str(int(timeout) - 5), *args, timeout=timeout)


def test_get_root_names_the_stack(shared_daemon: Daemon) -> None:
    done = curl(shared_daemon, f"http://{shared_daemon.addr}/")
    assert done.returncode == 0, done.stderr
    assert b"ustcp" in done.stdout


# Both versions of the dual-stack daemon: curl -4 to 10.77.0.2, curl -6 to [fd77::2]
VERSIONS = pytest.mark.parametrize(("flag", "host"), [("-4", ADDR), ("-6", f"[{ADDR6}]")])


@VERSIONS
def test_get_bytes_20mb_has_the_length_and_repeats(shared_daemon: Daemon, flag: str,
                                                   host: str) -> None:
    url = f"http://{host}/bytes/{MB20}"
    first = curl(shared_daemon, flag, url)
    second = curl(shared_daemon, flag, url)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert len(first.stdout) == MB20
    assert hashlib.sha256(first.stdout).digest() == hashlib.sha256(second.stdout).digest()
    expected = hashlib.sha256()
    for chunk in content(MB20):
        expected.update(chunk)
    assert hashlib.sha256(first.stdout).digest() == expected.digest()


@VERSIONS
def test_post_sha256_of_20mb(shared_daemon: Daemon, tmp_path: Path, flag: str,
                             host: str) -> None:
    body = os.urandom(MB20)
    path = tmp_path / "body"
    path.write_bytes(body)
    done = curl(shared_daemon, flag, "--data-binary", f"@{path}",
                "-H", "Content-Type: application/octet-stream", f"http://{host}/sha256")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == hashlib.sha256(body).hexdigest()


def test_echo_5mb_byte_for_byte(shared_daemon: Daemon) -> None:
    done = shared_daemon.run(*peer_cmd("echo", shared_daemon.addr, "7", str(5_000_000)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == "ok"


def test_50_parallel_curls(shared_daemon: Daemon) -> None:
    n = 200_000
    url = f"http://{shared_daemon.addr}/bytes/{n}"

    def one(_: int) -> tuple[int, int, bytes]:
        done = curl(shared_daemon, url)
        return done.returncode, len(done.stdout), done.stderr

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    failures = [r for r in results if r[:2] != (0, n)]
    assert not failures, failures[:3]


def test_ping(shared_daemon: Daemon) -> None:
    if shutil.which("ping") is None:
        pytest.skip("ping is not installed (make sysdeps)")
    done = shared_daemon.run("ping", "-c", "3", "-W", "2", shared_daemon.addr, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert b" 0% packet loss" in done.stdout


def test_closed_port_is_refused_at_once(shared_daemon: Daemon) -> None:
    done = shared_daemon.run(*peer_cmd("refused", shared_daemon.addr, "81"), timeout=30)
    outcome, seconds = done.stdout.decode().split()
    assert outcome == "ConnectionRefusedError"
    assert float(seconds) < 0.9  # a RST, not a SYN retransmission timeout (1 s)
    curled = curl(shared_daemon, f"http://{shared_daemon.addr}:81/")
    assert curled.returncode == 7  # curl: failed to connect


def test_nstat_counts_passive_opens(shared_daemon: Daemon) -> None:
    assert curl(shared_daemon, f"http://{shared_daemon.addr}/").returncode == 0
    done = shared_daemon.run(*ustcp_cmd("nstat", "-a", "--json"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kernel"]["TcpPassiveOpens"] > 0
    text = shared_daemon.run(*ustcp_cmd("nstat", "-a"))
    assert text.returncode == 0
    rows = dict(line.split() for line in text.stdout.decode().splitlines()[1:])
    assert int(rows["TcpPassiveOpens"]) > 0


def test_nstat_gives_deltas_since_the_last_look(shared_daemon: Daemon) -> None:
    """As Linux's nstat: increments since the previous run (-n updates the history only,
    -s leaves it alone), -a absolute values."""
    assert shared_daemon.run(*ustcp_cmd("nstat", "-n")).stdout == b""
    for _ in range(3):
        assert curl(shared_daemon, f"http://{shared_daemon.addr}/").returncode == 0
    peek = json.loads(shared_daemon.run(*ustcp_cmd("nstat", "-s", "-j")).stdout)["kernel"]
    done = shared_daemon.run(*ustcp_cmd("nstat", "--json", "TcpPassive*"))
    assert json.loads(done.stdout) == {"kernel": {"TcpPassiveOpens": 3}}
    assert peek["TcpPassiveOpens"] == 3
    absolute = json.loads(shared_daemon.run(*ustcp_cmd("nstat", "-aj")).stdout)["kernel"]
    assert absolute["TcpPassiveOpens"] > 3


def test_ss_lists_the_listeners(shared_daemon: Daemon) -> None:
    done = shared_daemon.run(*ustcp_cmd("ss", "-ta", "--json"))
    assert done.returncode == 0, done.stderr
    listening = {s["local"] for s in json.loads(done.stdout) if s["state"] == "LISTEN"}
    assert {f"{shared_daemon.addr}:{port}" for port in (7, 9, 19, 80)} <= listening


def test_connect_to_a_kernel_server(empty_ns: str) -> None:
    connect_to_kernel_server(empty_ns, PEER_ADDR, "ustcpc0")


def test_connect_refused_is_one_line_and_status_1(empty_ns: str) -> None:
    done = in_ns(empty_ns, *ustcp_cmd("connect", PEER_ADDR, "5001"), input=b"", timeout=60)
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0].lower(), lines


def test_unknown_sysctl_exits_2_with_one_line(empty_ns: str) -> None:
    done = in_ns(empty_ns, *ustcp_cmd("serve", "--sysctl", "bogus=1"), timeout=30)
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "bogus" in lines[0], lines
    bad_value = in_ns(empty_ns, *ustcp_cmd("serve", "--sysctl", "tcp_syncookies=x"), timeout=30)
    assert bad_value.returncode == 2
    assert len(bad_value.stderr.decode().strip().splitlines()) == 1


def test_sigint_and_sigterm_shut_down_cleanly(tmp_path: Path) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        with netns() as ns, daemon(ns, tmp_path / f"serve-{sig.name}.log") as d:
            d.proc.send_signal(sig)
            assert d.proc.wait(10) == 0, d.output()
            deadline = time.monotonic() + 5
            while in_ns(ns, "ip", "link", "show", "ustcp0", timeout=10).returncode == 0:
                assert time.monotonic() < deadline, "the TUN device outlived the daemon"
                time.sleep(0.1)


def test_pcap_records_the_exchange(tmp_path: Path) -> None:
    capture = tmp_path / "serve.pcap"
    with netns() as ns, daemon(ns, tmp_path / "serve.log", "--pcap", str(capture)) as d:
        assert curl(d, f"http://{d.addr}/bytes/100000").returncode == 0
        assert d.stop() == 0
    with capture.open("rb") as f:
        frames = [bytes(buf) for _, buf in dpkt.pcap.Reader(f)]
    tcp = [dpkt.ip.IP(frame) for frame in frames if frame[0] >> 4 == 4 and frame[9] == 6]
    assert any(ip.data.flags & dpkt.tcp.TH_SYN for ip in tcp)
    assert sum(len(ip.data.data) for ip in tcp if ip.data.sport == 80) >= 100_000
