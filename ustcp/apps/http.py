"""A small HTTP/1.1 server on h11, with keep-alive.

``GET /``          a short page naming the stack and its version
``GET /bytes/N``   N bytes (at most 1 GiB) of deterministic content: :data:`BLOCK` repeated
``POST /sha256``   the lowercase hex SHA-256 of the request body (64 characters, no newline)

``HEAD`` works wherever ``GET`` does. Anything else is 404 (or 405 for a known path with the
wrong method). A malformed request gets a 400 and the connection closes; an idle keep-alive
connection closes after :data:`IDLE_TIMEOUT` seconds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import cast

import h11
import trio

from ustcp import __version__
from ustcp.apps.common import ends_quietly

RECEIVE_CHUNK = 256 * 1024
SEND_CHUNK = 256 * 1024
MAX_BYTES = 1 << 30
IDLE_TIMEOUT = 60.0
SERVER = f"ustcp/{__version__}"


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

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return cast("h11.Event | type[h11.PAUSED]", event)
            data = await self.stream.receive_some(RECEIVE_CHUNK)
            self.conn.receive_data(cast(bytes, data))

    async def send(self, event: h11.Event) -> None:
        if isinstance(event, h11.Data):
            for piece in self.conn.send_with_data_passthrough(event) or ():
                await self.stream.send_all(piece)
        elif data := self.conn.send(event):
            await self.stream.send_all(data)

    async def read_body(self, sink: Callable[[bytes], object]) -> None:
        """Feed the request body to ``sink`` chunk by chunk, up to its end."""
        if self.conn.client_is_waiting_for_100_continue:
            await self.send(h11.InformationalResponse(status_code=100, headers=[]))
        while True:
            event = await self.next_event()
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
        await self.send(h11.Response(status_code=status, headers=headers))
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
        event: object = None
        with trio.move_on_after(IDLE_TIMEOUT):
            event = await ex.next_event()
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
    await stream.aclose()
