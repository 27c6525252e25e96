"""Demos of congestion control: ``congestion`` (cwnd over time) and ``fast-retransmit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ustcp.demo.netns import STACK_ADDR, Daemon, Namespace, read_json_line
from ustcp.demo.story import Story, connections
from ustcp.obs import ladder
from ustcp.tcp.congestion.base import CA_LOSS, CA_RECOVERY

HTTP = 80
DUP_ACKS_SHOWN = 5
PLOT_WIDTH = 72
PLOT_HEIGHT = 14
INFINITE_SSTHRESH = 0xFFFF  # at or above this ss shows no ssthresh

CONGESTION_STORY = """
The receiver's window protects the receiver; the congestion window (cwnd) protects the
network. The sender keeps at most min(cwnd, receive window) bytes in flight. It starts with
10 segments and, in slow start, adds one segment per segment acknowledged, doubling cwnd
every round trip, until a loss or the slow-start threshold (ssthresh). A loss is the
network's signal: with SACK the sender notices it from duplicate ACKs, retransmits at once
(fast retransmit), sets ssthresh to a fraction of cwnd (CUBIC: 0.7) and continues from there
(fast recovery); above ssthresh cwnd grows slowly (congestion avoidance: CUBIC's cubic curve,
Reno's one segment per round trip). A retransmission timeout is worse: cwnd falls to one
segment. Here the stack sends 6 MB over HTTP to curl through a link that delays its segments
by 10 ms and loses 0.5 % of them; the demo samples cwnd and ssthresh every 10 ms through the
control socket and plots them.
"""




def plot(samples: list[list[float]], width: int = PLOT_WIDTH,
         height: int = PLOT_HEIGHT) -> str:
    """cwnd (``*``) and a finite ssthresh (``-``) against time, as text."""
    if not samples:
        return "(no samples)\n"
    t_end = max(s[0] for s in samples) or 1.0
    top = max(max(s[1] for s in samples),
              max((s[2] for s in samples if s[2] < INFINITE_SSTHRESH), default=0), 1)
    grid = [[" "] * width for _ in range(height)]

    def row(value: float) -> int:
        return height - 1 - min(height - 1, round(value / top * (height - 1)))

    for t, cwnd, ssthresh, _ in samples:
        col = min(width - 1, int(t / t_end * (width - 1)))
        if ssthresh < INFINITE_SSTHRESH:
            grid[row(ssthresh)][col] = "-"
        grid[row(cwnd)][col] = "*"
    label_width = len(str(int(top)))
    lines = []
    for i, cells in enumerate(grid):
        value = top * (height - 1 - i) / (height - 1)
        label = f"{value:>{label_width}.0f}" if i % 3 == 0 or i == height - 1 else " " * label_width
        lines.append(f"{label} |{''.join(cells)}")
    lines.append(f"{' ' * label_width} +{'-' * width}")
    lines.append(f"{' ' * label_width}  0 s{f'{t_end:.2f} s':>{width - 3}}")
    lines.append(f"{' ' * label_width}  cwnd (*) and ssthresh (-), in segments")
    return "\n".join(lines) + "\n"


KNOBS = ("tcp_congestion_control", "tcp_sack", "tcp_recovery", "tcp_reordering",
         "tcp_slow_start_after_idle")


def _download(story: Story, workdir: Path, name: str, impair: str, size: int,
              sample: bool) -> tuple[Daemon, dict[str, Any], list[list[float]],
                                     dict[str, int], dict[str, Any]]:
    with Namespace(name) as ns:
        daemon = Daemon(ns, workdir, name, apps=[f"http:{HTTP}"], impair=impair,
                        offload=False)
        try:
            daemon.nstat_reset()
            sampler = ns.spawn_peer("sample", str(HTTP), "8", "0.01") if sample else None
            if sampler is not None:
                read_json_line(sampler)
            story.step(f"curl downloads {size} bytes from the stack's HTTP app "
                       f"(--impair {impair})")
            done = ns.run(["curl", "-s", "-o", "/dev/null", "-m", "40", "-w",
                           "%{json}", f"http://{STACK_ADDR}/bytes/{size}"], timeout=45)
            result = json.loads(done.stdout or "{}")
            story.block(f"curl: exit {done.returncode}, {result.get('size_download')} bytes in "
                        f"{result.get('time_total')} s")
            samples: list[list[float]] = []
            if sampler is not None:
                samples = read_json_line(sampler)["samples"]
            deltas = daemon.nstat_deltas()
            knobs = daemon.sysctl(*KNOBS)
        finally:
            daemon.stop()
    return daemon, result, samples, deltas, knobs


def run(story: Story, workdir: Path) -> None:
    story.para(CONGESTION_STORY)
    impair = "out:delay=10ms,out:loss=0.5%,seed=3"
    daemon, result, samples, deltas, knobs = _download(story, workdir, "congestion", impair,
                                                       6_000_000, sample=True)
    story.section("cwnd over time")
    story.block(plot(samples))
    story.counters(deltas, ["TcpRetransSegs", "TcpExtTCPSackRecovery", "TcpExtTCPTimeouts",
                            "TcpOutSegs", "UstcpImpairLoss"])
    recoveries = daemon.events("recovery")
    story.step("the first recovery events in the daemon's log: cwnd and the new ssthresh")
    t0 = float(recoveries[0].get("t", 0)) if recoveries else 0.0
    story.block("\n".join(f"+{float(e.get('t', 0)) - t0:.3f} s  cwnd={e.get('cwnd')} "
                          f"ssthresh={e.get('ssthresh')}" for e in recoveries[:8]) or "(none)")
    story.knobs(knobs)
    story.section("checks")
    cwnds = [s[1] for s in samples]
    drops = [i for i in range(1, len(samples)) if samples[i][1] < 0.8 * samples[i - 1][1]]
    story.check(result.get("size_download") == 6_000_000, "curl got all 6000000 bytes")
    story.check(len(samples) >= 10, f"{len(samples)} samples of cwnd during the transfer")
    story.check(bool(cwnds) and max(cwnds) > 20,
                f"slow start: cwnd grew from 10 to {max(cwnds, default=0)} segments")
    story.check(bool(drops) and any(s[2] < INFINITE_SSTHRESH for s in samples[drops[0]:]),
                "a loss cut cwnd and set a finite ssthresh")
    story.check(deltas.get("TcpRetransSegs", 0) > 0 and bool(recoveries),
                "the losses were retransmitted through fast recovery")


# ------------------------------------------------------------------------ fast-retransmit

FAST_RETRANSMIT_STORY = """
When a segment is lost, the segments after it still arrive, and the receiver answers each
with a duplicate ACK: the same cumulative ACK (the hole's start), with SACK blocks saying
what arrived beyond the hole. The sender does not wait for its retransmission timer (at
least 200 ms, often much more): after three duplicate ACKs, or as soon as SACK shows enough
data beyond the hole (RFC 6675; Linux also uses RACK, time-based), it retransmits the
missing segment at once and enters fast recovery, counted as TCPSackRecovery. Here the stack
sends 1 MB to curl through a link that loses 1 % of its segments. The capture is taken
where the stack sends, before the impairment, so the lost segment appears in the ladder
followed by the duplicate ACKs and the retransmission.
"""


def _first_fast_repair(lad: ladder.Ladder) -> tuple[int, int, list[int]] | None:
    """The first retransmission that followed ACKs (arrow indexes: the original segment,
    the retransmission, the ACKs between). A loss repaired by a timer (RTO, TLP) with no
    ACK in between, which a loaded machine's timing can make the first, is passed over."""
    for first, arrow in enumerate(lad.arrows):
        if arrow.rightward or "[retransmission]" not in arrow.label:
            continue
        hole = arrow.label.split("seq=")[1].split()[0]
        start = next((i for i, a in enumerate(lad.arrows)
                      if not a.rightward and f" seq={hole} " in a.label), first)
        acks = [i for i in range(start + 1, first) if lad.arrows[i].rightward]
        if acks:
            return start, first, acks
    return None


def fast_retransmit(story: Story, workdir: Path) -> None:
    story.para(FAST_RETRANSMIT_STORY)
    impair = "out:delay=2ms,out:loss=1%,seed=1"
    daemon, result, _, deltas, knobs = _download(story, workdir, "fast-retransmit", impair,
                                                 1_000_000, sample=False)
    convs = connections(str(daemon.pcap), f":{HTTP}")
    retransmits = daemon.events("retransmit")
    story.section("the first loss on the wire")
    lad = ladder.ladder(convs[0]) if convs else None
    repair = _first_fast_repair(lad) if lad is not None else None
    if lad is not None and repair is not None:
        start, first, acks = repair
        hole = lad.arrows[first].label.split("seq=")[1].split()[0]
        shown = [start, *acks[-DUP_ACKS_SHOWN:], first]
        story.command(f"ustcp ladder {daemon.pcap}   # the lost segment (seq={hole}), the "
                      f"last {DUP_ACKS_SHOWN} ACKs before its retransmission, the "
                      "retransmission; the stack's new data in between is left out")
        before = ladder.window(lad, start, start)
        story.diagram(ladder.Ladder(lad.client, lad.server, before.initial,
                                    [lad.arrows[i] for i in shown]))
    story.counters(deltas, ["TcpRetransSegs", "TcpExtTCPSackRecovery", "TcpExtTCPTimeouts",
                            "UstcpImpairLoss"])
    story.step("retransmit events from the daemon's log (ca_state 3 = Recovery, 4 = Loss)")
    story.block("\n".join(f"seq={e.get('seq')} len={e.get('len')} ca_state={e.get('ca_state')}"
                          for e in retransmits[:6]) or "(none)")
    story.knobs(knobs)
    story.section("checks")
    fast = [e for e in retransmits if e.get("ca_state") == CA_RECOVERY]
    story.check(result.get("size_download") == 1_000_000, "curl got all 1000000 bytes")
    story.check(repair is not None,
                "the ladder shows a segment sent again after duplicate ACKs")
    story.check(bool(fast) and deltas.get("TcpExtTCPSackRecovery", 0) >= 1,
                f"{len(fast)} retransmissions were fast (in Recovery), "
                f"TCPSackRecovery {deltas.get('TcpExtTCPSackRecovery', 0)}")
    story.check(len(fast) > sum(e.get("ca_state") == CA_LOSS for e in retransmits),
                "more losses were repaired by fast retransmit than by the timer")
