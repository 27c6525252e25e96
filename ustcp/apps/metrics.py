"""The daemon's counters for Prometheus (``ustcp serve --metrics [HOST:]PORT``).

Served by the stack itself, on its own address: ``GET /metrics`` answers the text
exposition format of ``ustcp nstat --prometheus`` (every counter, zeros included); anything
else is 404. A scraper on the kernel's side of the namespace (or routed to it, see
docs/operations.md) reaches it at ``http://10.77.0.2:PORT/metrics``.
"""

from __future__ import annotations

import h11
import trio

from ustcp.apps.common import Handler, ends_quietly
from ustcp.apps.http import _Exchange
from ustcp.apps.webapp import serve_http
from ustcp.obs.counters import Counters
from ustcp.obs.nstat import format_prometheus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_app(counters: Counters) -> Handler:
    """A handler serving ``counters`` at ``/metrics``."""

    async def respond(ex: _Exchange, request: h11.Request) -> None:
        if request.target.partition(b"?")[0] != b"/metrics":
            await ex.error(404, "Not Found")
            return
        body = format_prometheus(counters.snapshot()).encode()
        await ex.respond(200, body, len(body), CONTENT_TYPE, request.method == b"HEAD")

    @ends_quietly("metrics")
    async def handle(stream: trio.abc.HalfCloseableStream) -> None:
        await serve_http(stream, respond)

    return handle
