"""Demos of the close path: ``close`` (four-way close, TIME_WAIT) and ``tw-reuse``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ustcp.demo.netns import KERNEL_ADDR, STACK_ADDR, Daemon, Namespace, read_json_line
from ustcp.demo.story import Story, connections
from ustcp.obs import ladder

ECHO = 7
HTTP = 80
LAB = 7070
GREETER = 9000  # the kernel's server that the stack dials
DIAL_PORT = 40000  # the stack's fixed local port for tw-reuse

CLOSE_STORY = """
Either side may close first; the one that does is the active closer. Its FIN takes it to
FIN-WAIT-1; the peer's kernel ACKs at once and the peer sits in CLOSE-WAIT until its
application calls close() (Linux sets no limit there: many CLOSE-WAIT sockets mean an
application bug); the ACK takes the closer to FIN-WAIT-2. The peer's FIN (LAST-ACK) is
acknowledged by the closer, which enters TIME-WAIT for 2MSL = 60 s: long enough for stray
segments of this connection to die out and to re-ACK the peer's FIN should the last ACK be
lost. Only the active closer has TIME_WAIT. When the passive side closes at once, its ACK and
FIN travel in one segment and the four-way close looks like three. Here the kernel first
closes an echo connection (the stack is the passive side), then the stack closes an HTTP/1.0
connection after its response (the stack is the active side and keeps TIME-WAIT).
"""




def run(story: Story, workdir: Path) -> None:
    story.para(CLOSE_STORY)
    with Namespace("close") as ns:
        daemon = Daemon(ns, workdir, "close", apps=[f"echo:{ECHO}", f"http:{HTTP}"])
        try:
            daemon.nstat_reset()
            story.section("1. the kernel closes first (the stack's echo app is the passive side)")
            echo = ns.peer("echo", STACK_ADDR, str(ECHO), "hello\n")
            story.block(json.dumps(echo))
            kernel_tw = ns.run(["ss", "-tano", "state", "time-wait"]).stdout
            story.command("ss -tano state time-wait   # the kernel's side")
            story.block(kernel_tw)
            story.section("2. the stack closes first (HTTP/1.0: the server closes after "
                          "the response)")
            http = ns.peer("connect-loop", STACK_ADDR, str(HTTP), "1", "0", "2")
            story.block(json.dumps(http))
            rows = daemon.ss(state="time-wait")
            story.ss(rows, "ustcp ss --state time-wait")
            deltas = daemon.nstat_deltas()
            knobs = daemon.sysctl("tcp_fin_timeout", "tcp_max_tw_buckets",
                                  "tcp_orphan_retries")
        finally:
            daemon.stop()
        story.section("on the wire")
        echo_conv = connections(str(daemon.pcap), f":{ECHO}")
        http_conv = connections(str(daemon.pcap), f":{HTTP}")
        story.ladders(str(daemon.pcap), echo_conv + http_conv)
        story.counters(deltas, ["TcpPassiveOpens", "UstcpTimeWaitEntered", "TcpExtTW",
                                "TcpEstabResets", "TcpOutRsts"])
        story.knobs({**knobs, "TIME_WAIT length (2MSL, fixed as in Linux)": "60 s"})
    story.section("checks")
    echo_states = _final_states(echo_conv)
    http_states = _final_states(http_conv)
    story.check(echo["echo"] == "hello\n" and echo_states == ("TIME-WAIT", "CLOSED"),
                "echo: the kernel closed first, the stack went CLOSE-WAIT, LAST-ACK, CLOSED")
    story.check(f"{KERNEL_ADDR}:{echo['local_port']}" in kernel_tw,
                "the kernel's socket is in TIME-WAIT")
    story.check(http["ok"] == 1 and http_states == ("CLOSED", "TIME-WAIT"),
                "http: the stack closed first, went FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT")
    timers = [row["timer"] for row in rows]
    story.check(len(rows) == 1 and timers[0]["name"] == "timewait"
                and 55_000 < timers[0]["expires_ms"] <= 60_000,
                "ustcp ss shows the stack's TIME-WAIT with timer:(timewait,~60sec,0)")
    story.check(deltas.get("UstcpTimeWaitEntered") == 1 and not deltas.get("TcpEstabResets"),
                "one connection entered TIME_WAIT, none was reset")


def _final_states(convs: list[ladder.Conversation]) -> tuple[str, str] | None:
    if not convs:
        return None
    lad = ladder.ladder(convs[0])
    client, server = lad.initial
    for arrow in lad.arrows:
        client, server = arrow.client_state or client, arrow.server_state or server
    return client, server


# ------------------------------------------------------------------------------ tw-reuse

TW_REUSE_STORY = """
TIME_WAIT pins a 4-tuple for 60 s. A client that connects often to the same server from a
fixed port (or that runs out of ports) finds the tuple taken. tcp_tw_reuse lets an active
open (connect(), never a listener) take over a TIME_WAIT tuple when timestamps are on and at
least one second has passed since the entry's last segment: the new connection's timestamps
are newer than anything the old one sent, so PAWS on the server tells stray old segments
from new ones. Linux's default is 2 (loopback only), 1 allows it everywhere, 0 never. Here
the lab app makes the stack connect to a kernel server from port 40000 and close first
(TIME_WAIT on the stack), then connect again from the same port: at once, and again when
the entry is 2.5 s old, with tcp_tw_reuse=2 and with tcp_tw_reuse=1. The demo measures how
old the entry was at each attempt (from the entry's timer in ss), so both attempts are seen
to fall well on their side of the one-second rule.
"""


REUSE_WAIT = 2.5  # s: the third dial waits until the entry is this old (the rule: > 1 s)
MARGIN = 0.5  # s: each dial must be at least this far on its side of the 1 s rule


def _reuse_phase(story: Story, workdir: Path, ns: Namespace,
                 reuse: int) -> tuple[dict[str, Any], dict[str, int]]:
    daemon = Daemon(ns, workdir, f"tw-reuse-{reuse}", apps=[f"lab:{LAB}"],
                    sysctls={"tcp_tw_reuse": reuse})
    greeter = ns.spawn_peer("greet", str(GREETER), "2", "30")
    try:
        read_json_line(greeter)
        daemon.nstat_reset()
        story.step(f"the stack connects from port {DIAL_PORT}, reads the greeting, closes; "
                   f"then again from the same port at once, and once the TIME_WAIT entry is "
                   f"{REUSE_WAIT:g} s old")
        result = ns.peer("tw-reuse", STACK_ADDR, str(LAB), KERNEL_ADDR, str(GREETER),
                         str(DIAL_PORT), str(REUSE_WAIT))
        deltas = daemon.nstat_deltas()
    finally:
        daemon.stop()
        greeter.kill()
    replies, ages = result["replies"], result["ages"]
    story.block(replies[0])
    story.ss(result["time_wait"], "ustcp ss --state time-wait")
    if len(ages) == 2:
        story.step(f"at once (the entry at most {ages[0]:.3f} s old)")
        story.block(replies[1])
        story.step(f"later (the entry at least {ages[1]:.3f} s old)")
        story.block(replies[2])
    story.counters(deltas, ["TcpActiveOpens", "TcpExtTWRecycled", "UstcpTimeWaitEntered"])
    return result, deltas


def tw_reuse(story: Story, workdir: Path) -> None:
    story.para(TW_REUSE_STORY)
    with Namespace("twreuse") as ns:
        story.section("tcp_tw_reuse = 2 (the default: loopback only)")
        result2, deltas2 = _reuse_phase(story, workdir, ns, 2)
        story.section("tcp_tw_reuse = 1")
        result1, deltas1 = _reuse_phase(story, workdir, ns, 1)
        pcap = str(workdir / "tw-reuse-1.pcap")
        story.step("the old connection and the new one on the same 4-tuple")
        story.ladders(pcap, connections(pcap, f"{STACK_ADDR}:{DIAL_PORT}"), ts_values=True)
    story.knobs({"tcp_tw_reuse": "2, then 1", "tcp_timestamps": 1})
    story.section("checks")
    replies2, replies1 = result2["replies"], result1["replies"]
    story.check(replies2[0].startswith("ok") and bool(result2["time_wait"]),
                "the first connection left a TIME-WAIT entry on the stack")
    story.check(len(replies2) == 3 and replies2[1].startswith("error EADDRNOTAVAIL")
                and replies2[2].startswith("error EADDRNOTAVAIL"),
                "with 2, the tuple stays taken (EADDRNOTAVAIL), even after a second")
    story.check(len(replies1) == 3 and replies1[1].startswith("error EADDRNOTAVAIL"),
                "with 1, not within the first second")
    story.check(len(replies1) == 3 and replies1[2].startswith(f"ok {DIAL_PORT}")
                and deltas1.get("TcpExtTWRecycled") == 1
                and not deltas2.get("TcpExtTWRecycled"),
                "with 1, after a second the TIME_WAIT entry was reused (TcpExtTWRecycled)")
    ages = [result["ages"] for result in (result2, result1)]
    story.check(all(len(a) == 2 and a[0] <= 1.0 - MARGIN and a[1] >= 1.0 + MARGIN
                    for a in ages),
                f"timing: each dial was at least {MARGIN:g} s on its side of the 1 s rule "
                f"(entry ages, at once <= {max((a[0] for a in ages if a), default=0):.3f} s, "
                f"later >= {min((a[1] for a in ages if a), default=0):.3f} s)")
