"""The client side of the daemon's control socket (see :mod:`ustcp.obs.control`).

Standard library only, so ``ustcp nstat``, ``ss``, ``sysctl`` and ``trace`` start without
importing trio, structlog or the engine.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

DEFAULT_NAME = "ustcp-control"


class ControlError(RuntimeError):
    """The daemon answered a request with an error."""


def address(name: str) -> str:
    """The abstract socket address for ``name`` (Python spells the NUL prefix as ``\\0``)."""
    return "\0" + name


def encode_line(obj: Any) -> bytes:
    return json.dumps(obj, default=str, separators=(",", ":")).encode() + b"\n"


def _connect(name: str, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address(name))
    except OSError:
        sock.close()
        raise
    return sock


def _check(reply: Any) -> dict[str, Any]:
    if not isinstance(reply, dict):
        raise ControlError(f"unexpected reply {reply!r}")
    if "error" in reply:
        raise ControlError(str(reply["error"]))
    return reply


def request(
    cmd: str, name: str = DEFAULT_NAME, timeout: float = 10.0, **args: Any
) -> dict[str, Any]:
    """Send one command to the daemon at ``@name`` and return its reply.

    ``OSError`` (ConnectionRefusedError) when no daemon listens there; ``ControlError`` when
    the daemon answers with an error.
    """
    with _connect(name, timeout) as sock, sock.makefile("rb") as reader:
        sock.sendall(encode_line({"cmd": cmd, **args}))
        line = reader.readline()
    if not line:
        raise ControlError("the daemon closed the control connection without answering")
    return _check(json.loads(line))


def request_all(
    cmd: str, name: str = DEFAULT_NAME, timeout: float = 10.0, **args: Any
) -> list[dict[str, Any]]:
    """:func:`request` to every worker of a ``serve --workers N`` daemon: worker 0 at
    ``@name`` says how many there are (``"workers"``), worker ``i`` answers at
    ``@name-i``. One reply for a daemon of one process."""
    first = request(cmd, name, timeout, **args)
    count = int(first.get("workers", 1))
    return [first, *(request(cmd, f"{name}-{i}", timeout, **args) for i in range(1, count))]


def follow(cmd: str, name: str = DEFAULT_NAME, **args: Any) -> Iterator[dict[str, Any]]:
    """Send a streaming command and yield each item until the daemon hangs up."""
    with _connect(name, None) as sock, sock.makefile("rb") as reader:
        sock.sendall(encode_line({"cmd": cmd, **args}))
        for line in reader:
            yield _check(json.loads(line))
