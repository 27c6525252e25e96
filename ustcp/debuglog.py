"""Whether a debug event would go anywhere: one flag the hot path reads before it builds
a debug event's arguments.

A filtered-out ``log.debug(...)`` still costs the call through structlog's lazy proxy and
the arguments (a connection's name, a state's name): about 3 µs on this machine, several
times per connection. Hot code writes ``if DEBUG.on: log.debug(...)`` instead.
:func:`ustcp.obs.log.configure_logging` and ``ustcp.host``'s logging set-up keep the flag
true exactly when the output level or a trace follower (``ustcp trace``) wants debug
events; unconfigured (a program that set structlog up itself) it stays true.

This module is at the bottom of the tree, with :mod:`ustcp.mib`: it imports nothing.
"""

from __future__ import annotations


class DebugGate:
    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = True


DEBUG = DebugGate()
