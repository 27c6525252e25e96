"""A small HTTP/1.1 server on h11, with keep-alive.

``GET /``          a short page naming the stack and its version
``GET /bytes/N``   N bytes (at most 1 GiB) of deterministic content: :data:`BLOCK` repeated
``POST /sha256``   the lowercase hex SHA-256 of the request body (64 characters, no newline)

``HEAD`` works wherever ``GET`` does. Anything else is 404 (or 405 for a known path with the
wrong method). A malformed request gets a 400 and the connection closes.

Deadlines (:data:`DEADLINES`, set by ``ustcp serve --http-deadline NAME=SECONDS``), so that no
client holds a connection by being slow (the defaults are Apache mod_reqtimeout's and
nginx's):

- ``head``: a request head must be complete this long after the connection (or the previous
  response) became ready for it. An idle keep-alive connection is closed quietly; one that
  sent part of a head gets 408 Request Timeout (RFC 9110 15.5.9) and is closed.
- ``body`` and ``body_rate``: a request body gets ``body`` seconds plus one second per
  ``body_rate`` bytes received; past that, 408 and close.
- ``send``: each chunk of a response (at most :data:`SEND_CHUNK` bytes) must be taken by the
  client within this long; a client that stops reading is cut off with a RST.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import cast

import h11
import trio

from ustcp import __version__
from ustcp.api import TCPStream
from ustcp.apps.common import ends_quietly

RECEIVE_CHUNK = 256 * 1024
# A response goes out in views of BLOCK this large, one send_all each (the send deadline's
# unit, as nginx's send_timeout runs per write of up to sendfile_max_chunk, 2 MB): 256 KB
# cost the daemon 1,146-1,537 µs of CPU per MB of GET /bytes/N, 1 MiB 829-931.
SEND_CHUNK = 1024 * 1024
MAX_BYTES = 1 << 30
SERVER = f"ustcp/{__version__}"


@dataclass
class Deadlines:
    """The http app's deadlines, in seconds (``body_rate`` in bytes per second)."""

    head: float = 60.0  # nginx client_header_timeout
    body: float = 20.0  # Apache RequestReadTimeout body=20,MinRate=500
    body_rate: float = 500.0
    send: float = 60.0  # nginx send_timeout

    def set(self, assignment: str) -> None:
        """``name=seconds`` (``--http-deadline``): ValueError if it is not one."""
        name, _, value = assignment.partition("=")
        if name not in self.__dataclass_fields__:
            raise ValueError(f"expected one of {', '.join(self.__dataclass_fields__)}, "
                             f"got {name!r}")
        number = float(value)
        if not 0 < number <= 86400:
            raise ValueError(f"{name} must be in (0, 86400], got {value!r}")
        setattr(self, name, number)


DEADLINES = Deadlines()


class RequestTimeout(Exception):
    """The client took longer than a deadline allows to send its request."""


REQUEST_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nServer: " + SERVER.encode()
                            + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def _block(size: int) -> bytes:
    """SHA-256 in counter mode: incompressible, and the same on every run and machine."""
    return b"".join(
        hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(size // 32)
    )


BLOCK = _block(1 << 20)
"""``/bytes/N`` returns the first N bytes of this 1 MiB block repeated end to end."""

_BLOCK_VIEW = memoryview(BLOCK)

PAGE = f"""<!DOCTYPE html>
<html><head><title>ustcp {__version__}</title></head>
<body>
<h1>ustcp {__version__}</h1>
<p>Served by ustcp, a userspace TCP/IP stack in Python, on a Linux TUN device.</p>
<ul>
<li><code>GET /bytes/N</code>: N bytes of deterministic content</li>
<li><code>POST /sha256</code>: the SHA-256 of the request body</li>
</ul>
</body></html>
""".encode()

_BYTES_PATH = re.compile(r"/bytes/(\d{1,12})")


def content(n: int) -> Iterator[memoryview]:
    """The body of ``/bytes/n``, in chunks that divide :data:`BLOCK` evenly."""
    offset = 0
    while n > 0:
        take = min(n, SEND_CHUNK)
        yield _BLOCK_VIEW[offset : offset + take]
        offset = (offset + take) % len(BLOCK)
        n -= take


class _Exchange:
    """One connection: its stream and its h11 state machine."""

    def __init__(self, stream: trio.abc.HalfCloseableStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER)
        self.received = 0  # bytes of the current request so far

    async def next_event(self, deadline: float = float("inf")) -> h11.Event | type[h11.PAUSED]:
        """The next h11 event; :class:`RequestTimeout` if it needs data past ``deadline``."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return cast("h11.Event | type[h11.PAUSED]", event)
            with trio.move_on_at(deadline):
                data = await self.stream.receive_some(RECEIVE_CHUNK)
                self.received += len(data)
                self.conn.receive_data(cast(bytes, data))
                continue
            raise RequestTimeout

    async def send(self, event: h11.Event) -> None:
        if isinstance(event, h11.Data):
            for piece in self.conn.send_with_data_passthrough(event) or ():
                await self._send_all(piece)
        elif data := self.conn.send(event):
            await self._send_all(data)

    async def _send_all(self, data: bytes) -> None:
        """One piece, taken by the client within the ``send`` deadline, or a RST."""
        with trio.move_on_after(DEADLINES.send):
            await self.stream.send_all(data)
            return
        if isinstance(self.stream, TCPStream):
            self.stream.abort()
        raise trio.ClosedResourceError("the client did not read the response in time")

    async def read_body(self, sink: Callable[[bytes], object]) -> None:
        """Feed the request body to ``sink`` chunk by chunk, up to its end, within the
        ``body`` deadline plus one second per ``body_rate`` bytes."""
        if self.conn.client_is_waiting_for_100_continue:
            await self.send(h11.InformationalResponse(status_code=100, headers=[]))
        started, head = trio.current_time(), self.received
        while True:
            rate_allowance = (self.received - head) / DEADLINES.body_rate
            event = await self.next_event(started + DEADLINES.body + rate_allowance)
            if isinstance(event, h11.Data):
                sink(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise h11.RemoteProtocolError(f"unexpected {event!r} in a request body")

    async def respond(
        self,
        status: int,
        body: bytes | Iterable[memoryview],
        length: int,
        content_type: str = "text/plain; charset=utf-8",
        head_only: bool = False,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        headers = [
            ("Server", SERVER),
            ("Content-Type", content_type),
            ("Content-Length", str(length)),
            *extra,
        ]
        await self.send(h11.Response(status_code=status, headers=headers,
                                     reason=HTTPStatus(status).phrase.encode()))
        if not head_only:
            chunks = [memoryview(body)] if isinstance(body, bytes) else body
            for chunk in chunks:
                await self.send(h11.Data(data=cast(bytes, chunk)))
        await self.send(h11.EndOfMessage())

    async def error(self, status: int, message: str, extra: Iterable[tuple[str, str]] = ()) -> None:
        body = f"{status} {message}\n".encode()
        await self.respond(status, body, len(body), extra=extra)


async def _serve_request(ex: _Exchange, request: h11.Request) -> None:
    method = request.method.decode("ascii", "replace")
    path = request.target.decode("ascii", "replace").partition("?")[0]
    if path == "/sha256":
        if method != "POST":
            await ex.read_body(lambda _: None)
            await ex.error(405, "Method Not Allowed", [("Allow", "POST")])
            return
        digest = hashlib.sha256()
        await ex.read_body(digest.update)
        hexdigest = digest.hexdigest().encode()
        await ex.respond(200, hexdigest, len(hexdigest))
        return
    await ex.read_body(lambda _: None)
    match = _BYTES_PATH.fullmatch(path)
    if path != "/" and match is None:
        await ex.error(404, "Not Found")
        return
    if method not in ("GET", "HEAD"):
        await ex.error(405, "Method Not Allowed", [("Allow", "GET, HEAD")])
        return
    head_only = method == "HEAD"
    if match is None:
        await ex.respond(200, PAGE, len(PAGE), "text/html; charset=utf-8", head_only)
        return
    n = int(match.group(1))
    if n > MAX_BYTES:
        await ex.error(400, f"Bad Request: at most {MAX_BYTES} bytes")
        return
    await ex.respond(200, content(n), n, "application/octet-stream", head_only)


async def _serve(ex: _Exchange) -> None:
    while True:
        # Bytes of the next request may already be here (pipelining): they count.
        ex.received = len(ex.conn.trailing_data[0])
        event = await ex.next_event(trio.current_time() + DEADLINES.head)
        if not isinstance(event, h11.Request):
            return
        await _serve_request(ex, event)
        if ex.conn.our_state is not h11.DONE or ex.conn.their_state is not h11.DONE:
            return
        ex.conn.start_next_cycle()


@ends_quietly("http")
async def handle(stream: trio.abc.HalfCloseableStream) -> None:
    ex = _Exchange(stream)
    try:
        await _serve(ex)
    except h11.RemoteProtocolError as exc:
        if ex.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            status = HTTPStatus(exc.error_status_hint)
            await ex.error(status, status.phrase, [("Connection", "close")])
    except RequestTimeout:
        if ex.conn.our_state is h11.SEND_RESPONSE:  # in a body: h11 frames the 408
            await ex.error(408, "Request Timeout", [("Connection", "close")])
        elif ex.received:  # part of a head: h11 has no request to answer, so the bytes
            await stream.send_all(REQUEST_TIMEOUT_RESPONSE)  # go out as they are
        # an idle keep-alive connection just closes (RFC 9112 9.5)
    await stream.aclose()
