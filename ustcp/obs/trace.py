"""``ustcp trace``: follow a live daemon's events through its control socket.

The daemon's ``trace`` stream (:func:`ustcp.obs.control.trace_events`) sends every log event
at or above the follower's own ``--level`` (``debug`` by default: each ``state_change``,
``retransmit`` and ``drop``), whatever level the daemon logs at, as one JSON object with a
wall-clock ``time``. The daemon filters by event name and by a substring of the 4-tuple
(``conn="10.77.0.2:80>10.77.0.1:40000"``); this module prints what arrives, as JSON lines or
as one readable line per event, timed by the wall clock or, with ``--relative``, in seconds
since the first event shown (the engine's own clock, ``t``, is left out)::

    05:10:01.123456  state_change  10.77.0.2:80>10.77.0.1:40000  SYN_RECV -> ESTABLISHED
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any

from ustcp.defaults import LEVELS
from ustcp.obs import ctl as control

# Keys every event has, printed in the line's fixed columns or not at all.
_FRAME_KEYS = ("timestamp", "time", "t", "event", "conn", "level", "logger", "old", "new")
EVENT_WIDTH = 16


def _time(event: dict[str, Any], since: float | None) -> str:
    """The event's wall-clock time of day (``05:10:01.123456``), or with ``since`` the
    seconds after it (``+1.250300``)."""
    wall = float(event.get("time") or time.time())
    if since is not None:
        return f"+{wall - since:.6f}"
    return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1e6):06d}"


def format_event(event: dict[str, Any], since: float | None = None) -> str:
    """One readable line: time, event name, connection, then the other fields as
    ``key=value`` (a state change as ``OLD -> NEW``)."""
    parts = [_time(event, since), f"{event.get('event', '?')!s:<{EVENT_WIDTH}}"]
    if "conn" in event:
        parts.append(str(event["conn"]))
    if "old" in event or "new" in event:
        parts.append(f"{event.get('old', '?')} -> {event.get('new', '?')}")
    parts += [f"{key}={value}" for key, value in event.items() if key not in _FRAME_KEYS]
    if event.get("level") not in (None, "debug", "info"):
        parts.append(f"[{event['level']}]")
    return "  ".join(p for p in parts if p)


def follow(name: str, *, events: list[str] | None = None, conn: str | None = None,
           logger: str | None = None, level: str = "debug") -> Iterator[dict[str, Any]]:
    """The daemon's events at ``@name`` as they happen, filtered by the daemon."""
    return control.follow("trace", name=name, event=events or None, conn=conn or None,
                          logger=logger or None, level=level)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ustcp trace`` (the caller adds ``--control``)."""
    parser.add_argument("--event", action="extend", nargs="+", metavar="KIND",
                        help="only these events, e.g. state_change retransmit (repeatable)")
    parser.add_argument("--conn", metavar="TUPLE",
                        help="only events whose 4-tuple contains TUPLE, e.g. 10.77.0.1:40000")
    parser.add_argument("--logger", metavar="PREFIX",
                        help="only loggers starting with PREFIX, e.g. ustcp.tcp")
    parser.add_argument("--level", choices=LEVELS, default="debug",
                        help="the least severe events to follow, whatever the daemon's "
                             "--log-level (default debug)")
    parser.add_argument("--relative", action="store_true",
                        help="time events in seconds since the first one shown")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument("--count", type=int, metavar="N", help="stop after N events")


def main(args: argparse.Namespace) -> int:
    """``ustcp trace``: print events until the daemon goes away, ``--count`` is reached or
    Ctrl-C."""
    seen = 0
    since: float | None = None
    try:
        for event in follow(args.control, events=args.event, conn=args.conn,
                            logger=args.logger, level=args.level):
            event.pop("t", None)  # the engine's clock: meaningless outside the daemon
            if args.relative and since is None:
                since = float(event.get("time") or time.time())
            print(json.dumps(event) if args.json else format_event(event, since), flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    except KeyboardInterrupt:
        pass
    return 0
