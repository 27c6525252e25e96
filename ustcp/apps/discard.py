"""Discard (RFC 863): read and drop everything; close after the peer's FIN.

An app on socket callbacks (:mod:`ustcp.callbacks`)."""

from __future__ import annotations

from ustcp.callbacks import CallbackSocket

CHUNK = 256 * 1024


class Discard:
    __slots__ = ()

    def ready(self, sock: CallbackSocket) -> None:
        while (data := sock.recv(CHUNK)) is not None:
            if not data:
                sock.close()
                return
