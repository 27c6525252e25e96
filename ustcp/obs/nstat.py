"""``nstat`` for the daemon: counter values, and deltas since the last reset.

Linux's nstat keeps a history file and prints increments since it was last written. ustcp keeps
that baseline inside the daemon instead (the client is a one-shot process that may run in any
namespace): ``{"cmd": "nstat"}`` returns the absolute values; ``{"cmd": "nstat", "reset":
true}`` returns the increments since the previous reset (or since the daemon started) and
makes the current values the new baseline. Gauges (TcpCurrEstab) are always absolute.
"""

from __future__ import annotations

from typing import Any

import trio

from ustcp.mib import Counters

GAUGES = frozenset({"TcpCurrEstab"})


class Nstat:
    """The ``nstat`` control command for one stack's counters."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.baseline: dict[str, int] = {}
        self.baseline_time = trio.current_time()

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        current = self.counters.snapshot()
        now = trio.current_time()
        if not request.get("reset"):
            return {"counters": current}
        deltas = {
            name: value if name in GAUGES else value - self.baseline.get(name, 0)
            for name, value in current.items()
        }
        interval = now - self.baseline_time
        self.baseline, self.baseline_time = current, now
        return {"counters": deltas, "interval": interval}


def format_table(counters: dict[str, int], show_zero: bool) -> str:
    """Lines like ``nstat -a``'s: the name, then the value right-aligned."""
    lines = ["#ustcp"]
    lines += [
        f"{name:<32}{value:>16}" for name, value in counters.items() if show_zero or value
    ]
    return "\n".join(lines) + "\n"
