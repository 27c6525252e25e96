"""``TCPStream.socket``: the part of a socket object that frameworks read from a stream.

Servers written for trio's ``SocketStream`` (hypercorn, for one) take the client and server
addresses from ``stream.socket.family``, ``getpeername()`` and ``getsockname()``. A ustcp
stream has no kernel socket, so :class:`StreamSocket` answers those from the connection:
``AF_INET`` or ``AF_INET6``, ``SOCK_STREAM``, and the 4-tuple as ``(host, port)``
string-address pairs.
``getsockopt``/``setsockopt`` go to the stream's own (the socket layer,
:mod:`ustcp.tcp.sock`, with Linux's semantics and errnos), as Python's ``socket`` takes them.
There is no file descriptor (``fileno()`` is -1, as for a closed socket).
"""

from __future__ import annotations

import socket
from typing import Protocol


class _Addressed(Protocol):
    @property
    def local_address(self) -> tuple[str, int]: ...

    @property
    def remote_address(self) -> tuple[str, int]: ...

    def getsockopt(self, level: int, option: int, buffersize: int = 0) -> int | bytes: ...

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None: ...


class StreamSocket:
    """A socket look-alike for one stream (see the module docstring)."""

    __slots__ = ("_stream",)

    type = socket.SOCK_STREAM
    proto = socket.IPPROTO_TCP

    def __init__(self, stream: _Addressed) -> None:
        self._stream = stream

    @property
    def family(self) -> int:
        """AF_INET6 for an IPv6 connection, else AF_INET."""
        return socket.AF_INET6 if ":" in self._stream.local_address[0] else socket.AF_INET

    def getsockname(self) -> tuple[str, int]:
        return self._stream.local_address

    def getpeername(self) -> tuple[str, int]:
        return self._stream.remote_address

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int | bytes:
        """``socket.getsockopt``: an int, or with ``buflen`` the option's bytes."""
        return self._stream.getsockopt(level, optname, buflen or 0)

    def setsockopt(self, level: int, optname: int, value: int | bytes) -> None:
        """``socket.setsockopt``: an int, or the option's bytes (SO_LINGER's struct)."""
        self._stream.setsockopt(level, optname, value)

    def fileno(self) -> int:
        return -1

    def __repr__(self) -> str:
        local, remote = self.getsockname(), self.getpeername()
        return f"<ustcp socket {local[0]}:{local[1]} -> {remote[0]}:{remote[1]}>"
