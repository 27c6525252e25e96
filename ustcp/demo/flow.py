"""Demo ``flow-control``: a receiver that stops reading closes the window to zero."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from ustcp.demo.netns import STACK_ADDR, Daemon, Namespace, read_json_line
from ustcp.demo.story import Story, connections
from ustcp.obs import ladder

LAB = 7070
SINK = 8080

STORY = """
Flow control keeps a fast sender from overrunning a slow receiver. Every ACK carries the
receiver's window: how much more it can buffer beyond what it acknowledges (its free receive
buffer, scaled by the window-scale shift). The sender keeps what it has sent but not had
acknowledged within that window. When the application stops reading, the receive buffer
fills, the advertised window shrinks to zero, and the sender stops: its data waits in its
send buffer (Send-Q) while the receiver's sits in the receive buffer (Recv-Q). So that a
lost window update cannot deadlock the connection, the sender probes the zero window with
the persist timer (ss shows timer:(persist,...)), backing off like the retransmission
timer, until the window opens again. Here the lab app accepts connections on port 8080 and
never reads; the kernel writes as fast as it can until its writes stop making progress.
"""




PROBES = 2  # zero-window probes the kernel must have sent before the demo looks
PROBE_WAIT = 20.0  # s: the longest it waits for them (the persist timer backs off from 0.2 s)


def _kernel_ss_after_probes(ns: Namespace) -> str:
    """The kernel's ``ss -tnoi`` of the sending socket once it shows the persist timer and
    :data:`PROBES` probes sent (or :data:`PROBE_WAIT` seconds passed)."""
    deadline = time.monotonic() + PROBE_WAIT
    while True:
        text = ns.run(["ss", "-tnoi", "dport", f"= :{SINK}"]).stdout
        # each zero-window probe doubles the persist timer: backoff counts them
        probes = re.search(r" backoff:(\d+) ", text) if "persist" in text else None
        if (probes and int(probes.group(1)) >= PROBES) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def run(story: Story, workdir: Path) -> None:
    story.para(STORY)
    with Namespace("flow") as ns:
        daemon = Daemon(ns, workdir, "flow-control", apps=[f"lab:{LAB}"])
        try:
            session = ns.spawn_peer("lab", STACK_ADDR, str(LAB), "60", f"sink {SINK}")
            story.block(json.dumps(read_json_line(session)))
            daemon.nstat_reset()
            story.step(f"the kernel writes to port {SINK} until a second passes without "
                       "progress, then holds the connection while both sides are looked at")
            blast = ns.spawn_peer("blast", STACK_ADDR, str(SINK), "60")
            stalled = read_json_line(blast)
            story.block(json.dumps(stalled))
            rows = daemon.ss(state="established", port=SINK)
            story.ss(rows, f"ustcp ss --state established --port {SINK}   # the receiver")
            kernel = _kernel_ss_after_probes(ns)
            story.command(f"ss -tnoi dport = :{SINK}   # the kernel, the sender")
            story.block(kernel)
            blast.terminate()
            blast.wait(timeout=10)
            deltas = daemon.nstat_deltas()
            knobs = daemon.sysctl("tcp_rmem", "tcp_wmem", "tcp_window_scaling")
        finally:
            daemon.stop()
        convs = connections(str(daemon.pcap), f":{SINK}")
        story.section("on the wire: the window closing, then probes")
        lad = ladder.ladder(convs[0]) if convs else None
        if lad is not None:
            first_zero = next((i for i, a in enumerate(lad.arrows)
                               if not a.rightward and " win=0 " in a.label), len(lad.arrows))
            story.command(f"ustcp ladder {daemon.pcap}   # from 6 segments before the first "
                          "zero window")
            story.diagram(ladder.window(lad, max(0, first_zero - 6), first_zero + 10))
        story.counters(deltas, ["TcpExtTCPZeroWindowDrop", "TcpExtTCPRcvQDrop", "TcpInSegs",
                                "TcpOutSegs"])
        story.knobs(knobs)
    story.section("checks")
    arrows = lad.arrows if lad is not None else []
    zero = [a for a in arrows if not a.rightward and " win=0 " in a.label]
    probes = [a for a in arrows if a.rightward and "[probe]" in a.label]
    story.check(bool(zero), "the stack advertised a zero window")
    story.check(len(probes) >= 2, f"the kernel probed the zero window ({len(probes)} probes)")
    story.check(bool(rows) and rows[0]["recv_q"] > 0,
                "ustcp ss shows the unread bytes in the stack's Recv-Q")
    story.check("persist" in kernel, "the kernel's ss shows its persist timer")
    story.check(stalled["sent"] > 0, f"the kernel wrote {stalled['sent']} bytes before stalling")
