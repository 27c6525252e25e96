"""The HTTP/1.1 keep-alive loop the static and metrics apps share (h11, through
:class:`ustcp.apps.http._Exchange`): read a request, let the app answer it, go on while
both sides are done and the client does not idle past the http app's timeout."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import h11
import trio

from ustcp.apps.http import IDLE_TIMEOUT, _Exchange

Responder = Callable[[_Exchange, h11.Request], Awaitable[None]]


async def serve_http(stream: trio.abc.HalfCloseableStream, respond: Responder) -> None:
    """Answer requests on ``stream`` with ``respond`` until the connection ends; a
    malformed request gets a 400 and the connection closes."""
    ex = _Exchange(stream)
    try:
        while True:
            event: object = None
            with trio.move_on_after(IDLE_TIMEOUT):
                event = await ex.next_event()
            if not isinstance(event, h11.Request):
                return
            await ex.read_body(lambda _: None)
            if event.method not in (b"GET", b"HEAD"):
                await ex.error(405, "Method Not Allowed", [("Allow", "GET, HEAD")])
            else:
                await respond(ex, event)
            if ex.conn.our_state is not h11.DONE or ex.conn.their_state is not h11.DONE:
                return
            ex.conn.start_next_cycle()
    except h11.RemoteProtocolError:
        if ex.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            await ex.error(400, "Bad Request", [("Connection", "close")])
