"""Lab: sockets on request, for the guided demos (``ustcp demo``).

Some mechanisms need an application that misbehaves on purpose: one that never accepts (the
accept queue overflows), one that never reads (the receive window closes), or one that opens
connections itself (the stack holds TIME_WAIT and may reuse it). The lab app lets a kernel
client ask for those over a line protocol; every reply is one line starting ``ok`` or
``error``::

    listen PORT BACKLOG   listen(PORT, BACKLOG) and never accept
    sink PORT             listen on PORT, accept, and never read
    dial HOST PORT LPORT [LINGER]
                          connect from LPORT (0: any) to HOST:PORT, read one line, close first;
                          replies "ok LPORT LINE" or "error ERRNO_NAME text"; with LINGER
                          the close has SO_LINGER {1, LINGER} and the reply is
                          "ok LPORT close=SECONDS LINE", SECONDS the time close() blocked

Whatever a request creates lives until the requesting connection closes (at most
:data:`LIFETIME` seconds), so the demos clean up by hanging up.
"""

from __future__ import annotations

import errno
import socket
import struct

import trio

from ustcp.api import TCPListener, TCPStream, open_tcp_listeners, open_tcp_stream
from ustcp.apps.common import CONNECTION_GONE, ends_quietly
from ustcp.wire.addr import pton

LIFETIME = 120.0
MAX_LINE = 256
MAX_SOCKETS = 16  # listeners, sinks and dials per requesting connection
DIAL_TIMEOUT = 10.0  # a dial that nobody answers fails at 7 s with tcp_syn_retries 2


async def _sink(listener: TCPListener) -> None:
    """Accept connections and keep them without ever reading."""
    held: list[TCPStream] = []
    try:
        while len(held) < MAX_SOCKETS:
            held.append(await listener.accept())
        await trio.sleep_forever()
    finally:
        for stream in held:
            await trio.aclose_forcefully(stream)
        await trio.aclose_forcefully(listener)


async def _dial(stack_stream: TCPStream, host: str, port: int, local_port: int,
                linger: int | None = None) -> str:
    try:
        with trio.fail_after(DIAL_TIMEOUT):
            stream = await open_tcp_stream(stack_stream.stack, host, port,
                                           local_port=local_port or None)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        return f"error {name} {exc.strerror or exc}"
    except trio.TooSlowError:
        return "error ETIMEDOUT no answer"
    line = b""
    try:
        with trio.move_on_after(DIAL_TIMEOUT):
            while b"\n" not in line and len(line) < MAX_LINE:
                chunk = await stream.receive_some(MAX_LINE)
                if not chunk:
                    break
                line += chunk
    except CONNECTION_GONE:
        pass
    finally:
        if linger is not None:
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, linger))
        start = trio.current_time()
        await stream.aclose()
    text = line.split(b"\n", 1)[0].decode(errors="replace")
    closed = "" if linger is None else f"close={trio.current_time() - start:.3f} "
    return f"ok {stream.local_address[1]} {closed}{text}".rstrip()


async def _serve_requests(stream: TCPStream, nursery: trio.Nursery) -> None:
    buffer = b""
    created = 0
    while True:
        while b"\n" not in buffer:
            if len(buffer) > MAX_LINE:
                await stream.send_all(b"error line too long\n")
                return
            chunk = await stream.receive_some(MAX_LINE)
            if not chunk:
                return
            buffer += chunk
        raw, buffer = buffer.split(b"\n", 1)
        words = raw.decode(errors="replace").split()
        if created >= MAX_SOCKETS:
            reply = "error too many requests on this connection"
        else:
            created += 1
            reply = await _request(stream, nursery, words)
        await stream.send_all(reply.encode() + b"\n")


async def _request(stream: TCPStream, nursery: trio.Nursery, words: list[str]) -> str:
    try:
        if words[:1] == ["listen"] and len(words) == 3:
            port, backlog = int(words[1]), int(words[2])
            listeners = await open_tcp_listeners(stream.stack, port, host=stream.local_address[0],
                                                 backlog=backlog)
            nursery.start_soon(_hold, listeners[0])
            return f"ok listening on {port} backlog {listeners[0].listener.backlog}"
        if words[:1] == ["sink"] and len(words) == 2:
            port = int(words[1])
            listeners = await open_tcp_listeners(stream.stack, port, host=stream.local_address[0])
            nursery.start_soon(_sink, listeners[0])
            return f"ok sink on {port}"
        if words[:1] == ["dial"] and len(words) in (4, 5):
            pton(words[1])  # a literal of either version (ValueError otherwise)
            linger = int(words[4]) if len(words) == 5 else None
            if linger is not None and not 0 <= linger <= LIFETIME:
                raise ValueError(f"LINGER outside 0..{LIFETIME:.0f}")
            return await _dial(stream, words[1], int(words[2]), int(words[3]), linger)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        return f"error {name} {exc.strerror or exc}"
    except ValueError as exc:
        return f"error bad request: {exc}"
    return "error expected: listen PORT BACKLOG | sink PORT | dial HOST PORT LPORT [LINGER]"


async def _hold(listener: TCPListener) -> None:
    """Keep a listener open without ever accepting."""
    try:
        await trio.sleep_forever()
    finally:
        await trio.aclose_forcefully(listener)


@ends_quietly("lab")
async def handle(stream: trio.abc.HalfCloseableStream) -> None:
    assert isinstance(stream, TCPStream)
    with trio.move_on_after(LIFETIME):
        async with trio.open_nursery() as nursery:
            await _serve_requests(stream, nursery)
            nursery.cancel_scope.cancel()
