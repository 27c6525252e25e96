"""Discard (RFC 863): read and drop everything; close after the peer's FIN."""

from __future__ import annotations

import trio

from ustcp.apps.common import ends_quietly

CHUNK = 256 * 1024


@ends_quietly("discard")
async def handle(stream: trio.abc.HalfCloseableStream) -> None:
    while await stream.receive_some(CHUNK):
        pass
    await stream.aclose()
