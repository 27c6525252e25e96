#!/usr/bin/env python3
"""Plot cwnd, ssthresh and the flow-control windows from real runs of the ustcp engine.

Two ustcp engines run back to back on virtual time over a simulated path
(``tools/windowsim.py``); every ACK that reaches the sender is recorded. Three figures:

- ``congestion-reno.png`` and ``congestion-cubic.png`` (the algorithm of ``--cc`` only,
  unless ``--cc both``, the default): a 20 Mbit/s bottleneck with a 60-packet tail-drop
  queue and 40 ms of propagation RTT. Slow start overshoots and ends in a burst of tail
  drops (SACK recovery with PRR), congestion avoidance then fills the queue again and again
  (each overflow is one fast-recovery episode), one chosen segment is dropped at t = 7 s, and
  a 0.3 s outage at t = 17 s forces a retransmission timeout (cwnd = 1, slow start again);
- ``flow-control.png``: a 64 KB receive buffer and an application that reads everything at
  first, stops reading at t = 0.5 s (the advertised window shrinks to zero; the sender's
  persist timer probes with exponential backoff), and from t = 3.5 s reads 150 KB/s (the
  window reopens, an MSS or so at a time), then everything again from t = 5 s.

Usage::

    .venv/bin/python tools/plot_windows.py [--out docs/img] [--cc reno|cubic|both] [--seed N]

Deterministic: the same arguments give the same figures and the same summary. ``--seed``
changes the engines' ISNs and timestamp offsets (and the random loss of ``--loss``), never
the shape of the scenario.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
import time
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import structlog
from matplotlib.axes import Axes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from windowsim import Event, PathConfig, ReaderConfig, Result, Sample, run_transfer

from ustcp.config import StackConfig
from ustcp.tcp.congestion.base import TCP_INFINITE_SSTHRESH

CA_NAMES = {0: "Open", 1: "Disorder", 2: "CWR", 3: "Recovery", 4: "Loss"}
CA_COLOURS = {3: "#f4a261", 4: "#e63946"}

# The congestion scenario.
CC_RATE = 20e6
CC_DELAY = 0.020
CC_QUEUE = 60
CC_DURATION = 25.0
CC_DROPS = [7.0]
CC_BLACKOUT = (17.0, 17.3)

# The flow-control scenario.
FC_RCVBUF = 64000
FC_BYTES = 1_500_000
FC_PHASES: list[tuple[float, float | None]] = [(0.0, None), (0.5, 0.0), (3.5, 150_000.0),
                                               (5.0, None)]


def big_receive_buffer(cfg: StackConfig) -> None:
    # ustcp does not autotune the receive buffer (tcp_moderate_rcvbuf is not implemented),
    # so give the receiver a buffer that never limits the sender, as Linux's autotuning would.
    cfg.tcp_rmem = (4096, 6 << 20, 6 << 20)


def small_receive_buffer(cfg: StackConfig) -> None:
    cfg.tcp_rmem = (4096, FC_RCVBUF, FC_RCVBUF)  # below 64 KB: window scale 0


def quiet_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


# ---------------------------------------------------------------------------- runs

def run_congestion(cc: str, seed: int, loss: float) -> Result:
    path = PathConfig(rate_bps=CC_RATE, delay=CC_DELAY, queue_pkts=CC_QUEUE,
                      drops=list(CC_DROPS), blackouts=[CC_BLACKOUT], loss=loss, seed=seed)
    return run_transfer(path, ReaderConfig(), 1 << 30, cc=cc, seed=seed, until=CC_DURATION,
                        tweak_b=big_receive_buffer)


def run_flow_control(seed: int) -> Result:
    path = PathConfig(rate_bps=10e6, delay=0.010, queue_pkts=0, seed=seed)
    reader = ReaderConfig(phases=list(FC_PHASES))
    return run_transfer(path, reader, FC_BYTES, seed=seed, until=30.0,
                        tweak_b=small_receive_buffer)


# ---------------------------------------------------------------------------- plots

def shade_ca_states(ax: Axes, samples: Sequence[Sample], end: float) -> None:
    """Colour the time spans spent in Recovery and Loss."""
    labelled: set[int] = set()
    start: float | None = None
    state = 0
    for s in samples:
        if s.ca_state != state:
            if start is not None and state in CA_COLOURS:
                ax.axvspan(start, s.t, color=CA_COLOURS[state], alpha=0.25, lw=0,
                           label=None if state in labelled else f"CA_{CA_NAMES[state].upper()}")
                labelled.add(state)
            start, state = s.t, s.ca_state
    if start is not None and state in CA_COLOURS:
        ax.axvspan(start, end, color=CA_COLOURS[state], alpha=0.25, lw=0)


def plot_congestion(res: Result, cc: str, out: str) -> None:
    s = res.samples
    t = [x.t for x in s]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    shade_ca_states(ax, s, res.duration)
    ax.step(t, [x.cwnd for x in s], where="post", lw=1.3, color="#1d3557", label="cwnd")
    ss = [x.ssthresh if x.ssthresh < TCP_INFINITE_SSTHRESH else float("nan") for x in s]
    ax.step(t, ss, where="post", lw=1.2, ls="--", color="#2a9d8f", label="ssthresh")
    ax.plot(t, [x.in_flight for x in s], lw=0.6, color="#8d99ae", alpha=0.8,
            label="packets in flight")
    bdp = CC_RATE * 2 * CC_DELAY / 8 / (res.mss + 52)
    ax.axhline(bdp, color="grey", lw=0.8, ls=":")
    ax.axhline(bdp + CC_QUEUE, color="black", lw=0.8, ls=":")
    ax.text(CC_DURATION, bdp + 1, "path BDP", fontsize=8, color="grey", va="bottom",
            ha="right")
    ax.text(0.2, bdp + CC_QUEUE + 1, "BDP + bottleneck queue (tail drop above)", fontsize=8,
            va="bottom")
    marks(ax, res.events, cc)
    ax.set_ylabel(f"packets (MSS = {res.mss} B)")
    top = max(x.cwnd for x in s)
    ax.set_ylim(0, top * 1.15)
    annotate_phases(ax, res)
    fig.suptitle(f"ustcp {cc}: {CC_RATE / 1e6:.0f} Mbit/s bottleneck, "
                 f"{2 * CC_DELAY * 1000:.0f} ms RTT, {CC_QUEUE}-packet queue "
                 f"(engine on virtual time, one sample per ACK)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8, ncol=7,
              frameon=False)
    ax.grid(alpha=0.3)
    ax2.plot(t, [x.srtt_ms for x in s], lw=1, color="#6a4c93", label="smoothed RTT (ms)")
    ax2.plot(t, [x.rto_s * 1000 for x in s], lw=1, color="#e76f51", ls="--",
             label="RTO (ms, with backoff)")
    ax2.set_ylabel("ms")
    ax2.set_xlabel("time (s)")
    ax2.set_ylim(0, max(x.rto_s * 1000 for x in s) * 1.1)
    ax2.legend(loc="upper left", fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"congestion-{cc}.png"), dpi=110)
    plt.close(fig)


def annotate_phases(ax: Axes, res: Result) -> None:
    """Name what the curve is doing at a few places."""
    s = res.samples
    peak = max(s, key=lambda x: x.cwnd if x.t < 2.0 else 0)
    ax.annotate("slow start:\ncwnd doubles per RTT", xy=(peak.t, peak.cwnd),
                xytext=(peak.t + 0.8, peak.cwnd * 1.02), fontsize=8,
                arrowprops={"arrowstyle": "->", "lw": 0.8})
    recov = [e.t for e in res.events if e.kind == "recovery" and 2.0 < e.t < CC_DROPS[0]]
    if recov:
        x = recov[0]
        y = next(p.cwnd for p in s if p.t >= x)
        ax.annotate("queue overflow:\nfast recovery (PRR),\ncwnd -> ssthresh", xy=(x, y),
                    xytext=(x - 2.4, y * 0.28), fontsize=8,
                    arrowprops={"arrowstyle": "->", "lw": 0.8})
    mid = (CC_DROPS[0] + CC_BLACKOUT[0]) / 2
    y = next(p.cwnd for p in s if p.t >= mid)
    ax.annotate("congestion avoidance", xy=(mid, y), xytext=(mid - 1.0, y * 0.55),
                fontsize=8, arrowprops={"arrowstyle": "->", "lw": 0.8})
    rto = [e.t for e in res.events if e.kind == "rto"]
    if rto:
        ax.annotate("RTO: cwnd = 1,\nslow start up to ssthresh", xy=(rto[0], 1),
                    xytext=(rto[0] + 1.2, 12), fontsize=8,
                    arrowprops={"arrowstyle": "->", "lw": 0.8})


def marks(ax: Axes, events: Sequence[Event], cc: str) -> None:
    ymax = ax.get_ylim()[1]
    for d in CC_DROPS:
        ax.annotate("chosen drop", xy=(d, 2), xytext=(d, ymax * 0.05 + 8), fontsize=8,
                    ha="center", arrowprops={"arrowstyle": "->", "lw": 0.8})
    ax.axvspan(*CC_BLACKOUT, color="black", alpha=0.15, lw=0, label="outage (all lost)")
    first = True
    for e in events:
        if e.kind == "rto":
            ax.axvline(e.t, color="#e63946", lw=1, ls="-.",
                       label="RTO fired" if first else None)
            first = False


def plot_flow_control(res: Result, out: str) -> None:
    s = res.samples
    t = [x.t for x in s]
    kb = 1 / 1000
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 8), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 2]})
    ax.step(t, [(x.snd_una + x.snd_wnd) * kb for x in s], where="post", color="#2a9d8f",
            lw=1.3, label="SND.UNA + SND.WND (right edge of the send window)")
    ax.step(t, [x.snd_nxt * kb for x in s], where="post", color="#e76f51", lw=1.2,
            label="SND.NXT (next byte to send)")
    ax.step(t, [x.snd_una * kb for x in s], where="post", color="#1d3557", lw=1.2,
            label="SND.UNA (oldest unacknowledged byte)")
    probes = [e for e in res.events if e.kind == "probe"]
    if probes:
        ys = [interp_una(s, e.t) * kb for e in probes]
        ax.plot([e.t for e in probes], ys, "v", color="#e63946", ms=7,
                label="zero-window probe (seq SND.UNA-1, no data)")
    shade_phases(ax)
    ax.text(0.55, 680, "application not reading:\nwindow closes, persist probes", fontsize=8)
    ax.text(3.55, 900, "reads 150 KB/s:\nwindow updates,\nsmall openings", fontsize=8)
    ax.set_ylabel("sequence offset (KB)")
    ax.set_title(f"ustcp flow control: {FC_RCVBUF // 1000} KB receive buffer, application "
                 "stops reading at 0.5 s, reads 150 KB/s from 3.5 s, all from 5 s")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    ax2.step(t, [x.rcv_wnd * kb for x in s], where="post", color="#2a9d8f", lw=1.3,
             label="window advertised in each ACK (RCV.WND)")
    ax2.step(t, [x.rcv_queue * kb for x in s], where="post", color="#6a4c93", lw=1,
             label="bytes received, not yet read by the application")
    ax2.step(t, [(x.snd_nxt - x.snd_una) * kb for x in s], where="post", color="#e76f51",
             lw=0.8, alpha=0.8, label="bytes in flight (SND.NXT - SND.UNA)")
    for e in probes:
        ax2.axvline(e.t, color="#e63946", lw=0.6, ls=":")
    shade_phases(ax2)
    ax2.set_ylabel("KB")
    ax2.set_xlabel("time (s)")
    ax2.set_ylim(0, FC_RCVBUF * kb * 1.15)
    ax2.legend(loc="upper right", fontsize=8)
    ax2.grid(alpha=0.3)
    ax2.set_xlim(0, min(res.duration, 7.0) if res.duration > 5.5 else res.duration)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "flow-control.png"), dpi=110)
    plt.close(fig)


def interp_una(samples: Sequence[Sample], t: float) -> int:
    best = 0
    for x in samples:
        if x.t > t:
            break
        best = x.snd_una
    return best


def shade_phases(ax: Axes) -> None:
    for (start, rate), (end, _) in itertools.pairwise(FC_PHASES):
        if rate == 0:
            ax.axvspan(start, end, color="grey", alpha=0.12, lw=0)
        elif rate:
            ax.axvspan(start, end, color="#e9c46a", alpha=0.12, lw=0)


# ---------------------------------------------------------------------------- summary

def summary(name: str, res: Result, wall: float) -> str:
    ca = res.counters_a
    recov = ca["TcpExtTCPSackRecovery"] + ca["TcpExtTCPRenoRecovery"]
    goodput = res.bytes_delivered / res.duration / 1e6 if res.duration else 0.0
    return (f"{name:13s} max cwnd {max(x.cwnd for x in res.samples):4d} pkts  "
            f"recoveries {recov:2d}  RTOs {ca['TcpExtTCPTimeouts']}  "
            f"loss probes {ca['TcpExtTCPLossProbes']}  "
            f"zero-window probes {ca['TcpExtTCPWinProbe']}  "
            f"retransmitted {ca['TcpRetransSegs']} segs  "
            f"goodput {goodput:.2f} MB/s over {res.duration:.1f} s virtual "
            f"({wall:.1f} s real)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/img", help="directory for the PNGs (docs/img)")
    p.add_argument("--cc", choices=("reno", "cubic", "both"), default="both",
                   help="congestion control for the congestion figure(s) (both)")
    p.add_argument("--seed", type=int, default=1, help="engine seed (1)")
    p.add_argument("--loss", type=float, default=0.0,
                   help="extra random loss on the data path, percent (0)")
    p.add_argument("--no-flow-control", action="store_true",
                   help="skip the flow-control figure")
    args = p.parse_args(argv)
    quiet_logs()
    os.makedirs(args.out, exist_ok=True)
    ccs = ("reno", "cubic") if args.cc == "both" else (args.cc,)
    for cc in ccs:
        t0 = time.perf_counter()
        res = run_congestion(cc, args.seed, args.loss / 100)
        plot_congestion(res, cc, args.out)
        print(summary(cc, res, time.perf_counter() - t0))
        print(f"{'':13s} -> {os.path.join(args.out, f'congestion-{cc}.png')}")
    if not args.no_flow_control:
        t0 = time.perf_counter()
        res = run_flow_control(args.seed)
        plot_flow_control(res, args.out)
        print(summary("flow-control", res, time.perf_counter() - t0))
        print(f"{'':13s} -> {os.path.join(args.out, 'flow-control.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
