"""``--app`` specifications: a built-in app, a proxy, a directory, or your own handler.

Forms accepted by ``ustcp serve --app`` (repeatable)::

    NAME:PORT                 a built-in app by name (echo:7, http:80; the original form)
    PORT=NAME                 the same, port first (7=echo)
    PORT=proxy:HOST:HPORT     relay each connection to HOST:HPORT (apps/proxy.py)
    PORT=static:DIR           serve the files under DIR over HTTP/1.1 (apps/static.py)
    PORT=module:attr          your own trio stream handler, loaded as uvicorn loads an app:
                              ``import module`` (the working directory is on the path),
                              then ``module.attr`` (dots walk attributes), which must be an
                              async callable taking the stream

The built-in names take precedence over modules of the same name. A spec that cannot be
loaded raises :class:`AppSpecError`, which the CLI prints as one line (exit status 2).
"""

from __future__ import annotations

import importlib
import inspect
import os
import socket
import sys
from dataclasses import dataclass

from ustcp.apps import APPS
from ustcp.apps.common import Handler
from ustcp.callbacks import CallbackApp


class AppSpecError(ValueError):
    """An ``--app`` that names nothing servable."""


@dataclass(frozen=True)
class AppSpec:
    """One app to serve: its port, how the banner names it, and its handler (a trio stream
    handler, or an app on socket callbacks)."""

    port: int
    label: str
    handler: Handler | CallbackApp


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise AppSpecError(f"bad --app {spec!r}: {text!r} is not a port (1..65535)")
    return int(text)


def _is_async_callable(obj: object) -> bool:
    return inspect.iscoroutinefunction(obj) or (
        callable(obj) and inspect.iscoroutinefunction(type(obj).__call__))


def load_handler(path: str) -> Handler:
    """``module:attr`` -> the async callable it names (uvicorn's import_from_string)."""
    module_name, sep, attrs = path.partition(":")
    if not sep or not module_name or not attrs:
        raise AppSpecError(f"{path!r}: expected module:function")
    if os.getcwd() not in sys.path:  # uvicorn's --app-dir default: the working directory
        sys.path.insert(0, os.getcwd())
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppSpecError(f"{path!r}: cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:  # the module ran and failed: say so in one line
        raise AppSpecError(f"{path!r}: importing {module_name!r} raised "
                           f"{type(exc).__name__}: {exc}") from exc
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError as exc:
            raise AppSpecError(f"{path!r}: {module_name!r} has no attribute {attrs!r}") from exc
    if not _is_async_callable(obj):
        raise AppSpecError(f"{path!r} is not an async callable (expected "
                           "`async def handler(stream)`)")
    handler: Handler = obj  # type: ignore[assignment]
    return handler


def _target(port: int, target: str, spec: str) -> AppSpec:
    kind, _, rest = target.partition(":")
    if target in APPS:
        return AppSpec(port, target, APPS[target])
    if kind == "proxy":
        host, _, hport = rest.rpartition(":")
        try:
            socket.inet_aton(host)
        except OSError as exc:
            raise AppSpecError(f"bad --app {spec!r}: expected proxy:IPV4:PORT") from exc
        from ustcp.apps import proxy

        return AppSpec(port, target, proxy.relay_to(host, _port(hport, spec)))
    if kind == "static":
        if not os.path.isdir(rest):
            raise AppSpecError(f"bad --app {spec!r}: {rest!r} is not a directory")
        from ustcp.apps import static

        return AppSpec(port, target, static.serve_directory(rest))
    try:
        return AppSpec(port, target, load_handler(target))
    except AppSpecError as exc:
        raise AppSpecError(f"bad --app {spec!r}: {exc}") from exc


def parse_app(spec: str) -> AppSpec:
    """One ``--app`` argument (see the module's docstring for the forms)."""
    port_text, eq, target = spec.partition("=")
    if eq:
        return _target(_port(port_text, spec), target, spec)
    name, _, port_text = spec.partition(":")
    if name not in APPS:
        raise AppSpecError(f"bad --app {spec!r}: expected NAME:PORT with NAME one of "
                           f"{', '.join(APPS)}, or PORT=module:function")
    return AppSpec(_port(port_text, spec), name, APPS[name])


def parse_apps(specs: list[str]) -> list[AppSpec]:
    """Every ``--app``; a port given twice is an error."""
    apps: list[AppSpec] = []
    for spec in specs:
        app = parse_app(spec)
        if any(app.port == other.port for other in apps):
            raise AppSpecError(f"bad --app {spec!r}: port {app.port} is already taken")
        apps.append(app)
    return apps
