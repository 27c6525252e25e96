"""``ustcp demo``: a guided run of each mechanism the seeds teach, against the Linux kernel.

Every demo makes a network namespace of its own, starts the daemon inside it with the knobs
involved, drives the kernel's side, and tells what happened: a short explanation, the ladder
diagram from the daemon's capture, the sockets (``ustcp ss``), the counters that moved
(``ustcp nstat``) and the knobs. It checks what it promised and exits 0 only if all held;
the namespace is deleted whatever happens. ``ustcp demo`` lists the topics.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ustcp.demo.story import Story

BUDGET = 90.0  # seconds; every demo finishes well inside it, even on a loaded machine (at
# load 12 on two cores 30 s was not enough for orphan-retries in 3 runs of 20)


@dataclass(frozen=True)
class Topic:
    name: str
    summary: str
    target: str  # "module:function" in this package, imported only when the demo runs
    budget: float = BUDGET  # seconds before the demo is stopped

    def runner(self) -> Callable[[Story, Path], None]:
        module, _, function = self.target.partition(":")
        run: Callable[[Story, Path], None] = getattr(
            importlib.import_module(f"ustcp.demo.{module}"), function)
        return run


TOPICS: dict[str, Topic] = {t.name: t for t in (
    Topic("handshake", "the three-way handshake and the options it negotiates",
          "handshake:run"),
    Topic("syn-queue", "SYN (half-open) queue overflow without syncookies",
          "listen:syn_queue"),
    Topic("accept-queue", "accept queue overflow, tcp_abort_on_overflow 0 and 1",
          "listen:accept_queue"),
    Topic("syn-flood", "a SYN flood with and without syncookies", "listen:syn_flood"),
    Topic("close", "the four-way close, CLOSE_WAIT, LAST_ACK and TIME_WAIT", "close:run"),
    Topic("tw-reuse", "reusing a TIME_WAIT 4-tuple for a new active open (tcp_tw_reuse)",
          "close:tw_reuse"),
    Topic("paws", "timestamps and PAWS rejecting an old duplicate", "paws:run"),
    Topic("tw-recycle", "tcp_tw_recycle's per-host PAWS dropping a client behind a NAT",
          "recycle:run"),
    Topic("flow-control", "a reader that stops reading: zero window and window probes",
          "flow:run"),
    Topic("congestion", "cwnd over time: slow start, loss, recovery (text plot)",
          "congestion:run"),
    Topic("fast-retransmit", "a lost segment repaired by duplicate ACKs, not the timer",
          "congestion:fast_retransmit"),
    Topic("syn-retries", "an unanswered SYN: tcp_syn_retries, live and on virtual time",
          "retries:run"),
    Topic("linger", "close() with SO_LINGER {1, T}: blocks for the FIN's ACK or T seconds",
          "linger:run"),
    Topic("orphan-retries", "an orphan's FIN never acknowledged (tcp_orphan_retries)",
          "orphans:orphan_retries"),
    Topic("fin-timeout", "an orphaned FIN_WAIT2 whose peer never closes (tcp_fin_timeout)",
          "orphans:fin_timeout"),
    Topic("max-orphans", "too many orphans: FIN then RST (tcp_max_orphans)",
          "orphans:max_orphans"),
    Topic("max-tw-buckets", "a full TIME_WAIT table (tcp_max_tw_buckets)",
          "orphans:max_tw_buckets"),
    Topic("time-wait-fin", "TIME_WAIT re-acknowledges a retransmitted FIN",
          "orphans:time_wait_fin"),
    Topic("ipv6", "the same stack over IPv6: ping -6, curl -6, MSS 1440", "ipv6:run"),
    Topic("pmtu", "a 1280-byte link behind a router: ICMP lowers the MSS; ICMP refusals",
          "pmtu:run"),
)}


class BudgetExceeded(Exception):
    """The demo ran past :data:`BUDGET`."""


def _over_budget(signum: int, frame: FrameType | None) -> None:
    raise BudgetExceeded("the demo took longer than its budget")


def list_topics() -> str:
    width = max(len(name) for name in TOPICS)
    lines = ["ustcp demo TOPIC: each runs in a network namespace of its own (root needed)", ""]
    lines += [f"  {t.name:<{width}}  {t.summary}" for t in TOPICS.values()]
    return "\n".join(lines) + "\n"


def run_topic(topic: Topic, story: Story, keep: Path | None = None) -> int:
    """Run one demo; with ``keep``, its captures, logs and the SVG of its ladders
    (``TOPIC.svg``) stay in that directory."""
    from ustcp.demo.netns import DemoError, missing_privileges

    reason = missing_privileges()
    if reason is not None:
        print(f"ustcp demo: {reason}", file=sys.stderr)
        return 1
    story.title(f"ustcp demo {topic.name}: {topic.summary}")
    previous = signal.signal(signal.SIGALRM, _over_budget)
    signal.setitimer(signal.ITIMER_REAL, topic.budget)
    try:
        with contextlib.ExitStack() as stack:
            if keep is None:
                workdir = Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix=f"ustcp-demo-{topic.name}-")))
            else:
                workdir = keep
                workdir.mkdir(parents=True, exist_ok=True)
            try:
                topic.runner()(story, workdir)
            finally:
                drawing = story.svg()
                if keep is not None and drawing is not None:
                    (keep / f"{topic.name}.svg").write_text(drawing)
    except (DemoError, BudgetExceeded) as exc:
        story.check(False, f"the demo ran to the end ({exc})")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return story.verdict(topic.name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``ustcp demo``."""
    parser.add_argument("topic", nargs="?", metavar="TOPIC",
                        help=f"one of: {', '.join(TOPICS)} (none: list them)")
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="keep the demo's captures (*.pcap), daemon logs and the SVG of "
                             "its ladder diagrams (TOPIC.svg) in DIR")


def main(args: argparse.Namespace) -> int:
    """``ustcp demo [TOPIC]``."""
    if args.topic is None:
        sys.stdout.write(list_topics())
        return 0
    topic = TOPICS.get(args.topic)
    if topic is None:
        print(f"ustcp demo: unknown topic {args.topic!r}\n", file=sys.stderr)
        sys.stderr.write(list_topics())
        return 2
    from ustcp.demo.story import Story

    return run_topic(topic, Story(), args.keep)
