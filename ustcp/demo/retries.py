"""Demo ``syn-retries``: an active open that nobody answers, live and on virtual time."""

from __future__ import annotations

import socket
from pathlib import Path

from ustcp.config import StackConfig
from ustcp.demo.netns import STACK_ADDR, Daemon, Namespace
from ustcp.demo.orphans import LAB
from ustcp.demo.relay import wait_for, watched
from ustcp.demo.story import Story, connections
from ustcp.obs.counters import Counters
from ustcp.obs.log import configure_logging
from ustcp.tcp.engine import TcpEngine
from ustcp.tcp.states import State
from ustcp.wire.tcp import SYN

NOBODY = "10.77.0.3"  # on the stack's subnet, nobody's address: the kernel drops its SYNs
PORT = 80
LIVE_RETRIES = 2

STORY = """
A SYN that gets no answer (a host that is down, a firewall that drops) is retransmitted on
the initial RTO of 1 s, doubling: tcp_syn_retries (default 6) retransmissions at 1, 3, 7,
15, 31 and 63 s, and after the last one the client waits 64 s more, then connect() fails
with ETIMEDOUT: 1+2+4+8+16+32+64 = 127 s, more than two minutes. Lowering the knob (or the
per-socket TCP_SYNCNT) makes a client give up sooner. Live, the stack dials 10.77.0.3, an
address on its subnet that nobody has, with tcp_syn_retries = 2 (SYNs at 0, 1 and 3 s,
ETIMEDOUT at 7 s); then the engine runs the default schedule on virtual time, where 127 s
take no time at all.
"""


def virtual_schedule(retries: int) -> tuple[list[float], float, str]:
    """The engine alone on virtual time: an active open whose SYNs are never answered.
    The SYN send times, when the connection failed, and its error."""
    configure_logging(level="warning")  # the engine's debug events would drown the story
    config = StackConfig()
    config.tcp_syn_retries = retries
    engine = TcpEngine(config, Counters(), seed=1)
    local, remote = socket.inet_aton(STACK_ADDR), socket.inet_aton(NOBODY)
    now = 0.0
    conn = engine.connect(now, local, remote, PORT)
    syns: list[float] = []
    while True:
        syns += [now for _, _, seg in engine.take_output() if seg.flags == SYN]
        deadline = engine.next_deadline()
        if conn.state == State.CLOSE or deadline is None:
            break
        now = deadline
        engine.on_timers(now)
    return syns, now, type(conn.error).__name__


def run(story: Story, workdir: Path) -> None:
    story.para(STORY)
    with Namespace("synretries") as ns:
        daemon = Daemon(ns, workdir, "syn-retries", apps=[f"lab:{LAB}"],
                        sysctls={"tcp_syn_retries": LIVE_RETRIES})
        with watched(daemon) as tally:
            story.step(f"live: the stack dials {NOBODY}:{PORT}")
            reply = ns.peer("lab", STACK_ADDR, str(LAB), "0", f"dial {NOBODY} {PORT} 0",
                            timeout=30)["replies"][0]
            story.block(reply)
            wait_for("the failed attempt", tally.reached("TcpAttemptFails", 1))
            deltas = tally.poll()
            knobs = tally.ctl.sysctl("tcp_syn_retries")
        convs = connections(str(daemon.pcap), f"{NOBODY}:{PORT}")
        story.ladders(str(daemon.pcap), convs)
        story.counters(deltas, ["TcpActiveOpens", "TcpRetransSegs", "TcpExtTCPTimeouts",
                                "TcpAttemptFails"])
        story.knobs(knobs)
    story.section("on virtual time: the engine alone, tcp_syn_retries = 6 (the default)")
    syns, failed, error = virtual_schedule(StackConfig().tcp_syn_retries)
    story.block("\n".join(f"t={t:6.1f} s  SYN" + (" (retransmission)" if t else "")
                          for t in syns) + f"\nt={failed:6.1f} s  connect() fails: {error}")
    story.section("checks")
    live = [round(seg.t - convs[0].segments[0].t, 2) for seg in convs[0].segments] \
        if convs else []
    story.check(len(live) == 3 and all(abs(t - due) < 0.3 for t, due in zip(live, (0, 1, 3),
                                                                            strict=True)),
                f"live: SYNs at 0, 1, 3 s (tcp_syn_retries = {LIVE_RETRIES}); seen {live}")
    story.check(reply.startswith("error ETIMEDOUT") and deltas.get("TcpRetransSegs") == 2
                and deltas.get("TcpAttemptFails") == 1,
                "live: then connect() failed with ETIMEDOUT (TcpAttemptFails)")
    story.check(syns == [0, 1, 3, 7, 15, 31, 63] and failed == 127 and error == "TimeoutError",
                "virtual time: SYNs at 0, 1, 3, 7, 15, 31, 63 s and ETIMEDOUT at 127 s")
