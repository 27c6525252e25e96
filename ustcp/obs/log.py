"""structlog set-up: console lines for people, JSON lines for machines, and a live trace tap.

Every layer logs with ``structlog.get_logger("ustcp.<layer>")``; :func:`configure_logging`
decides where the events go. Events below the chosen level cost one no-op call: the bound
logger class is built for that level (``structlog.make_filtering_bound_logger``).

:data:`TRACE` copies events, as plain dicts with a wall-clock ``time``, to the followers
the control socket's ``trace`` command subscribes, each at its own level: a follower at
``debug`` sees state changes from a daemon logging at ``info``, while the daemon's own
output (stderr) still shows only ``info`` and above. An event below the output level costs
a no-op call unless a follower wants it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import structlog
import trio

from ustcp.debuglog import DEBUG
from ustcp.defaults import LEVELS

Format = Literal["console", "json"]
NO_FOLLOWER = logging.CRITICAL + 1
_LEVEL_NUMBERS = {name: logging.getLevelNamesMapping()[name.upper()] for name in LEVELS}
_LEVEL_NUMBERS["exception"] = logging.ERROR


@dataclass(eq=False)
class Subscription:
    """One follower of the trace: a bounded channel, and how many events it missed."""

    send: trio.MemorySendChannel[dict[str, Any]]
    receive: trio.MemoryReceiveChannel[dict[str, Any]]
    level: int = logging.DEBUG
    dropped: int = 0


@dataclass
class TraceTap:
    """A structlog processor that copies each event to every subscriber, never blocking.

    A subscriber that falls more than its buffer behind loses events (counted in
    ``Subscription.dropped``) rather than slowing the stack down.
    """

    subscribers: set[Subscription] = field(default_factory=set)
    min_level: int = NO_FOLLOWER  # the lowest level a follower wants
    output_level: int = logging.DEBUG  # configure_logging's level (DEBUG.on follows both)

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self.subscribers:
            level = _LEVEL_NUMBERS.get(method_name, logging.INFO)
            event = {**event_dict, "time": time.time()}
            for sub in self.subscribers:
                if level < sub.level:
                    continue
                try:
                    sub.send.send_nowait(dict(event))
                except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                    sub.dropped += 1
        return event_dict

    @contextmanager
    def subscribe(self, buffer: int = 10_000, level: str = "debug") -> Iterator[Subscription]:
        send, receive = trio.open_memory_channel[dict[str, Any]](buffer)
        sub = Subscription(send, receive, _LEVEL_NUMBERS[level.lower()])
        self.subscribers.add(sub)
        self.update()
        try:
            yield sub
        finally:
            self.subscribers.discard(sub)
            self.update()
            send.close()
            receive.close()

    def update(self) -> None:
        self.min_level = min((s.level for s in self.subscribers), default=NO_FOLLOWER)
        DEBUG.on = min(self.min_level, self.output_level) <= logging.DEBUG


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


def _wrapper_class(output_level: int) -> type[Any]:
    """structlog's filtering bound logger for ``output_level``, except that a method below
    that level passes the event on when a trace follower wants it."""
    base: Any = structlog.make_filtering_bound_logger(logging.DEBUG)
    methods: dict[str, Any] = {}
    for name, level in _LEVEL_NUMBERS.items():
        if level >= output_level:
            continue
        full = getattr(base, name)

        def method(self: Any, event: str, *args: Any, _full: Any = full, _level: int = level,
                   **kw: Any) -> Any:
            if TRACE.min_level > _level:
                return None
            return _full(self, event, *args, **kw)

        methods[name] = method
    return type("TraceAwareBoundLogger", (base,), methods)


def _output_level(level: int) -> structlog.typing.Processor:
    """Drop, after the trace tap, what is below the output level (it was for a follower)."""

    def processor(logger: Any, method_name: str,
                  event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if _LEVEL_NUMBERS.get(method_name, logging.INFO) < level:
            raise structlog.DropEvent
        return event_dict

    return processor


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

    TRACE.output_level = _LEVEL_NUMBERS[level.lower()]
    TRACE.update()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_logger_name,
            timestamper,
            TRACE,
            _output_level(_LEVEL_NUMBERS[level.lower()]),
            *tracebacks,
            renderer,
        ],
        wrapper_class=_wrapper_class(_LEVEL_NUMBERS[level.lower()]),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
