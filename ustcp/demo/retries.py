"""Demo ``syn-retries``: an active open that nobody answers, live and on virtual time."""

from __future__ import annotations

import socket
from pathlib import Path

from ustcp.config import StackConfig
from ustcp.demo.netns import STACK_ADDR, Daemon, Namespace
from ustcp.demo.orphans import LAB
from ustcp.demo.relay import wait_for, watched
from ustcp.demo.story import Story, connections
from ustcp.mib import Counters
from ustcp.obs.log import configure_logging
from ustcp.tcp.engine import TcpEngine
from ustcp.tcp.states import State
from ustcp.wire.tcp import SYN

NOBODY = "10.77.0.3"  # on the stack's subnet, nobody's address: the kernel drops its SYNs
PORT = 80
LIVE_RETRIES = 2
LIVE_SYNS = (0, 1, 2, 3, 4, 5)  # with tcp_syn_retries = 2: ETIMEDOUT at 7 s
DEFAULT_SYNS = [0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67]  # Linux 6.18's defaults
DEFAULT_FAILS = 131
EXPONENTIAL_SYNS = [0, 1, 3, 7, 15, 31, 63]  # tcp_syn_linear_timeouts = 0
EXPONENTIAL_FAILS = 127

STORY = """
A SYN that gets no answer (a host that is down, a firewall that drops) is retransmitted.
Since Linux 6.5 the first tcp_syn_linear_timeouts (default 4) timeouts keep the initial RTO
of 1 s, so a SYN lost once costs a second, not an exponential wait; after them the RTO
doubles. The connect gives up after tcp_syn_retries (default 6) retransmissions on top of
the linear ones, or once as long has passed as 6 doublings of the 1 s RTO take (127 s),
whichever comes first: SYNs at 0, 1, 2, 3, 4, 5, 7, 11, 19, 35 and 67 s, and ETIMEDOUT at
131 s, more than two minutes (measured on Linux 6.18: SYNs 1.02 s apart five times, then 2,
4, 8, 16, 32 s; ETIMEDOUT after 133-135 s). Lowering tcp_syn_retries (or the per-socket
TCP_SYNCNT) makes a client give up sooner. Live, the stack dials 10.77.0.3, an address on
its subnet that nobody has, with tcp_syn_retries = 2: SYNs at 0, 1, 2, 3, 4 and 5 s and
ETIMEDOUT at 7 s (the time 2 doublings take, 1+2+4), as this machine's kernel does with
TCP_SYNCNT 2. Then the engine runs the default schedule on virtual time, where 131 s take no
time at all, and once more with tcp_syn_linear_timeouts = 0: the doubling from the first
timeout that kernels before 6.5 had, 1+2+4+8+16+32+64 = 127 s.
"""


def virtual_schedule(retries: int, linear_timeouts: int = 4) -> tuple[list[float], float, str]:
    """The engine alone on virtual time: an active open whose SYNs are never answered.
    The SYN send times, when the connection failed, and its error."""
    configure_logging(level="warning")  # the engine's debug events would drown the story
    config = StackConfig()
    config.tcp_syn_retries = retries
    config.tcp_syn_linear_timeouts = linear_timeouts
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
    defaults = StackConfig()
    story.section("on virtual time: the engine alone, tcp_syn_retries = 6 and "
                  "tcp_syn_linear_timeouts = 4 (the defaults)")
    syns, failed, error = virtual_schedule(defaults.tcp_syn_retries,
                                           defaults.tcp_syn_linear_timeouts)
    story.block(_schedule(syns, failed, error))
    story.section("the same with tcp_syn_linear_timeouts = 0 (every timeout doubles)")
    exp_syns, exp_failed, exp_error = virtual_schedule(defaults.tcp_syn_retries, 0)
    story.block(_schedule(exp_syns, exp_failed, exp_error))
    story.section("checks")
    live = [round(seg.t - convs[0].segments[0].t, 2) for seg in convs[0].segments] \
        if convs else []
    story.check(len(live) == len(LIVE_SYNS) and all(
                    abs(t - due) < 0.3 for t, due in zip(live, LIVE_SYNS, strict=True)),
                f"live: SYNs at {', '.join(map(str, LIVE_SYNS))} s (tcp_syn_retries = "
                f"{LIVE_RETRIES}); seen {live}")
    story.check(reply.startswith("error ETIMEDOUT")
                and deltas.get("TcpRetransSegs") == len(LIVE_SYNS) - 1
                and deltas.get("TcpAttemptFails") == 1,
                "live: then connect() failed with ETIMEDOUT (TcpAttemptFails)")
    story.check(syns == DEFAULT_SYNS and failed == DEFAULT_FAILS and error == "TimeoutError",
                f"virtual time: SYNs at {', '.join(map(str, DEFAULT_SYNS))} s and ETIMEDOUT at "
                f"{DEFAULT_FAILS} s")
    story.check(exp_syns == EXPONENTIAL_SYNS and exp_failed == EXPONENTIAL_FAILS
                and exp_error == "TimeoutError",
                f"virtual time, no linear timeouts: SYNs at "
                f"{', '.join(map(str, EXPONENTIAL_SYNS))} s and ETIMEDOUT at "
                f"{EXPONENTIAL_FAILS} s")


def _schedule(syns: list[float], failed: float, error: str) -> str:
    return "\n".join(f"t={t:6.1f} s  SYN" + (" (retransmission)" if t else "")
                     for t in syns) + f"\nt={failed:6.1f} s  connect() fails: {error}"
