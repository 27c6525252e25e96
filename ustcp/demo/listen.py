"""Demos of the listen path: ``syn-queue``, ``accept-queue`` and ``syn-flood``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ustcp
from ustcp.demo.cookie import explain as explain_cookie
from ustcp.demo.netns import KERNEL_ADDR, STACK_ADDR, Daemon, DemoError, Namespace, read_json_line
from ustcp.demo.story import Story, connections

HTTP = 80
LAB = 7070
SLOW = 8080  # the lab's listeners that never accept: 8080, 8081
SYNFLOOD = Path(ustcp.__file__).resolve().parents[1] / "tools" / "synflood.py"
SPOOFED_NET = "10.77.0.2/31"  # the target and one spoofed source, 10.77.0.3, nobody's address




def _flood(ns: Namespace, *, rate: int, duration: float | None = None,
           count: int | None = None) -> subprocess.Popen[bytes]:
    if not SYNFLOOD.exists():
        raise DemoError(f"{SYNFLOOD} is missing: the syn-flood demos need the source checkout")
    args = [sys.executable, str(SYNFLOOD), "--target", STACK_ADDR, "--port", str(HTTP),
            "--source-net", SPOOFED_NET, "--rate", str(rate), "--seed", "1", "--json"]
    if duration is not None:
        args += ["--duration", str(duration)]
    if count is not None:
        args += ["--count", str(count), "--duration", "10"]
    return ns.spawn(args, stdout=subprocess.PIPE)


# ------------------------------------------------------------------------------ syn-queue

SYN_QUEUE_STORY = """
Between the SYN-ACK and the final ACK a connection is half-open: Linux keeps a small request
in the listener's SYN queue (半连接队列), bounded by the listen backlog (min(backlog,
somaxconn)) and tcp_max_syn_backlog. A SYN flood fills it with requests from addresses that
will never answer; each stays until its SYN-ACK has been retransmitted tcp_synack_retries
times (1, 2, 4, ... s). With tcp_syncookies=0 a full queue means every new SYN is dropped
(TCPReqQFullDrop, ListenDrops), including a real client's: its connect() hangs in SYN-SENT,
retransmitting its SYN, until the spoofed requests time out. Here the backlog is 8 and
tcp_synack_retries is 1, so the queue drains after 1 + 2 = 3 seconds.
"""

SYN_QUEUE_KNOBS = ("tcp_syncookies", "somaxconn", "tcp_max_syn_backlog", "tcp_synack_retries")


def syn_queue(story: Story, workdir: Path) -> None:
    story.para(SYN_QUEUE_STORY)
    with Namespace("synq") as ns:
        daemon = Daemon(ns, workdir, "syn-queue", apps=[f"http:{HTTP}"],
                        sysctls={"tcp_syncookies": 0, "somaxconn": 8, "tcp_synack_retries": 1})
        try:
            daemon.nstat_reset()
            story.step("32 spoofed SYNs from 10.77.0.3 (tools/synflood.py), which never answers")
            flood = _flood(ns, rate=200, count=32)
            sent = read_json_line(flood)["sent"]
            rows = daemon.ss(port=HTTP)
            story.ss(rows, f"ustcp ss --port {HTTP}")
            story.step("a real client (the kernel) tries to connect: its SYNs are dropped")
            first = ns.peer("connect-loop", STACK_ADDR, str(HTTP), "1", "0", "2.5")
            story.block(json.dumps(first))
            during = daemon.nstat_deltas()
            time.sleep(1.0)
            story.step("the spoofed requests have timed out by now; the client tries again")
            second = ns.peer("connect-loop", STACK_ADDR, str(HTTP), "1", "0", "2")
            story.block(json.dumps(second))
            after = daemon.nstat_deltas()
            knobs = daemon.sysctl(*SYN_QUEUE_KNOBS)
        finally:
            daemon.stop()
        story.section("the real client's connections on the wire")
        story.ladders(str(daemon.pcap), connections(str(daemon.pcap), f"{KERNEL_ADDR}:"))
        story.section("counters")
        names = ["TcpExtTCPReqQFullDrop", "TcpExtListenDrops", "TcpExtSyncookiesSent",
                 "UstcpSynRecvTimeout", "TcpPassiveOpens"]
        story.counters(during, names, "during the flood and the first attempt")
        story.counters(after, names, "during the second attempt")
        story.knobs(knobs)
        story.section("checks")
        listen = [r for r in rows if r["state"] == "LISTEN"]
        story.check(bool(listen) and listen[0]["syn_queue"] == 8
                    and sum(r["state"] == "SYN-RECV" for r in rows) == 8,
                    "ustcp ss shows the SYN queue full: synq:8 and 8 SYN-RECV requests")
        story.check(during.get("TcpExtTCPReqQFullDrop", 0) >= sent - 8
                    and during.get("TcpExtSyncookiesSent", 0) == 0,
                    "SYNs beyond the queue were dropped (TcpExtTCPReqQFullDrop), no cookies")
        story.check(first["ok"] == 0, "the real client could not connect while the queue was full")
        timeouts = during.get("UstcpSynRecvTimeout", 0) + after.get("UstcpSynRecvTimeout", 0)
        story.check(timeouts >= 8 and second["ok"] == 1,
                    "once the requests timed out (UstcpSynRecvTimeout) the client got in")


# --------------------------------------------------------------------------- accept-queue

ACCEPT_QUEUE_STORY = """
When the handshake completes, the connection moves from the SYN queue to the accept queue
(全连接队列), where it waits for the application's accept(). The queue holds min(backlog,
somaxconn) connections (Linux admits one more: it is full when its length exceeds the
backlog). An application that accepts too slowly lets it fill: ss then shows the listener's
Recv-Q (queued connections) above its Send-Q (the limit). What happens to a final ACK that
finds the queue full is tcp_abort_on_overflow's choice: 0 drops the ACK, so the server stays
in SYN-RECV and retransmits its SYN-ACK, and the connection completes later if room appears
(the client, which believes it is connected, notices nothing yet); 1 answers with a RST and
the client sees "connection reset by peer". Both count ListenOverflows. Here the lab app
listens with backlog 4 and never accepts; the kernel opens 4 connections, then 3 at once:
their SYNs find room, but only one of their final ACKs does (the daemon delays what it
receives by 20 ms, so that all three SYNs arrive before any of the final ACKs).
"""

BACKLOG = 4
WAVES = "4,3"


def _accept_overflow(story: Story, workdir: Path, ns: Namespace,
                     abort: int) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, int]]:
    port = SLOW + abort  # a port of its own: the first phase's sockets may still be closing
    # The 20 ms delay on what the stack receives makes the second wave's three SYNs all
    # arrive before the first of their final ACKs, however the kernel-side program is
    # scheduled between its connect() calls.
    daemon = Daemon(ns, workdir, f"accept-queue-{abort}", apps=[f"lab:{LAB}"],
                    sysctls={"tcp_abort_on_overflow": abort}, impair="in:delay=20ms")
    try:
        session = ns.spawn_peer("lab", STACK_ADDR, str(LAB), "8", f"listen {port} {BACKLOG}")
        story.block(json.dumps(read_json_line(session)))
        daemon.nstat_reset()
        story.step(f"4 connects to port {port}, where nobody accepts, then 3 more at once")
        burst = ns.spawn_peer("burst", STACK_ADDR, str(port), WAVES, "1.5")
        ready = read_json_line(burst)
        rows = daemon.ss(port=port)
        story.ss(rows, f"ustcp ss --port {port}")
        done = read_json_line(burst)
        story.step("the kernel's sockets: right after connect(), then 1.5 s later")
        story.block(f"{ready['status']}\n{done['status']}")
        deltas = daemon.nstat_deltas()
    finally:
        daemon.stop()
    accepted = {row["peer"] for row in rows if row["state"] == "ESTAB"}
    overflowed = [conv for conv in connections(str(daemon.pcap), f":{port}")
                  if conv.client not in accepted]
    story.step("the ladder of a connection whose final ACK found the queue full")
    story.ladders(str(daemon.pcap), overflowed[:1])
    story.counters(deltas, ["TcpExtListenOverflows", "TcpExtListenDrops", "TcpOutRsts",
                            "TcpPassiveOpens"])
    return rows, done, deltas


def accept_queue(story: Story, workdir: Path) -> None:
    story.para(ACCEPT_QUEUE_STORY)
    with Namespace("acceptq") as ns:
        story.section("tcp_abort_on_overflow = 0: the final ACK is dropped")
        rows0, done0, deltas0 = _accept_overflow(story, workdir, ns, 0)
        story.section("tcp_abort_on_overflow = 1: the final ACK is answered with a RST")
        rows1, done1, deltas1 = _accept_overflow(story, workdir, ns, 1)
    story.knobs({"tcp_abort_on_overflow": "0, then 1", "the lab's listen() backlog": BACKLOG})
    story.section("checks")
    listen0 = next((r for r in rows0 if r["state"] == "LISTEN"), {})
    story.check(listen0.get("recv_q") == BACKLOG + 1 and listen0.get("send_q") == BACKLOG,
                f"ustcp ss shows the listener's Recv-Q ({BACKLOG + 1}) above its Send-Q "
                f"({BACKLOG}): the accept queue is full")
    story.check(sum(r["state"] == "SYN-RECV" for r in rows0) == 2,
                "with 0, the two overflowing connections stay SYN-RECV on the stack")
    story.check(done0["status"].count("established") == 7,
                "with 0, the kernel believes all 7 connections are established")
    story.check(deltas0.get("TcpExtListenOverflows", 0) >= 2 and not deltas0.get("TcpOutRsts"),
                "with 0, ListenOverflows counted and no RST sent")
    story.check(done1["status"].count("ECONNRESET") == 2 and deltas1.get("TcpOutRsts", 0) >= 2
                and deltas1.get("TcpExtListenOverflows", 0) >= 2,
                "with 1, the two overflowing connections were reset (ECONNRESET)")
    story.check(not any(r["state"] == "SYN-RECV" for r in rows1),
                "with 1, nothing waits in SYN-RECV")


# ------------------------------------------------------------------------------ syn-flood

SYN_FLOOD_STORY = """
A SYN flood sends SYNs from forged addresses faster than half-open requests time out, so the
SYN queue stays full and real clients are turned away. Syncookies defend without memory: when
the queue is full (tcp_syncookies=1; always with 2) the server answers with a SYN-ACK whose
sequence number is a cookie, a keyed hash of the 4-tuple, a coarse time counter and an MSS
index, and keeps nothing. A real client's ACK carries the cookie back (ack - 1); if it
checks out, the connection is rebuilt from it and goes straight to the accept queue. Here
tools/synflood.py sends 1500 SYN/s for 3 s while the kernel makes HTTP requests, first with
tcp_syncookies=1 (every request succeeds, SyncookiesSent and SyncookiesRecv move), then with
0 (requests fail, TCPReqQFullDrop moves). The SYN queue is kept at 128 to make it quick.
"""


def _flood_phase(story: Story, workdir: Path, ns: Namespace,
                 cookies: int) -> tuple[dict[str, Any], dict[str, int], dict[str, Any]]:
    daemon = Daemon(ns, workdir, f"syn-flood-{cookies}", apps=[f"http:{HTTP}"],
                    sysctls={"tcp_syncookies": cookies, "somaxconn": 128})
    try:
        daemon.nstat_reset()
        flood = _flood(ns, rate=1500, duration=3)
        time.sleep(0.5)
        story.step("during the flood: 8 HTTP requests, one every 0.3 s (timeout 1 s)")
        result = ns.peer("connect-loop", STACK_ADDR, str(HTTP), "8", "0.3", "1", timeout=20)
        sent = read_json_line(flood)
        deltas = daemon.nstat_deltas()
        story.block(f"synflood: {json.dumps(sent)}\nrequests: {json.dumps(result)}")
    finally:
        daemon.stop()
    story.counters(deltas, ["TcpExtSyncookiesSent", "TcpExtSyncookiesRecv",
                            "TcpExtSyncookiesFailed", "TcpExtTCPReqQFullDoCookies",
                            "TcpExtTCPReqQFullDrop", "TcpExtListenDrops", "TcpPassiveOpens"])
    return result, deltas, sent


def syn_flood(story: Story, workdir: Path) -> None:
    story.para(SYN_FLOOD_STORY)
    with Namespace("synflood") as ns:
        story.section("tcp_syncookies = 1 (the default)")
        ok1, deltas1, sent1 = _flood_phase(story, workdir, ns, 1)
        conv = connections(str(workdir / "syn-flood-1.pcap"), f"{KERNEL_ADDR}:")
        story.step("a real client's connection during the flood: the SYN-ACK's sequence "
                   "number is a cookie, and its options came back in the timestamp")
        cookie = explain_cookie(conv, workdir / "syn-flood-1.log")
        story.ladders(str(workdir / "syn-flood-1.pcap"), [cookie[0]] if cookie else [],
                      ts_values=True, absolute=True)
        story.block(cookie[1] if cookie else "(no cookie handshake in the capture)")
        story.section("tcp_syncookies = 0")
        ok0, deltas0, _ = _flood_phase(story, workdir, ns, 0)
    story.knobs({"tcp_syncookies": "1, then 0", "somaxconn": 128,
                 "tcp_max_syn_backlog": 4096, "tcp_synack_retries": 5})
    story.section("checks")
    story.check(cookie is not None, "a real client's SYN-ACK carried a cookie the stack's "
                "keys verify (its MSS and options shown above)")
    story.check(sent1["sent"] >= 3000, f"the flood sent {sent1['sent']} SYNs in 3 s")
    story.check(ok1["ok"] == ok1["count"],
                f"with cookies every request succeeded ({ok1['ok']}/{ok1['count']})")
    story.check(deltas1.get("TcpExtSyncookiesSent", 0) > 1000
                and deltas1.get("TcpExtSyncookiesRecv", 0) >= 1,
                "with cookies, SyncookiesSent counted the flood and SyncookiesRecv the clients")
    story.check(ok0["ok"] < ok0["count"],
                f"without cookies requests failed ({ok0['count'] - ok0['ok']}/{ok0['count']})")
    story.check(deltas0.get("TcpExtTCPReqQFullDrop", 0) > 1000
                and deltas0.get("TcpExtSyncookiesSent", 0) == 0,
                "without cookies the full queue dropped SYNs (TCPReqQFullDrop)")
