"""The daemon over IPv6 against the Linux kernel: nc -6, ping -6, ``ustcp connect`` to a
kernel server on a v6 literal, ss and nstat showing v6 (curl -6 with 20 MB each way and
their hashes is in test_daemon.py, beside curl -4).

One daemon with the defaults, dual-stack (``--addr6 fd77::2``, ``--peer6 fd77::1/64``),
serves the module's tests in a namespace of its own.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.kernel.nsutil import Daemon, connect_to_kernel_server, peer_cmd, ustcp_cmd
from ustcp.defaults import DEFAULT_ADDR6, DEFAULT_PEER6

pytestmark = pytest.mark.kernel

ADDR6 = DEFAULT_ADDR6
PEER6 = DEFAULT_PEER6.partition("/")[0]


@pytest.fixture(scope="module")
def v6_daemon(shared_daemon: Daemon) -> Daemon:
    """The module's daemon: dual-stack is the default."""
    return shared_daemon


def nstat(d: Daemon) -> dict[str, int]:
    done = d.run(*ustcp_cmd("nstat", "-a", "-s", "--json"))
    assert done.returncode == 0, done.stderr
    counters: dict[str, int] = json.loads(done.stdout)["kernel"]
    return counters


def test_ping_6(v6_daemon: Daemon) -> None:
    if shutil.which("ping") is None:
        pytest.skip("ping is not installed (make sysdeps)")
    before = nstat(v6_daemon)
    done = v6_daemon.run("ping", "-6", "-c", "3", "-W", "2", ADDR6, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert b" 0% packet loss" in done.stdout
    after = nstat(v6_daemon)
    assert after["Icmp6InEchos"] - before.get("Icmp6InEchos", 0) == 3
    assert after["Icmp6OutEchoReplies"] - before.get("Icmp6OutEchoReplies", 0) == 3
    assert after["Icmp6InType128"] - before.get("Icmp6InType128", 0) == 3


def test_nc_6_echo(v6_daemon: Daemon) -> None:
    if shutil.which("nc") is None:
        pytest.skip("nc is not installed (make sysdeps)")
    data = os.urandom(200_000).hex().encode()
    done = v6_daemon.run("nc", "-6", "-N", "-w", "10", ADDR6, "7", input=data, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


def test_python_echo_over_v6(v6_daemon: Daemon) -> None:
    done = v6_daemon.run(*peer_cmd("echo", ADDR6, "7", str(2_000_000)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == "ok"


def test_closed_port_is_refused_at_once(v6_daemon: Daemon) -> None:
    done = v6_daemon.run(*peer_cmd("refused", ADDR6, "81"), timeout=30)
    outcome, seconds = done.stdout.decode().split()
    assert outcome == "ConnectionRefusedError"
    assert float(seconds) < 0.9


def test_ss_and_nstat_show_v6(v6_daemon: Daemon) -> None:
    done = v6_daemon.run(*ustcp_cmd("ss", "-ta", "--json"))
    assert done.returncode == 0, done.stderr
    listening = {s["local"] for s in json.loads(done.stdout) if s["state"] == "LISTEN"}
    assert {f"[{ADDR6}]:80", "10.77.0.2:80"} <= listening
    counters = nstat(v6_daemon)
    assert counters["Ip6InReceives"] > 0 and counters["Ip6OutRequests"] > 0
    filtered = v6_daemon.run(*ustcp_cmd("ss", "-tl", "--json", "src", f"[{ADDR6}]:80"))
    assert [s["local"] for s in json.loads(filtered.stdout)] == [f"[{ADDR6}]:80"]


def test_connect_6_to_a_kernel_server(empty_ns: str) -> None:
    connect_to_kernel_server(empty_ns, PEER6, "ustcpc6")
