"""Demo ``linger``: close() with SO_LINGER {1, T} blocks until the FIN is acknowledged, or
T seconds; then the connection lives on as an orphan, not reset (Linux tcp_close,
sk_stream_wait_close). The stack dials a kernel server through the lab app, which closes
with the option set and reports how long close() blocked."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ustcp.demo.netns import KERNEL_ADDR, STACK_ADDR, Daemon, Namespace
from ustcp.demo.orphans import (
    LAB,
    RST,
    SERVER,
    drop_stack_fins,
    fins,
    hold_server,
    release,
)
from ustcp.demo.relay import WAIT, watched
from ustcp.demo.story import Story, connections

LINGER = 2  # seconds of SO_LINGER {1, LINGER}
LATE = 1.5  # how much later than LINGER a loaded machine may let close() return (s)

STORY = f"""
A plain close() returns at once: the FIN is queued behind the data and the kernel delivers
both on its own. With SO_LINGER on and a timeout of T seconds, close() blocks instead until
the peer has acknowledged everything, FIN included (the connection has left FIN_WAIT1,
CLOSING and LAST_ACK), or T seconds have passed. Either way close() then returns and the
connection goes on as an orphan: Linux does not reset it at the timeout (only a timeout of 0
means RST). Unread received data still turns the close into a RST, with no waiting. Here the
lab app dials the kernel's server twice and closes with SO_LINGER {{1, {LINGER}}}: the first
time the kernel acknowledges the FIN at once; the second time an nftables rule drops the
stack's FINs, so nothing acknowledges it.
"""


def _dial_lingering(ns: Namespace) -> tuple[str, int, float]:
    """One lab dial closed with SO_LINGER {1, LINGER}: the reply, the local port and how long
    close() blocked (-1 when the dial failed)."""
    reply: str = ns.peer("lab", STACK_ADDR, str(LAB), "0",
                         f"dial {KERNEL_ADDR} {SERVER} 0 {LINGER}")["replies"][0]
    words = reply.split()
    if len(words) < 3 or words[0] != "ok" or not words[2].startswith("close="):
        return reply, 0, -1.0
    return reply, int(words[1]), float(words[2].removeprefix("close="))


def run(story: Story, workdir: Path) -> None:
    story.para(STORY)
    with Namespace("linger") as ns:
        daemon = Daemon(ns, workdir, "linger", apps=[f"lab:{LAB}"])
        with watched(daemon) as tally:
            server = hold_server(ns, 2, WAIT)
            story.step(f"the stack dials the kernel's server, reads its greeting, closes with "
                       f"SO_LINGER {{1, {LINGER}}}")
            acked, acked_port, acked_took = _dial_lingering(ns)
            story.block(acked)
            rows_acked = tally.ctl.ss(port=acked_port)
            story.ss(rows_acked, f"ustcp ss --port {acked_port}   # right after close() returned")
            story.step("again, with the stack's FINs dropped before the kernel sees them")
            drop_stack_fins(story, ns)
            lost, lost_port, lost_took = _dial_lingering(ns)
            story.block(lost)
            rows_lost = tally.ctl.ss(port=lost_port)
            story.ss(rows_lost, f"ustcp ss --port {lost_port}   # right after close() returned")
            deltas = tally.poll()
            held = release(server)
            story.block(json.dumps(held))
            # On the way out the daemon resets what is still open (its shutdown grace): a
            # RST after this moment is the shutdown's, not the linger timeout's.
            stopping = time.time()
        convs = connections(str(daemon.pcap), f":{SERVER}")
        story.section("on the wire (the stack's capture: it sent every FIN shown)")
        story.ladders(str(daemon.pcap), convs)
        story.counters(deltas, ["TcpOutRsts", "TcpExtTCPLossProbes", "TcpExtTCPTimeouts",
                                "TcpExtTCPAbortOnClose", "TcpExtTCPAbortOnData"])
    story.section("checks")
    story.check(0 <= acked_took < LINGER / 2
                and [r["state"] for r in rows_acked] == ["FIN-WAIT-2"],
                f"acknowledged: close() returned after {acked_took} s, with the FIN "
                "acknowledged (FIN-WAIT-2)")
    story.check(LINGER <= lost_took < LINGER + LATE,
                f"unacknowledged: close() returned at the timeout, after {lost_took} s")
    story.check([r["state"] for r in rows_lost] == ["FIN-WAIT-1"]
                and not deltas.get("TcpOutRsts"),
                "and left an orphan in FIN-WAIT-1, not reset (no RST sent)")
    lost_conv = [c for c in convs if c.client.endswith(f":{lost_port}")]
    ours = fins(lost_conv[0], f"{STACK_ADDR}:{lost_port}") if lost_conv else []
    resets = [s for s in lost_conv[0].segments
              if s.flags & RST and s.t < stopping] if lost_conv else []
    story.check(len(ours) >= 2 and not resets,
                f"the orphan kept retransmitting its FIN ({len(ours)} sent), no RST before "
                "the daemon stopped")
