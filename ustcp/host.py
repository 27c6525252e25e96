"""The library's front door: a stack on a TUN device of its own, as one context manager.

``import ustcp`` exposes :func:`open_stack`, :func:`serve_tcp` and, from :mod:`ustcp.api`,
``open_tcp_listeners`` and ``open_tcp_stream``::

    async with ustcp.open_stack() as stack:            # ustcp0, 10.77.0.2, kernel 10.77.0.1/24
        await ustcp.serve_tcp(stack, handler, 7)

:func:`open_stack` does what ``ustcp serve`` does before it starts its apps (the daemon's
defaults: offloads on, Linux's sysctls), runs the stack's tasks in the background and
closes the device on the way out. Addresses are strings everywhere.

Logging: ustcp logs with structlog. A program that has configured structlog keeps its
configuration; otherwise :func:`open_stack` sends ustcp's events to the standard ``logging``
module under the ``ustcp.*`` logger names, at the level ``logging.getLogger("ustcp")``
has then (WARNING unless the program changes it), so a program that does nothing sees
warnings on stderr and never debug events on stdout.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import structlog
import trio

from ustcp.api import TCPStream, open_tcp_listeners, serve_listeners
from ustcp.callbacks import CallbackApp, serve_callbacks
from ustcp.config import StackConfig
from ustcp.debuglog import DEBUG
from ustcp.defaults import DEFAULT_ADDR, DEFAULT_MTU, DEFAULT_PEER, DEFAULT_TUN
from ustcp.link.base import Link
from ustcp.link.memory import memory_link_pair
from ustcp.link.pcap import PcapTap
from ustcp.link.tun import TunLink
from ustcp.mib import Counters
from ustcp.stack import Stack


def _quiet_logging() -> None:
    """Route structlog to ``logging`` unless the program configured structlog itself."""
    if structlog.is_configured():
        return
    level = logging.getLogger("ustcp").getEffectiveLevel()
    DEBUG.on = level <= logging.DEBUG
    structlog.configure(
        processors=[structlog.processors.add_log_level,
                    structlog.processors.format_exc_info,
                    structlog.processors.KeyValueRenderer(key_order=["event"])],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def _config(sysctl: Mapping[str, object] | None) -> StackConfig:
    """The knobs by their Linux names (``SysctlError``, a ValueError, for a bad one); and
    logging set up on the way, as every entry point here needs it."""
    config = StackConfig()
    for name, value in (sysctl or {}).items():
        config.set(name, str(value))
    _quiet_logging()
    return config


@asynccontextmanager
async def open_stack(addr: str = DEFAULT_ADDR, peer: str = DEFAULT_PEER, *,
                     tun: str = DEFAULT_TUN, mtu: int = DEFAULT_MTU, offload: bool = True,
                     sysctl: Mapping[str, object] | None = None,
                     pcap: str | os.PathLike[str] | None = None,
                     seed: int | None = None) -> AsyncIterator[Stack]:
    """A running :class:`~ustcp.stack.Stack` on a new TUN device ``tun``: the stack is
    ``addr``, the kernel's side of the device gets ``peer`` (``IP/PREFIX``); ``sysctl``
    sets knobs by their Linux names (``{"tcp_syncookies": 2}``), ``pcap`` records every
    frame. Needs root or CAP_NET_ADMIN, inside a network namespace (the kernel side's
    address is refused in the host's own)."""
    interface = ipaddress.IPv4Interface(peer)
    if ipaddress.IPv4Address(addr) not in interface.network:
        raise ValueError(f"{addr} is outside {interface.network}: the kernel could not "
                         "reach it through the device")
    config = _config(sysctl)
    counters = Counters()
    link: Link = TunLink(tun, mtu, offload, kernel_addr=peer, counters=counters)
    if pcap is not None:
        link = PcapTap(link, pcap)
    try:
        stack = Stack(link, config, counters, socket.inet_aton(addr), seed=seed)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stack.run)
            yield stack
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await link.aclose()


@asynccontextmanager
async def open_memory_pair(a_addr: str = "10.0.0.1", b_addr: str = "10.0.0.2", *,
                           a_addr6: str = "fd00::1", b_addr6: str = "fd00::2",
                           sysctl: Mapping[str, object] | None = None,
                           ) -> AsyncIterator[tuple[Stack, Stack]]:
    """Two running dual-stack stacks joined by an in-memory link: no device, no root, and
    under ``trio.testing.MockClock`` no real time. What ``a`` sends to ``b_addr`` or
    ``b_addr6``, ``b`` gets."""
    config = _config(sysctl)
    ca, cb = Counters(), Counters()
    la, lb = memory_link_pair(counters=(ca, cb))
    a = Stack(la, config, ca, socket.inet_aton(a_addr), seed=None,
              local_addr6=socket.inet_pton(socket.AF_INET6, a_addr6))
    b = Stack(lb, config, cb, socket.inet_aton(b_addr), seed=None,
              local_addr6=socket.inet_pton(socket.AF_INET6, b_addr6))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.run)
        nursery.start_soon(b.run)
        yield a, b
        nursery.cancel_scope.cancel()


async def serve_tcp(stack: Stack, handler: Callable[[TCPStream], Awaitable[Any]] | CallbackApp,
                    port: int, *, host: str = "0.0.0.0", backlog: int | None = None,
                    task_status: trio.TaskStatus[list[Any]] = trio.TASK_STATUS_IGNORED,
                    ) -> None:
    """Listen on ``host:port`` of ``stack`` and run ``handler(stream)`` for each connection
    in a task of its own until cancelled, as ``trio.serve_tcp`` does; or, for a
    :class:`~ustcp.callbacks.CallbackApp`, run its app on socket callbacks (no task per
    connection). A handler's exception is logged and resets its connection; the server
    carries on. ``nursery.start`` returns the listeners (port 0 picks a free port:
    ``listeners[0].local_address``)."""
    listeners = await open_tcp_listeners(stack, port, host=host, backlog=backlog)
    task_status.started(listeners)
    if isinstance(handler, CallbackApp):
        await serve_callbacks(stack, [lst.listener for lst in listeners], handler)
    else:
        await serve_listeners(handler, listeners)
