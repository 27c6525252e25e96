"""The daemon's control socket: JSON lines over an abstract unix socket.

Abstract unix sockets (a name starting with a NUL byte) belong to a network namespace, so
``ustcp nstat`` run inside the daemon's namespace finds ``@ustcp-control`` without any path,
and daemons in different namespaces never collide. ``--control NAME`` picks another name.

Protocol: the client writes one JSON object per line, ``{"cmd": NAME, ...arguments}``.
A plain command answers with one JSON object on one line (``{"error": "..."}`` on failure);
a streaming command (``trace``) answers with one line per item until the client hangs up.
The server knows no command itself: the daemon registers a callable per command, so the
control socket depends on nothing below it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from ustcp.obs.ctl import DEFAULT_NAME, ControlError, address, encode_line, follow, request
from ustcp.obs.log import TRACE

__all__ = ["DEFAULT_NAME", "ControlError", "ControlServer", "address", "follow", "request",
           "trace_events"]

MAX_LINE = 64 * 1024

Request = dict[str, Any]
Command = Callable[[Request], dict[str, Any]]
StreamCommand = Callable[[Request], AsyncIterator[dict[str, Any]]]

log = structlog.get_logger("ustcp.control")


@dataclass
class ControlServer:
    """Serve registered commands on ``@name`` until cancelled."""

    name: str = DEFAULT_NAME
    workers: int = 1  # > 1: worker 0 of `serve --workers`; replies say how many to ask
    commands: dict[str, Command] = field(default_factory=dict)
    streams: dict[str, StreamCommand] = field(default_factory=dict)

    def add(self, cmd: str, fn: Command) -> None:
        self.commands[cmd] = fn

    def add_stream(self, cmd: str, fn: StreamCommand) -> None:
        self.streams[cmd] = fn

    async def bind(self) -> trio.SocketListener:
        """Bind ``@name``; ``OSError(EADDRINUSE)`` when a daemon here already has it."""
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await sock.bind(address(self.name))
            sock.listen(16)
        except OSError:
            sock.close()
            raise
        return trio.SocketListener(sock)

    async def serve(self, listener: trio.SocketListener) -> None:
        await trio.serve_listeners(self._handle, [listener])

    async def _handle(self, stream: trio.SocketStream) -> None:
        """One client; whatever goes wrong ends its connection, never the daemon."""
        try:
            await self._converse(stream)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except* Exception:
            log.exception("control_connection_failed")

    async def _converse(self, stream: trio.SocketStream) -> None:
        buffer = bytearray()
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                if len(buffer) > MAX_LINE:
                    await stream.send_all(encode_line({"error": "request line too long"}))
                    return
                chunk = await stream.receive_some(MAX_LINE)
                if not chunk:
                    return
                buffer += chunk
                continue
            line = bytes(buffer[:newline])
            del buffer[: newline + 1]
            if line.strip():
                await self._answer(stream, line)

    async def _answer(self, stream: trio.SocketStream, line: bytes) -> None:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ValueError('expected {"cmd": NAME, ...}')
        except ValueError as exc:
            await stream.send_all(encode_line({"error": f"bad request: {exc}"}))
            return
        cmd = request["cmd"]
        log.debug("control_request", cmd=cmd)
        if cmd in self.streams:
            await _stream_until_hangup(stream, self.streams[cmd](request))
        elif cmd in self.commands:
            try:
                reply = self.commands[cmd](request)
            except Exception as exc:  # a failing command must not take the daemon down
                log.exception("control_command_failed", cmd=cmd)
                reply = {"error": f"{cmd}: {type(exc).__name__}: {exc}"}
            if self.workers > 1 and "error" not in reply:
                reply = {**reply, "workers": self.workers}
            await stream.send_all(encode_line(reply))
        else:
            known = sorted([*self.commands, *self.streams])
            reply = {"error": f"unknown command {cmd!r}; known: {known}"}
            await stream.send_all(encode_line(reply))


async def _stream_until_hangup(
    stream: trio.SocketStream, items: AsyncIterator[dict[str, Any]]
) -> None:
    async def forward() -> None:
        async for item in items:
            await stream.send_all(encode_line(item))

    async def wait_hangup() -> None:
        while await stream.receive_some(MAX_LINE):
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_hangup)
        await forward()
        nursery.cancel_scope.cancel()


async def trace_events(request: Request) -> AsyncIterator[dict[str, Any]]:
    """The ``trace`` command: live log events, filtered by the request's optional keys.

    ``event``: a list of event names to keep; ``conn``: a substring of the ``conn`` key
    (``"10.77.0.1:5000"``); ``logger``: a logger-name prefix (``"ustcp.tcp"``). Only events
    at or above the daemon's log level reach the trace (``--log-level debug`` for all).
    """
    events = set(request.get("event") or ())
    conn = str(request.get("conn") or "")
    prefix = str(request.get("logger") or "")
    with TRACE.subscribe(level=str(request.get("level") or "debug")) as sub:
        async for event in sub.receive:
            if events and event.get("event") not in events:
                continue
            if conn and conn not in str(event.get("conn", "")):
                continue
            if prefix and not str(event.get("logger", "")).startswith(prefix):
                continue
            yield event


