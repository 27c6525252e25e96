"""The daemon's apps: echo, discard and chargen run on socket callbacks
(:class:`ustcp.callbacks.CallbackApp`, no task per connection); http and lab are handlers
for ``ustcp.api.serve_listeners`` (or ``trio.serve_listeners``).

``APPS`` maps the names used by ``ustcp serve --app NAME:PORT`` to the handlers. ``lab``
(sockets on request, for ``ustcp demo``) runs only where asked for: it has no default port.
"""

from __future__ import annotations

from ustcp.apps import chargen, discard, echo, http, lab
from ustcp.apps.common import Handler
from ustcp.callbacks import CallbackApp

APPS: dict[str, Handler | CallbackApp] = {
    "echo": CallbackApp(echo.Echo),
    "discard": CallbackApp(discard.Discard),
    "chargen": CallbackApp(chargen.Chargen),
    "http": http.handle,
    "lab": lab.handle,
}

DEFAULT_PORTS: dict[str, int] = {"echo": 7, "discard": 9, "chargen": 19, "http": 80}
"""The well-known ports (RFC 862, 863, 864; HTTP)."""

__all__ = ["APPS", "DEFAULT_PORTS", "Handler"]
