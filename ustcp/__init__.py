"""ustcp: a userspace TCP/IP stack in Python on a Linux TUN device.

The library API, loaded on first use (so the ``ustcp`` command's control clients start
without importing trio or the engine)::

    open_stack          async context manager: a running Stack on a TUN device of its own
    open_memory_pair    two running stacks joined in memory (no device, no root)
    serve_tcp           serve a handler on a port of a stack (trio.serve_tcp's counterpart),
                        or an app on socket callbacks (CallbackApp, ustcp.callbacks)
    open_tcp_listeners  listen on a port of a stack
    open_tcp_stream     connect from a stack
    TCPStream, TCPListener, Stack, StackConfig, CallbackApp, CallbackSocket

See docs/python-api.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ustcp.compiled import activate as _activate

__version__ = "0.1.0"
# "compiled" or "pure": which engine this process runs (USTCP_ENGINE, see ustcp/compiled.py);
# decided here, before any engine module is imported.
ENGINE = _activate()

_EXPORTS = {
    "open_stack": "ustcp.host",
    "serve_tcp": "ustcp.host",
    "open_memory_pair": "ustcp.host",
    "open_tcp_listeners": "ustcp.api",
    "open_tcp_stream": "ustcp.api",
    "serve_listeners": "ustcp.api",
    "TCPStream": "ustcp.api",
    "TCPListener": "ustcp.api",
    "Stack": "ustcp.stack",
    "CallbackApp": "ustcp.callbacks",
    "CallbackSocket": "ustcp.callbacks",
    "StackConfig": "ustcp.config",
}

__all__ = [
    "CallbackApp",
    "CallbackSocket",
    "Stack",
    "StackConfig",
    "TCPListener",
    "TCPStream",
    "__version__",
    "open_memory_pair",
    "open_stack",
    "open_tcp_listeners",
    "open_tcp_stream",
    "serve_listeners",
    "serve_tcp",
]

if TYPE_CHECKING:
    from ustcp.api import (
        TCPListener,
        TCPStream,
        open_tcp_listeners,
        open_tcp_stream,
        serve_listeners,
    )
    from ustcp.config import StackConfig
    from ustcp.host import open_memory_pair, open_stack, serve_tcp
    from ustcp.stack import Stack


def __getattr__(name: str) -> Any:  # PEP 562: import the API on first use
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ustcp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
