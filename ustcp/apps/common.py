"""What every app shares: the connection-gone errors and a wrapper that ends quietly on them."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import structlog
import trio

Handler = Callable[[trio.abc.HalfCloseableStream], Awaitable[None]]

CONNECTION_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)
"""Raised by a stream whose peer reset it (or that we closed): the connection just ends."""

log = structlog.get_logger("ustcp.apps")


def ends_quietly(name: str) -> Callable[[Handler], Handler]:
    """Make a handler end its connection without an error when the peer goes away, and
    log anything else that goes wrong instead of letting it end ``serve_listeners``; close
    the stream either way."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(stream: trio.abc.HalfCloseableStream) -> None:
            try:
                await handler(stream)
            except* CONNECTION_GONE as group:
                log.debug("app_connection_gone", app=name, error=repr(group.exceptions[0]))
            except* Exception:  # a failing connection must not take the daemon down
                log.exception("app_failed", app=name)
            finally:
                # TCPStream.aclose never waits, so this closes as surely as
                # trio.aclose_forcefully without its cancelled scope (~28 µs). A stream
                # the handler closed itself is left alone: aclose would only add a
                # checkpoint (a scheduler pass, ~6 µs) as the task ends.
                if not getattr(stream, "closed", False):
                    await stream.aclose()

        return run

    return wrap
