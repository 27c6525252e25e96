"""Demo ``ecn``: Explicit Congestion Notification (RFC 3168) with the kernel as receiver."""

from __future__ import annotations

import sys
from pathlib import Path

from ustcp.demo.netns import STACK_ADDR, Daemon, Namespace
from ustcp.demo.story import Story, connections
from ustcp.obs import ladder

PORT = 80
SIZE = 2_000_000
STORY = """
A router that must drop packets can, instead, mark them: if both ends said they understand
Explicit Congestion Notification (RFC 3168), it sets the IP header's ECN field to
Congestion Experienced (CE) on a packet sent ECN-capable (ECT(0)). The receiver echoes the
mark with the ECE flag on its ACKs until the sender answers with CWR; the sender reduces
its window as it would for a loss, once per window of data (state CWR), but retransmits
nothing, because nothing was lost. Here the kernel (net.ipv4.tcp_ecn=1) asks for ECN in its
SYN, the stack (tcp_ecn=2: accept when asked) agrees in its SYN-ACK, and the stack's link
marks 3 % of its ECN-capable frames CE on their way to the kernel (--impair out:ce=3%).
"""
# The kernel-side client (also used by tests/kernel/test_ecn.py): GET, then print TCP_INFO's
# options byte and the bytes read.
CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=20)
s.sendall(b"GET /bytes/" + sys.argv[2].encode()
          + b" HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
total = 0
while chunk := s.recv(65536):
    total += len(chunk)
print(info[5], total)
"""


def run(story: Story, workdir: Path) -> None:
    story.para(STORY)
    with Namespace("ecn") as ns:
        daemon = Daemon(ns, workdir, "ecn", apps=[f"http:{PORT}"], impair="out:ce=3%",
                        sysctls={"tcp_ecn": 2})
        try:
            ns.run(["sysctl", "-q", "-w", "net.ipv4.tcp_ecn=1"], check=True)
            ce_before = ns.kernel_counter("IpExtInCEPkts")
            daemon.nstat_reset()
            story.step(f"the kernel downloads {SIZE:,} bytes from http://{STACK_ADDR}/")
            done = ns.run([sys.executable, "-c", CLIENT, STACK_ADDR, str(SIZE)], check=True)
            options, total = (int(x) for x in done.stdout.split())
            ce = ns.kernel_counter("IpExtInCEPkts") - ce_before
            deltas = daemon.nstat_deltas()
            knobs = daemon.sysctl("tcp_ecn", "tcp_ecn_fallback")
        finally:
            daemon.stop()
        story.section("the start of the transfer on the wire")
        convs = connections(str(daemon.pcap), f":{PORT}")
        story.ladders(str(daemon.pcap), convs, max_arrows=14)
        segments = convs[0].segments if convs else []
        ece = sum(1 for s in segments if s.flags & ladder.ECE and not s.flags & ladder.SYN)
        cwr = sum(1 for s in segments if s.flags & ladder.CWR and not s.flags & ladder.SYN)
        story.block(f"kernel ACKs with ECE: {ece}; stack segments with CWR: {cwr}")
        story.section("counters")
        story.counters(deltas, ["UstcpImpairCE", "TcpRetransSegs", "TcpOutSegs"])
        story.block(f"kernel: IpExtInCEPkts +{ce}")
        story.knobs(knobs)
        story.section("checks")
        syn = segments[0] if segments else None
        synack = segments[1] if len(segments) > 1 else None
        story.check(syn is not None and syn.flags & ladder.ECE != 0
                    and syn.flags & ladder.CWR != 0
                    and synack is not None and synack.flags & ladder.ECE != 0
                    and not synack.flags & ladder.CWR,
                    "SYN with ECE and CWR, SYN-ACK with ECE: ECN negotiated")
        story.check(bool(options & 8), "the kernel's TCP_INFO shows ECN (TCPI_OPT_ECN)")
        story.check(total > SIZE, "the download completed")
        story.check(ce > 0 and deltas.get("UstcpImpairCE", 0) > 0,
                    "frames were marked CE and reached the kernel (IpExtInCEPkts)")
        story.check(ece > 0 and cwr > 0, "the kernel echoed ECE and the stack answered "
                                         "with CWR")

