"""``nstat`` for the daemon: counter values, deltas since the last look, and the command.

Linux's nstat keeps a history file and prints the increments since it was last written.
ustcp keeps that history inside the daemon instead (the client is a one-shot process that
may run in any namespace). The control command ``{"cmd": "nstat", ...}`` takes:

- nothing: the absolute values;
- ``"reset": true``: the increments since the history, which then becomes the current
  values (``nstat``'s default);
- ``"peek": true``: the increments, history left alone (``nstat -s``);
- ``"rebase": true``: the absolute values, and the history becomes them (``nstat -r``).

Gauges (TcpCurrEstab) are always absolute. ``ustcp nstat`` takes nstat's options: ``-a``
(absolute, history untouched), ``-z`` (zeros too), ``-r``, ``-s``, ``-n`` (no output),
``-j`` (iproute2's JSON: ``{"kernel": {name: value}}``), shell-style name patterns, and
``--prometheus`` (the text exposition format, node_exporter's netstat names).

This module imports no trio: the command's start-up stays fast.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from ustcp.mib import Counters
from ustcp.obs import ctl

GAUGES = frozenset({"TcpCurrEstab"})

# node_exporter's netstat collector splits nstat's names at the protocol: TcpExt_ListenDrops
_PROTOCOL = re.compile(r"(Ustcp|TcpExt|IpExt|Tcp|Ip|Icmp|IcmpMsg|Udp|UdpLite)(?=[A-Z])")


class Nstat:
    """The ``nstat`` control command for one stack's counters."""

    def __init__(self, counters: Counters,
                 extra: Callable[[], dict[str, int]] | None = None) -> None:
        self.counters = counters
        self.extra = extra  # counters kept elsewhere (the TUN device's own drops)
        self.baseline: dict[str, int] = {}
        self.baseline_time = time.monotonic()

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        current = self.counters.snapshot()
        if self.extra is not None:
            current.update(self.extra())
        now = time.monotonic()
        interval = now - self.baseline_time
        values = current
        if request.get("reset") or request.get("peek"):
            values = {
                name: value if name in GAUGES else value - self.baseline.get(name, 0)
                for name, value in current.items()
            }
        if request.get("reset") or request.get("rebase"):
            self.baseline, self.baseline_time = current, now
        return {"counters": values, "interval": interval}


def select(counters: dict[str, int], patterns: list[str], zeros: bool) -> dict[str, int]:
    """The counters nstat would print: matching a pattern (all without one), non-zero
    unless ``zeros``."""
    return {
        name: value for name, value in counters.items()
        if (zeros or value)
        and (not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns))
    }


def format_table(counters: dict[str, int]) -> str:
    """nstat's text: ``#kernel``, then name (32 columns) and value per line."""
    lines = ["#kernel", *(f"{name:<32}{value}" for name, value in counters.items())]
    return "\n".join(lines) + "\n"


def format_prometheus(counters: dict[str, int]) -> str:
    """The Prometheus text exposition format, one metric per counter, named as
    node_exporter's netstat collector names them (``ustcp_netstat_TcpExt_ListenDrops``)."""
    lines = []
    for name, value in counters.items():
        metric = "ustcp_netstat_" + _PROTOCOL.sub(r"\1_", name, count=1)
        kind = "gauge" if name in GAUGES else "counter"
        lines += [f"# HELP {metric} nstat's {name}.", f"# TYPE {metric} {kind}",
                  f"{metric} {value}"]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """nstat's options (the caller adds ``--control``)."""
    parser.add_argument("-a", "--ignore", "--all", dest="absolute", action="store_true",
                        help="absolute values (ignore and keep the history)")
    parser.add_argument("-z", "--zeros", action="store_true", help="show zero counters too")
    parser.add_argument("-r", "--reset", action="store_true",
                        help="reset the history: show absolute values, start a new interval")
    parser.add_argument("-s", "--noupdate", action="store_true",
                        help="show increments without updating the history")
    parser.add_argument("-n", "--nooutput", action="store_true",
                        help="update the history only")
    parser.add_argument("-j", "--json", action="store_true",
                        help='JSON as iproute2\'s nstat: {"kernel": {...}}')
    parser.add_argument("--prometheus", action="store_true",
                        help="the Prometheus text exposition format")
    parser.add_argument("patterns", nargs="*", metavar="PATTERN",
                        help="only counters matching these shell patterns (TcpExt*)")


def main(args: argparse.Namespace) -> int:
    """``ustcp nstat``: ask the daemon and print as nstat does."""
    if args.absolute or args.prometheus:  # a scraper wants monotonic counters
        request: dict[str, Any] = {}
    elif args.reset:
        request = {"rebase": True}
    elif args.noupdate:
        request = {"peek": True}
    else:
        request = {"reset": True}
    total: dict[str, int] = {}
    for reply in ctl.request_all("nstat", name=args.control, **request):  # every worker
        for name, value in reply["counters"].items():
            total[name] = total.get(name, 0) + value
    if args.nooutput:
        return 0
    counters = select(total, args.patterns, args.zeros or args.prometheus)
    if args.prometheus:
        sys.stdout.write(format_prometheus(counters))
    elif args.json:
        print(json.dumps({"kernel": counters}, separators=(",", ":")))
    else:
        sys.stdout.write(format_table(counters))
    return 0
