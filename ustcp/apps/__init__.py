"""The daemon's apps: each is a handler for ``ustcp.api.serve_listeners`` (or
``trio.serve_listeners``).

``APPS`` maps the names used by ``ustcp serve --app NAME:PORT`` to the handlers. ``lab``
(sockets on request, for ``ustcp demo``) runs only where asked for: it has no default port.
"""

from __future__ import annotations

from ustcp.apps import chargen, discard, echo, http, lab
from ustcp.apps.common import Handler

APPS: dict[str, Handler] = {
    "echo": echo.handle,
    "discard": discard.handle,
    "chargen": chargen.handle,
    "http": http.handle,
    "lab": lab.handle,
}

DEFAULT_PORTS: dict[str, int] = {"echo": 7, "discard": 9, "chargen": 19, "http": 80}
"""The well-known ports (RFC 862, 863, 864; HTTP)."""

__all__ = ["APPS", "DEFAULT_PORTS", "Handler"]
