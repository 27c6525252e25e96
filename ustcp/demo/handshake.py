"""Demo ``handshake``: SYN, SYN-ACK, ACK, and the options both sides agree on."""

from __future__ import annotations

import json
from pathlib import Path

from ustcp.demo.netns import STACK_ADDR, Daemon, Namespace
from ustcp.demo.story import Story, connections
from ustcp.obs import ladder

PORT = 7

STORY = """
A TCP connection starts with three segments. The client sends a SYN carrying its initial
sequence number and its options (MSS, SACK permitted, timestamps, window scale) and enters
SYN-SENT. The server, listening, answers with a SYN-ACK that acknowledges the client's ISN,
carries its own ISN and options, and enters SYN-RECV (the request waits in the listener's SYN
queue). The client's ACK completes the handshake: the client is ESTABLISHED when the SYN-ACK
arrives, the server when the ACK does, and the connection moves to the accept queue until the
application accepts it. Three segments, not two, because each side must learn that the other
received its ISN: a delayed old SYN must not open a connection on its own. Only the third
segment may carry data.
"""


def run(story: Story, workdir: Path) -> None:
    story.para(STORY)
    with Namespace("handshake") as ns:
        daemon = Daemon(ns, workdir, "handshake", apps=[f"echo:{PORT}"])
        try:
            daemon.nstat_reset()
            story.step(f"the kernel connects to the stack's echo port ({STACK_ADDR}:{PORT}) "
                       "and holds the connection while both sides are looked at")
            # held until the demo has looked at both sides, then ended (the kernel closes)
            peer = ns.spawn_peer("burst", STACK_ADDR, str(PORT), "1", "60")
            assert peer.stdout is not None
            ready = json.loads(peer.stdout.readline())
            rows = daemon.ss(state="established", port=PORT)
            story.ss(rows, f"ustcp ss --state established --port {PORT}")
            kernel = ns.run(["ss", "-tnoi", "state", "established"]).stdout
            story.command("ss -tnoi state established   # the kernel's side")
            story.block(kernel)
            peer.terminate()
            peer.wait(timeout=10)
            deltas = daemon.nstat_deltas()
            knobs = daemon.sysctl("tcp_timestamps", "tcp_sack", "tcp_window_scaling",
                                  "tcp_rmem")
        finally:
            daemon.stop()
        story.section("the handshake on the wire")
        convs = connections(str(daemon.pcap), f":{PORT}")
        story.ladders(str(daemon.pcap), convs)
        story.section("counters")
        story.counters(deltas, ["TcpPassiveOpens", "TcpInSegs", "TcpOutSegs"])
        story.knobs(knobs)
        story.section("checks")
        segments = convs[0].segments if convs else []
        flags = [s.flags & (ladder.SYN | ladder.ACK | ladder.FIN | ladder.RST)
                 for s in segments[:3]]
        story.check(flags == [ladder.SYN, ladder.SYN | ladder.ACK, ladder.ACK],
                    "the capture starts with SYN, SYN-ACK, ACK")
        options = ready["options"][0] or {}
        story.check(ready["status"] == ["established"] and options.get("timestamps") is True
                    and options.get("sack") is True and options.get("wscale") is not None,
                    "the kernel's TCP_INFO shows timestamps, SACK and window scaling negotiated")
        story.check(len(rows) == 1 and rows[0]["info"]["ts"] and rows[0]["info"]["sack"]
                    and rows[0]["info"]["wscale"] is not None,
                    "ustcp ss shows the connection ESTAB with ts, sack and wscale")
        story.check(deltas.get("TcpPassiveOpens") == 1,
                    "the stack counted one passive open (TcpPassiveOpens +1)")
