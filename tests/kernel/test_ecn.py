"""ECN with the kernel: its tcp_ecn=1 client negotiates ECN with the daemon (the kernel's
TCP_INFO says so), and a run whose frames the link marks CE (``--impair out:ce=3%``)
completes with the marks counted on both sides. The capture of that run shows the stack's
response as the kernel receives it: the kernel echoes ECE on many ACKs, the stack cuts its
cwnd (CWR on its next data) at most once per window: a second CWR only after the kernel has
acknowledged the data sent before the first (tcp_enter_cwr's high_seq). How much each cut
takes is checked on virtual time in tests/engine/test_ecn.py."""

from __future__ import annotations

import json
import socket
from itertools import pairwise
from pathlib import Path

import dpkt
import pytest

from tests.kernel.nsutil import daemon, in_ns, netns, ustcp_cmd
from ustcp.demo import ecn as ecn_demo
from ustcp.tcp.seq import before

pytestmark = pytest.mark.kernel

TCPI_OPT_ECN = 8


def cwr_rounds(pcap: Path, stack_addr: str) -> tuple[list[int], int, list[int]]:
    """From a capture: the sequence numbers of the stack's CWR data segments, how many ACKs
    of the kernel carried ECE, and each CWR sent before the kernel had acknowledged the
    previous one's sequence number (a second cut in the same window)."""
    stack = socket.inet_aton(stack_addr)
    cwr: list[tuple[int, int]] = []  # (frame, seq)
    acks: list[tuple[int, int]] = []  # (frame, ack) of the kernel
    ece = 0
    with pcap.open("rb") as f:
        for i, (_, frame) in enumerate(dpkt.pcap.Reader(f)):
            if frame[0] >> 4 != 4:
                continue  # IPv6 (the kernel's router solicitations)
            ip = dpkt.ip.IP(frame)
            tcp = ip.data
            if not isinstance(tcp, dpkt.tcp.TCP) or tcp.flags & dpkt.tcp.TH_SYN:
                continue
            if ip.src == stack:
                if tcp.flags & dpkt.tcp.TH_CWR:
                    cwr.append((i, tcp.seq))
            elif tcp.flags & dpkt.tcp.TH_ACK:
                acks.append((i, tcp.ack))
                ece += bool(tcp.flags & dpkt.tcp.TH_ECE)
    early = [seq2 for (i1, seq1), (i2, seq2) in pairwise(cwr)
             if not any(i1 < j < i2 and not before(ack, seq1) for j, ack in acks)]
    return [seq for _, seq in cwr], ece, early


def kernel_counter(ns: str, name: str) -> int:
    done = in_ns(ns, "nstat", "-asz", name, timeout=20)
    rows = [line.split() for line in done.stdout.decode().splitlines()[1:]]
    return next((int(row[1]) for row in rows if row and row[0] == name), 0)


def test_kernel_client_negotiates_ecn_and_ce_marks_slow_the_sender(tmp_path: Path) -> None:
    pcap = tmp_path / "ecn.pcap"
    with netns() as ns, daemon(ns, tmp_path / "serve.log", "--impair", "out:ce=3%",
                               "--sysctl", "tcp_ecn=2", "--pcap", str(pcap)) as d:
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
    # The readiness probes (GET /) are short exchanges without marks; the download is the
    # capture's one long flow.
    cwr, ece, early = cwr_rounds(pcap, d.addr)
    assert len(cwr) >= 2, cwr  # the stack answered the echoes more than once
    assert ece >= len(cwr), (ece, len(cwr))  # every cut answers an echo
    assert not early, early  # and echoes within a window already cut are not answered
