"""Demos of the close path's limits: what happens to a connection the application has let go.

``orphan-retries`` (a FIN never acknowledged), ``fin-timeout`` (an orphaned FIN_WAIT2 whose
peer never closes), ``max-orphans`` (too many orphans: FIN then RST), ``max-tw-buckets``
(a full TIME_WAIT table) and ``time-wait-fin`` (TIME_WAIT re-acknowledges a retransmitted
FIN). The stack dials a kernel server through the lab app and closes first; the kernel's
side misbehaves on request: it never closes (``peer.py hold``), or an nftables rule in the
namespace drops what the stack sends.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from ustcp.demo.netns import (
    KERNEL_ADDR,
    STACK_ADDR,
    Daemon,
    Namespace,
    read_json_line,
)
from ustcp.demo.relay import WAIT, wait_for, watched
from ustcp.demo.story import Story, connections
from ustcp.obs import ladder

HTTP = 80
LAB = 7070
SERVER = 9000  # the kernel's server the stack dials
FIN, RST = 0x01, 0x04


def dial(ns: Namespace, count: int = 1) -> list[str]:
    """The lab app dials the kernel's server ``count`` times, reading its greeting and
    closing first each time; the replies."""
    commands = ";".join([f"dial {KERNEL_ADDR} {SERVER} 0"] * count)
    result = ns.peer("lab", STACK_ADDR, str(LAB), "0", commands)
    replies: list[str] = result["replies"]
    return replies


def hold_server(ns: Namespace, count: int, limit: float) -> subprocess.Popen[bytes]:
    """The kernel's server that never closes first (until :func:`release`)."""
    server = ns.spawn_peer("hold", str(SERVER), str(count), str(limit))
    read_json_line(server)
    return server


def release(server: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Let the kernel's server close its sockets; what it saw and their kernel states."""
    server.send_signal(signal.SIGUSR1)
    held: dict[str, Any] = read_json_line(server)
    return held


def kernel_sockets(ns: Namespace, state: str, port: int) -> str:
    return ns.run(["ss", "-tan", "state", state, f"( sport = :{port} or dport = :{port} )"],
                  check=True).stdout


def drop_stack_fins(story: Story, ns: Namespace) -> None:
    """An nftables rule in the namespace: the kernel never sees a FIN the stack sends to
    the kernel's server (so never acknowledges it)."""
    rule = f"ip saddr {STACK_ADDR} tcp dport {SERVER} tcp flags & fin == fin counter drop"
    story.command(f"nft add rule ip demo in {rule}")
    ns.run(["nft", f"add table ip demo; add chain ip demo in "
            f"{{ type filter hook input priority 0; }}; add rule ip demo in {rule}"],
           check=True)


def fins(conv: ladder.Conversation, source: str) -> list[ladder.Segment]:
    return [seg for seg in conv.segments if seg.flags & FIN and seg.source == source]


# -------------------------------------------------------------------------- orphan-retries

ORPHAN_RETRIES_STORY = """
After close() the connection is an orphan (孤儿连接): no process owns it, and its FIN is the
kernel's to deliver. A FIN that is never acknowledged is retransmitted on the RTO schedule
(doubling) in FIN_WAIT1, and tcp_orphan_retries bounds how long: the connection gives up when
the time that many doublings of the minimum RTO take has passed (tcp_orphan_retries = 0, the
default, means 8, about 100 s), sends a RST and is gone (TCPAbortOnTimeout). The knob applies
to every orphan retransmitting, in FIN_WAIT1, CLOSING or LAST_ACK. Here an nftables rule in
the namespace drops every FIN the stack sends to the kernel's server, so the kernel never
sees it; the lab app reads the server's greeting and closes, with tcp_orphan_retries = 3.
The FIN goes at once; as the last segment in flight it is first probed (a tail loss probe
after about 200 ms), then retransmitted by the RTO three times, 0.2, 0.4 and 0.8 s apart;
the RST follows 3 s (15 x 200 ms) after the first retransmission.
"""


def orphan_retries(story: Story, workdir: Path) -> None:
    story.para(ORPHAN_RETRIES_STORY)
    with Namespace("orphanretries") as ns:
        drop_stack_fins(story, ns)
        daemon = Daemon(ns, workdir, "orphan-retries", apps=[f"lab:{LAB}"],
                        sysctls={"tcp_orphan_retries": 3})
        with watched(daemon) as tally:
            server = hold_server(ns, 1, WAIT)
            story.step("the stack dials the kernel's server, reads its greeting, closes")
            replies = dial(ns)
            story.block(replies[0])
            rows = tally.ctl.ss(port=SERVER)
            story.ss(rows, f"ustcp ss --port {SERVER}   # right after close()")
            wait_for("the orphan's timeout", tally.reached("TcpExtTCPAbortOnTimeout", 1))
            story.step("the stack gave up; the kernel's socket saw:")
            held = release(server)
            story.block(json.dumps(held))
            deltas = tally.poll()
            knobs = tally.ctl.sysctl("tcp_orphan_retries")
        dropped = ns.run(["nft", "list", "table", "ip", "demo"]).stdout
        story.command("nft list table ip demo   # the rule's counter")
        story.block(dropped)
        convs = connections(str(daemon.pcap), f":{SERVER}")
        story.section("on the wire (the stack's capture: it sent every FIN shown)")
        story.ladders(str(daemon.pcap), convs)
        story.counters(deltas, ["TcpExtTCPLossProbes", "TcpExtTCPTimeouts",
                                "TcpExtTCPAbortOnTimeout", "TcpOutRsts"])
        story.knobs(knobs)
    story.section("checks")
    ours = fins(convs[0], f"{STACK_ADDR}:{convs[0].segments[0].sport}") if convs else []
    gaps = [round(b.t - a.t, 2) for a, b in itertools.pairwise(ours)]
    story.check(replies[0].startswith("ok") and any(r["state"] == "FIN-WAIT-1" for r in rows),
                "after close() the orphan sat in FIN-WAIT-1 with its FIN unacknowledged")
    rto_gaps = gaps[-3:]
    story.check(len(ours) >= 4 and deltas.get("TcpExtTCPTimeouts") == 3
                and all(1.6 < b / a < 2.5 for a, b in itertools.pairwise(rto_gaps)),
                f"the FIN was retransmitted by the RTO 3 times, the gaps doubling: {gaps} s")
    resets = [s for s in convs[0].segments if s.flags & RST and s.src == STACK_ADDR] \
        if convs else []
    story.check(len(ours) >= 2 and bool(resets) and resets[0].t > ours[-1].t
                and 2.8 < resets[0].t - ours[1].t < 6
                and deltas.get("TcpExtTCPAbortOnTimeout") == 1,
                "then, 3 s after the first retransmission, the stack sent a RST and forgot "
                "the connection (TcpExtTCPAbortOnTimeout)")
    story.check(held["seen"] == ["ECONNRESET"],
                "the kernel never saw the FIN, only the RST (ECONNRESET)")


# ----------------------------------------------------------------------------- fin-timeout

FIN_TIMEOUT_STORY = """
Once its FIN is acknowledged the closer waits in FIN_WAIT2 for the peer's FIN. A connection
closed with shutdown() may wait there for ever (it can still receive data), but an orphan
(closed with close()) cannot, so Linux lets it wait tcp_fin_timeout seconds (default 60, the
same 2MSL as TIME_WAIT; TCP_LINGER2 per socket), then drops it silently (TCPAbortOnLinger).
ss shows the wait as a timewait timer. The peer, meanwhile, sits in CLOSE_WAIT until its
application closes; if it closes after the orphan is gone, its FIN finds no connection and
is answered with a RST. Here the kernel's server never closes until told, and
tcp_fin_timeout is 3 s.
"""

FIN_TIMEOUT = 3


def fin_timeout(story: Story, workdir: Path) -> None:
    story.para(FIN_TIMEOUT_STORY)
    with Namespace("fintimeout") as ns:
        daemon = Daemon(ns, workdir, "fin-timeout", apps=[f"lab:{LAB}"],
                        sysctls={"tcp_fin_timeout": FIN_TIMEOUT})
        with watched(daemon) as tally:
            server = hold_server(ns, 1, WAIT)
            story.step("the stack dials the kernel's server, reads its greeting, closes")
            replies = dial(ns)
            story.block(replies[0])
            rows = wait_for("FIN-WAIT-2 on the stack", lambda: tally.ctl.ss(state="fin-wait-2"))
            story.ss(rows, "ustcp ss --state fin-wait-2")
            kernel_cw = kernel_sockets(ns, "close-wait", SERVER)
            story.command(f"ss -tan state close-wait '( sport = :{SERVER} )'   # the kernel")
            story.block(kernel_cw)
            wait_for("the FIN-WAIT-2 timeout", tally.reached("TcpExtTCPAbortOnLinger", 1))
            story.step("the orphan is gone; now the kernel's server closes")
            held = release(server)
            story.block(json.dumps(held))
            wait_for("the stack's RST", tally.reached("TcpOutRsts", 1))
            deltas = tally.poll()
            knobs = tally.ctl.sysctl("tcp_fin_timeout")
        convs = connections(str(daemon.pcap), f":{SERVER}")
        story.section("on the wire")
        story.ladders(str(daemon.pcap), convs)
        story.counters(deltas, ["TcpExtTCPAbortOnLinger", "TcpOutRsts", "UstcpTimeWaitEntered"])
        story.knobs(knobs)
    story.section("checks")
    timers = [row["timer"] for row in rows]
    story.check(len(rows) == 1 and timers[0] is not None and timers[0]["name"] == "timewait"
                and timers[0]["expires_ms"] <= FIN_TIMEOUT * 1000,
                f"the orphan waited in FIN-WAIT-2 with timer:(timewait,<{FIN_TIMEOUT}sec,0)")
    story.check(f"{KERNEL_ADDR}:{SERVER}" in kernel_cw,
                "meanwhile the kernel's server socket was in CLOSE-WAIT")
    ours = fins(convs[0], f"{STACK_ADDR}:{convs[0].segments[0].sport}") if convs else []
    theirs = fins(convs[0], f"{KERNEL_ADDR}:{SERVER}") if convs else []
    resets = [s for s in convs[0].segments if s.flags & RST] if convs else []
    story.check(len(ours) == 1 and len(theirs) == 1 and theirs[0].t - ours[0].t >= FIN_TIMEOUT
                and deltas.get("TcpExtTCPAbortOnLinger") == 1,
                f"after {FIN_TIMEOUT} s the stack dropped it silently (TcpExtTCPAbortOnLinger)")
    story.check(len(resets) == 1 and resets[0].src == STACK_ADDR and resets[0].t > theirs[0].t
                and not deltas.get("UstcpTimeWaitEntered"),
                "the kernel's late FIN found no connection: RST, no TIME-WAIT")


# ----------------------------------------------------------------------------- max-orphans

MAX_ORPHANS_STORY = """
Orphans hold memory nobody can reclaim by closing a file descriptor, and a peer that never
acknowledges or never closes can pile them up. tcp_max_orphans caps them: a close() that
would create one more orphan than allowed sends the FIN as usual and then a RST, and the
connection is gone at once (TCPAbortOnMemory; Linux also logs "too many orphaned sockets").
Here tcp_max_orphans is 2 and the kernel's server never closes, so each connection the lab
app closes stays an orphan in FIN_WAIT2 (tcp_fin_timeout is 60 s): the first two do, the
third and fourth are reset. So is the lab app's own connection when the kernel's client hangs
up: its close would make a third orphan too.
"""

MAX_ORPHANS = 2
DIALS = 4


def max_orphans(story: Story, workdir: Path) -> None:
    story.para(MAX_ORPHANS_STORY)
    with Namespace("maxorphans") as ns:
        daemon = Daemon(ns, workdir, "max-orphans", apps=[f"lab:{LAB}"],
                        sysctls={"tcp_max_orphans": MAX_ORPHANS})
        with watched(daemon) as tally:
            server = hold_server(ns, DIALS, WAIT)
            story.step(f"the stack dials the kernel's server {DIALS} times, closing each "
                       "after the greeting")
            replies = dial(ns, DIALS)
            story.block("\n".join(replies))
            wait_for("the resets", tally.reached("TcpExtTCPAbortOnMemory", DIALS - MAX_ORPHANS))
            wait_for("the orphans in FIN-WAIT-2",
                     lambda: len(tally.ctl.ss(state="fin-wait-2")) == MAX_ORPHANS)
            rows = tally.ctl.ss(port=SERVER)
            story.ss(rows, f"ustcp ss --port {SERVER}")
            kernel_cw = kernel_sockets(ns, "close-wait", SERVER)
            story.command(f"ss -tan state close-wait '( sport = :{SERVER} )'   # the kernel")
            story.block(kernel_cw)
            held = release(server)
            story.block(json.dumps(held))
            deltas = tally.poll()
            knobs = tally.ctl.sysctl("tcp_max_orphans", "tcp_fin_timeout")
        convs = connections(str(daemon.pcap), f":{SERVER}")
        story.section("on the wire: the third connection (FIN, then RST)")
        story.ladders(str(daemon.pcap), convs[MAX_ORPHANS:MAX_ORPHANS + 1])
        story.counters(deltas, ["TcpExtTCPAbortOnMemory", "TcpOutRsts", "TcpActiveOpens"])
        story.knobs(knobs)
    story.section("checks")
    story.check(all(r.startswith("ok") for r in replies) and len(replies) == DIALS,
                f"{DIALS} connections, each closed by the stack after the greeting")
    story.check(sum(r["state"] == "FIN-WAIT-2" for r in rows) == MAX_ORPHANS,
                f"{MAX_ORPHANS} orphans wait in FIN-WAIT-2 on the stack")
    story.check(deltas.get("TcpExtTCPAbortOnMemory", 0) >= DIALS - MAX_ORPHANS,
                f"the other {DIALS - MAX_ORPHANS} were reset at close() (TcpExtTCPAbortOnMemory)")
    reset = [[s.flags & (FIN | RST) for s in conv.segments if s.src == STACK_ADDR
              and s.flags & (FIN | RST)][:2] for conv in convs]
    story.check(reset[MAX_ORPHANS:] == [[FIN, RST]] * (DIALS - MAX_ORPHANS)
                and all(r == [FIN] for r in reset[:MAX_ORPHANS]),
                "the reset connections sent their FIN, then the RST (Linux tcp_close)")
    story.check(held["states"] == ["CLOSE_WAIT"] * MAX_ORPHANS
                + ["CLOSE"] * (DIALS - MAX_ORPHANS),
                "on the kernel: the orphans' peers in CLOSE-WAIT, the reset ones CLOSED")


# -------------------------------------------------------------------------- max-tw-buckets

MAX_TW_BUCKETS_STORY = """
Every connection the stack closes first spends 60 s in TIME_WAIT, and a busy server that
closes first (HTTP/1.0, or a keep-alive timeout) accumulates them. tcp_max_tw_buckets bounds
the table: a connection that would enter TIME_WAIT when the table is full closes at once
instead (TCPTimeWaitOverflow; Linux logs "TCP: time wait bucket table overflow"). It loses
the protection TIME_WAIT gives: a stray segment of the old connection, or a retransmitted
FIN, finds no connection. Here tcp_max_tw_buckets is 2 and the kernel makes 4 HTTP/1.0
requests in a row.
"""

TW_BUCKETS = 2
REQUESTS = 4


def max_tw_buckets(story: Story, workdir: Path) -> None:
    story.para(MAX_TW_BUCKETS_STORY)
    with Namespace("maxtw") as ns:
        daemon = Daemon(ns, workdir, "max-tw-buckets", apps=[f"http:{HTTP}"],
                        sysctls={"tcp_max_tw_buckets": TW_BUCKETS})
        with watched(daemon) as tally:
            story.step(f"{REQUESTS} HTTP/1.0 requests, one after the other")
            result = ns.peer("connect-loop", STACK_ADDR, str(HTTP), str(REQUESTS), "0", "5")
            story.block(json.dumps(result))
            wait_for("every close", lambda: tally.poll().get("UstcpTimeWaitEntered", 0)
                     + tally.deltas.get("TcpExtTCPTimeWaitOverflow", 0) >= REQUESTS)
            rows = tally.ctl.ss(state="time-wait")
            story.ss(rows, "ustcp ss --state time-wait")
            deltas = tally.poll()
            knobs = tally.ctl.sysctl("tcp_max_tw_buckets")
        convs = connections(str(daemon.pcap), f":{HTTP}")
        story.section("on the wire: the last connection, closed without TIME-WAIT")
        story.ladders(str(daemon.pcap), convs[-1:])
        story.counters(deltas, ["UstcpTimeWaitEntered", "TcpExtTCPTimeWaitOverflow",
                                "TcpPassiveOpens"])
        story.knobs(knobs)
    story.section("checks")
    story.check(result["ok"] == REQUESTS, f"all {REQUESTS} requests were answered")
    story.check(len(rows) == TW_BUCKETS and deltas.get("UstcpTimeWaitEntered") == TW_BUCKETS,
                f"the first {TW_BUCKETS} connections are in TIME-WAIT, the table is full")
    story.check(deltas.get("TcpExtTCPTimeWaitOverflow") == REQUESTS - TW_BUCKETS,
                f"the other {REQUESTS - TW_BUCKETS} closed at once (TcpExtTCPTimeWaitOverflow)")
    tw_ports = {row["peer"] for row in rows}
    story.check(tw_ports == {conv.client for conv in convs[:TW_BUCKETS]},
                "the TIME-WAIT entries are the first connections' (first come, first kept)")


# --------------------------------------------------------------------------- time-wait-fin

TIME_WAIT_FIN_STORY = """
The second reason for TIME_WAIT (the first is letting old segments die out): the closer's
last ACK may be lost. The peer, in LAST_ACK, then retransmits its FIN; a closer still in
TIME_WAIT acknowledges it again and restarts its 2MSL timer (tcp_timewait_state_process),
so the peer gets to CLOSED. Without TIME_WAIT the FIN would find no connection and the peer
would get a RST ("connection reset" on a connection that had closed cleanly). Here the stack
closes first (HTTP/1.0); an nftables rule drops the stack's first ACK of the kernel's FIN,
the kernel retransmits its FIN after its RTO, and the stack's TIME-WAIT answers.
"""


def time_wait_fin(story: Story, workdir: Path) -> None:
    story.para(TIME_WAIT_FIN_STORY)
    with Namespace("twfin") as ns:
        daemon = Daemon(ns, workdir, "time-wait-fin", apps=[f"http:{HTTP}"])
        with watched(daemon) as tally:
            story.step("an HTTP/1.0 request; the stack's last ACK is dropped once")
            result = ns.peer("lost-last-ack", STACK_ADDR, str(HTTP))
            story.block(json.dumps(result))
            wait_for("the kernel's LAST-ACK to end",
                     lambda: not kernel_sockets(ns, "last-ack", HTTP).count(f":{HTTP}"))
            rows = tally.ctl.ss(state="time-wait")
            story.ss(rows, "ustcp ss --state time-wait")
            deltas = tally.poll()
        convs = connections(str(daemon.pcap), f":{HTTP}")
        story.section("on the wire (the first ACK of the FIN is the one the rule dropped)")
        story.ladders(str(daemon.pcap), convs)
        story.counters(deltas, ["UstcpTimeWaitEntered", "TcpExtTCPACKSkippedTimeWait",
                                "TcpOutRsts"])
    story.section("checks")
    theirs = fins(convs[0], f"{KERNEL_ADDR}:{result['local_port']}") if convs else []
    end = [s for s in convs[0].segments if s.src == STACK_ADDR] if convs else []
    acks = [s for s in end if theirs and s.t > theirs[0].t and not s.flags & (FIN | RST)]
    story.check(result["status"].startswith("HTTP/1.1 200") and result["dropped"] == 1,
                "the request was answered and the rule dropped the stack's last ACK once")
    story.check(len(theirs) >= 2 and theirs[1].seq == theirs[0].seq,
                "the kernel, in LAST-ACK, retransmitted the same FIN")
    story.check(len(acks) >= len(theirs) >= 2 and acks[-1].ack == acks[0].ack
                and not deltas.get("TcpOutRsts"),
                "the stack's TIME-WAIT acknowledged it again (same ack number, no RST)")
    timers = [row["timer"] for row in rows]
    story.check(len(rows) == 1 and timers[0]["name"] == "timewait",
                "the stack is still in TIME-WAIT, and the kernel left LAST-ACK")
