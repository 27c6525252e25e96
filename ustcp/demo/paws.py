"""Demo ``paws``: the timestamp option, and PAWS rejecting an old duplicate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ustcp.demo.netns import STACK_ADDR, Daemon, Namespace
from ustcp.demo.story import Story, connections
from ustcp.obs import ladder

ECHO = 7

STORY = """
With the timestamp option (tcp_timestamps=1, negotiated on the SYNs) every segment carries
TSval, the sender's millisecond clock, and TSecr, the last TSval it received. Timestamps give
an RTT sample on every ACK, and they protect against wrapped sequence numbers (PAWS, RFC
7323): a segment whose TSval is older than the last one accepted (TS.Recent) is an old
duplicate, even if its sequence numbers look right, so it is dropped (counted as PAWSEstab)
and answered with a duplicate ACK. On a fast link the 32-bit sequence space wraps in seconds,
and without PAWS a delayed segment from the previous lap could be taken as new data. Here the
kernel talks to the echo app, then a raw socket injects a segment with the connection's next
sequence number but a TSval 100 s in the past, carrying "STALE"; then the kernel's own socket
sends "fresh". The echo shows which of them the stack took.
"""


def run(story: Story, workdir: Path) -> None:
    story.para(STORY)
    with Namespace("paws") as ns:
        daemon = Daemon(ns, workdir, "paws", apps=[f"echo:{ECHO}"])
        try:
            daemon.nstat_reset()
            story.step("echo 'hello', inject 'STALE' with an old TSval, send 'fresh'")
            result = ns.peer("paws", STACK_ADDR, str(ECHO))
            story.block(json.dumps(result))
            deltas = daemon.nstat_deltas()
            knobs = daemon.sysctl("tcp_timestamps")
        finally:
            daemon.stop()
        convs = connections(str(daemon.pcap), f":{ECHO}")
        story.section("on the wire (timestamps shown)")
        story.ladders(str(daemon.pcap), convs, ts_values=True)
        story.step("the forged segment is the one with the old TSval (and win=502); the ladder "
                   "marks 'fresh' as a retransmission because the forgery used its sequence "
                   "numbers first")
        story.counters(deltas, ["TcpExtPAWSEstab", "TcpInSegs", "TcpOutSegs"])
        story.knobs(knobs)
    story.section("checks")
    answer = _answer_to_injected(convs[0].segments if convs else [], result)
    story.check(result.get("first") == "hello\n", "the echo works with timestamps on")
    story.check(deltas.get("TcpExtPAWSEstab") == 1,
                "the stack dropped the old duplicate by PAWS (TcpExtPAWSEstab +1)")
    story.check(result.get("second") == "fresh\n",
                "the echo returned 'fresh' only: 'STALE' never reached the application")
    story.check(answer is not None and answer.ack == result["injected_seq"]
                and answer.length == 0,
                "the stack answered the injected segment with a duplicate ACK (ack unmoved)")


def _answer_to_injected(segments: list[ladder.Segment],
                        result: dict[str, Any]) -> ladder.Segment | None:
    """The stack's first segment after the injected one (found by its TSval)."""
    tsval = result.get("injected_tsval")
    for i, seg in enumerate(segments):
        if seg.options and f"TS val {tsval} " in ladder.format_options(seg.options, 0,
                                                                        ts_values=True):
            return next((s for s in segments[i + 1:] if s.sport == ECHO), None)
    return None
