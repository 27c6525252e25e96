"""Echo (RFC 862): send back every byte received; after the peer's FIN, send ours and finish."""

from __future__ import annotations

import trio

from ustcp.apps.common import ends_quietly

CHUNK = 256 * 1024


@ends_quietly("echo")
async def handle(stream: trio.abc.HalfCloseableStream) -> None:
    while data := await stream.receive_some(CHUNK):
        await stream.send_all(data)
    await stream.send_eof()
    await stream.aclose()
