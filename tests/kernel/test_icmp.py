"""ICMP errors between the stack and the Linux kernel, both ways: the kernel's nftables
``reject`` answers the stack's SYN with an ICMP error, and ``ustcp connect`` fails at once
with the errno Linux gives (tcp_v4_err / tcp_v6_err); the kernel's UDP socket gets
ECONNREFUSED from the stack's port unreachable."""

from __future__ import annotations

import json
import sys
import time

import pytest

from tests.kernel.nsutil import Daemon, in_ns, netns, ustcp_cmd

pytestmark = pytest.mark.kernel

REJECTS = {  # nft's reject, and what connect() reports for it
    "icmp type port-unreachable": "Connection refused",
    "icmp type host-unreachable": "No route to host",
    "icmpv6 type port-unreachable": "Connection refused",
    "icmpv6 type addr-unreachable": "No route to host",
}

UDP_PROBE = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect((sys.argv[1], 9999))
s.send(b"anyone?")
try:
    s.recv(100)
    print("answered")
except ConnectionRefusedError:
    print("refused")
"""


@pytest.mark.parametrize("reject", list(REJECTS))
def test_connect_fails_at_once_on_the_kernels_icmp_error(reject: str) -> None:
    family, kernel = ("ip6", "fd77::1") if "icmpv6" in reject else ("ip", "10.77.0.1")
    with netns() as ns:
        done = in_ns(ns, "nft", f"add table {family} t; add chain {family} t in "
                     "{ type filter hook input priority 0; }; "
                     f"add rule {family} t in tcp dport 5002 reject with {reject}")
        assert done.returncode == 0, done.stderr
        start = time.monotonic()
        done = in_ns(ns, *ustcp_cmd("connect", kernel, "5002"), input=b"", timeout=60)
        elapsed = time.monotonic() - start
    assert done.returncode == 1
    assert done.stderr.decode().strip().endswith(REJECTS[reject]), done.stderr
    assert elapsed < 15  # at once: the SYN's first retransmission would be 1 s, the end 127 s


@pytest.mark.parametrize("addr", ["10.77.0.2", "fd77::2"])
def test_kernel_udp_socket_is_refused_by_the_stacks_port_unreachable(
        shared_daemon: Daemon, addr: str) -> None:
    done = shared_daemon.run(sys.executable, "-c", UDP_PROBE, addr, timeout=30)
    assert done.stdout.decode().strip() == "refused", done.stderr


@pytest.mark.parametrize("addr", ["10.77.0.2", "fd77::2"])
def test_large_ping_is_reassembled_and_answered_in_fragments(shared_daemon: Daemon,
                                                             addr: str) -> None:
    """The kernel fragments a 3000-byte ping; the stack reassembles it and fragments its
    reply, which the kernel reassembles."""
    v6 = ":" in addr
    before = json.loads(shared_daemon.run(*ustcp_cmd("nstat", "-as", "--json")).stdout)
    done = shared_daemon.run("ping", "-6" if v6 else "-4", "-c", "2", "-s", "3000", "-W", "3",
                             addr, timeout=30)
    assert done.returncode == 0 and b" 0% packet loss" in done.stdout, done.stdout
    after = json.loads(shared_daemon.run(*ustcp_cmd("nstat", "-as", "--json")).stdout)
    name = "Ip6ReasmOKs" if v6 else "IpReasmOKs"
    assert after["kernel"][name] - before["kernel"].get(name, 0) == 2
