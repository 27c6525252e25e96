"""structlog set-up: console lines for people, JSON lines for machines, and a live trace tap.

Every layer logs with ``structlog.get_logger("ustcp.<layer>")``; :func:`configure_logging`
decides where the events go. Events below the chosen level cost one no-op call: the bound
logger class is built for that level (``structlog.make_filtering_bound_logger``).

:data:`TRACE` sees every event that passes the level filter, as a plain dict, before it is
rendered; the control socket's ``trace`` command subscribes to it to follow a live daemon.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import structlog
import trio

from ustcp.defaults import LEVELS

Format = Literal["console", "json"]


@dataclass(eq=False)
class Subscription:
    """One follower of the trace: a bounded channel, and how many events it missed."""

    send: trio.MemorySendChannel[dict[str, Any]]
    receive: trio.MemoryReceiveChannel[dict[str, Any]]
    dropped: int = 0


@dataclass
class TraceTap:
    """A structlog processor that copies each event to every subscriber, never blocking.

    A subscriber that falls more than its buffer behind loses events (counted in
    ``Subscription.dropped``) rather than slowing the stack down.
    """

    subscribers: set[Subscription] = field(default_factory=set)

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for sub in self.subscribers:
            try:
                sub.send.send_nowait(dict(event_dict))
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                sub.dropped += 1
        return event_dict

    @contextmanager
    def subscribe(self, buffer: int = 10_000) -> Iterator[Subscription]:
        send, receive = trio.open_memory_channel[dict[str, Any]](buffer)
        sub = Subscription(send, receive)
        self.subscribers.add(sub)
        try:
            yield sub
        finally:
            self.subscribers.discard(sub)
            send.close()
            receive.close()


TRACE = TraceTap()


class _NamedPrintLogger(structlog.PrintLogger):
    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


def _add_logger_name(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict.setdefault("logger", getattr(logger, "name", "ustcp"))
    return event_dict


def configure_logging(
    fmt: Format = "console", level: str = "info", stream: TextIO | None = None
) -> None:
    """Send log events at ``level`` and above to ``stream`` (stderr) as ``fmt`` lines."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    out = stream if stream is not None else sys.stderr
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
        tracebacks: list[structlog.typing.Processor] = [structlog.processors.dict_tracebacks]
    elif fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        timestamper = structlog.processors.TimeStamper(fmt="%H:%M:%S.%f", utc=False)
        tracebacks = []
    else:
        raise ValueError(f"log format must be console or json, got {fmt!r}")

    def logger_factory(*args: Any) -> _NamedPrintLogger:
        return _NamedPrintLogger(out, str(args[0]) if args else "ustcp")

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_logger_name,
            timestamper,
            TRACE,
            *tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
