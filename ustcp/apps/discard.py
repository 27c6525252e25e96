"""Discard (RFC 863): read and drop everything; close after the peer's FIN.

An app on socket callbacks (:mod:`ustcp.callbacks`)."""

from __future__ import annotations

from typing import Final

from ustcp.callbacks import CallbackSocket

CHUNK: Final = 256 * 1024


def drain(sock: CallbackSocket) -> None:
    """Read and drop what has come; after the peer's FIN, close (``sock.closed``)."""
    while (data := sock.recv(CHUNK)) is not None:
        if not data:
            sock.close()
            return


class Discard:
    __slots__ = ()

    def ready(self, sock: CallbackSocket) -> None:
        drain(sock)
