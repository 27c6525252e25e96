"""The live view: a read-only page about the running stack, served by the stack itself.

``ustcp serve --web PORT`` runs this app on the stack's own address (it is off by
default). Everything the browser needs comes from here, nothing from the Internet:

``GET /``              the page (``web_page.html``: HTML, CSS and our own script)
``GET /events``        server-sent events: a :func:`snapshot` every :data:`INTERVAL` s
``GET /snapshot``      one snapshot as JSON
``GET /ladder?conn=N`` the SVG ladder of the last segments of connection ``N``
                       (``local>remote``, as the logs name it), from the :class:`RingTap`

A snapshot holds the listeners (SYN queue and accept queue against the backlog), every
connection with its state and its ``tcp_info`` (cwnd, ssthresh, srtt, rto, both windows),
and all counters; the page keeps the last :data:`HISTORY_S` seconds of them and draws plots,
queue bars and the counters that moved. At most :data:`MAX_VIEWERS` event streams at once.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import h11
import trio

from ustcp.apps.common import Handler, ends_quietly
from ustcp.apps.http import _Exchange
from ustcp.apps.webapp import serve_http
from ustcp.link.ring import RingTap
from ustcp.obs import ladder
from ustcp.stack import Stack
from ustcp.tcp.engine import TcpEngine
from ustcp.wire.addr import endpoint

PAGE = resources.files(__package__).joinpath("web_page.html").read_bytes()
"""The page: HTML, CSS and our own small script (no library, nothing from the network). It
follows ``/events``, keeps the last :data:`HISTORY_S` seconds of every connection in
``window.ustcp.history`` (the kernel test reads it there) and redraws on every snapshot."""

INTERVAL = 0.25  # seconds between two snapshots on an event stream
HISTORY_S = 30  # seconds of history the page keeps and plots
MAX_VIEWERS = 8  # event streams at once; one more gets 503
LADDER_SEGMENTS = 40  # the last segments of the chosen connection drawn
STREAM_LIFETIME = 3600.0  # an event stream ends after an hour (the browser reconnects)


def _listeners(engine: TcpEngine) -> list[dict[str, Any]]:
    rows = []
    for listener in engine.listeners.values():
        rows.append({"local": endpoint(listener.local_ip, listener.port),
                     "syn_queue": listener.syn_queue_len,
                     "accept_queue": listener.accept_queue_len, "backlog": listener.backlog})
    return sorted(rows, key=lambda r: str(r["local"]))


def _connections(engine: TcpEngine, now: float) -> list[dict[str, Any]]:
    rows = []
    for conn in engine.connections.values():
        ti = conn.tcp_info(now)
        rows.append({
            "name": conn.name, "state": conn.state.ss_name,
            "cwnd": ti["tcpi_snd_cwnd"], "ssthresh": ti["tcpi_snd_ssthresh"],
            "srtt_ms": ti["tcpi_rtt"] / 1000, "rto_ms": ti["tcpi_rto"] / 1000,
            "snd_wnd": ti["tcpi_snd_wnd"], "rcv_wnd": ti["tcpi_rcv_wnd"],
            "bytes_acked": ti["tcpi_bytes_acked"], "bytes_received": ti["tcpi_bytes_received"],
        })
    return sorted(rows, key=lambda r: str(r["name"]))


def snapshot(stack: Stack) -> dict[str, Any]:
    """What the page shows, at this moment."""
    now = trio.current_time()
    return {"t": round(now, 3), "listeners": _listeners(stack.engine),
            "connections": _connections(stack.engine, now),
            "time_wait": len(stack.engine.time_wait.entries),
            "counters": stack.counters.snapshot()}


def ladder_svg(ring: RingTap, name: str) -> bytes | None:
    """The ladder of the last segments of connection ``name`` (``local>remote``)."""
    local, _, remote = name.partition(">")
    ends = {local, remote}
    segments = []
    for t, header in list(ring.frames):
        seg = ladder.decode_segment(t, header)
        if seg is not None and {seg.source, seg.destination} == ends:
            segments.append(seg)
    if not segments:
        return None
    convs = ladder.conversations(segments[-LADDER_SEGMENTS:])
    return ladder.render_svg([ladder.ladder(conv) for conv in convs]).encode()


class LiveView:
    """The app: its stack, its ring of headers, and how many event streams are open."""

    def __init__(self, stack: Stack, ring: RingTap) -> None:
        self.stack = stack
        self.ring = ring
        self.viewers = 0

    async def _events(self, ex: _Exchange) -> None:
        if self.viewers >= MAX_VIEWERS:
            await ex.error(503, "Service Unavailable: too many viewers")
            return
        self.viewers += 1
        try:
            await ex.send(h11.Response(status_code=200, headers=[
                ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]))
            with trio.move_on_after(STREAM_LIFETIME):
                while True:
                    data = json.dumps(snapshot(self.stack), separators=(",", ":"))
                    await ex.send(h11.Data(data=f"data: {data}\n\n".encode()))
                    await trio.sleep(INTERVAL)
            await ex.send(h11.EndOfMessage())
        finally:
            self.viewers -= 1

    async def respond(self, ex: _Exchange, request: h11.Request) -> None:
        """One GET or HEAD (serve_http answers anything else with 405)."""
        path, _, query = request.target.decode("ascii", "replace").partition("?")
        head = request.method == b"HEAD"
        if path == "/":
            await ex.respond(200, PAGE, len(PAGE), "text/html; charset=utf-8", head)
        elif path == "/snapshot":
            body = json.dumps(snapshot(self.stack)).encode()
            await ex.respond(200, body, len(body), "application/json", head)
        elif path == "/events":
            await self._events(ex)
        elif path == "/ladder":
            name = parse_qs(query).get("conn", [""])[0]
            svg = ladder_svg(self.ring, name)
            if svg is None:
                await ex.error(404, "Not Found: no segments of that connection")
            else:
                await ex.respond(200, svg, len(svg), "image/svg+xml", head)
        else:
            await ex.error(404, "Not Found")



def handler(stack: Stack, ring: RingTap) -> Handler:
    """The live view's connection handler."""
    view = LiveView(stack, ring)

    @ends_quietly("web")
    async def handle(stream: trio.abc.HalfCloseableStream) -> None:
        await serve_http(stream, view.respond)

    return handle
