"""Character generator (RFC 864): the 95-line rotating pattern, sent until the peer goes away.

Line k (k = 0..94) is the 72 printable ASCII characters starting at character 32 + k,
wrapping around after '~', followed by CRLF. One cycle of 95 lines is computed once; the
sender slices large chunks out of a buffer holding the cycle several times over, so no Python
loop runs per byte or per line while sending. Whatever the peer sends is discarded; its FIN
or reset ends the connection.
"""

from __future__ import annotations

import trio

from ustcp.apps.common import ends_quietly

PRINTABLE = bytes(range(32, 127))
LINE_WIDTH = 72
CHUNK = 256 * 1024  # per send_all: each call costs a scheduler round trip


def _cycle() -> bytes:
    doubled = PRINTABLE * 2
    return b"".join(doubled[k : k + LINE_WIDTH] + b"\r\n" for k in range(len(PRINTABLE)))


CYCLE = _cycle()
"""One full cycle of the pattern: 95 lines of 74 bytes."""

_REPEATED = memoryview(CYCLE * (CHUNK // len(CYCLE) + 2))


async def _send_forever(stream: trio.abc.HalfCloseableStream) -> None:
    offset = 0
    while True:
        await stream.send_all(_REPEATED[offset : offset + CHUNK])
        offset = (offset + CHUNK) % len(CYCLE)


async def _until_peer_closes(stream: trio.abc.HalfCloseableStream) -> None:
    while await stream.receive_some(CHUNK):
        pass


@ends_quietly("chargen")
async def handle(stream: trio.abc.HalfCloseableStream) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_send_forever, stream)
        await _until_peer_closes(stream)
        nursery.cancel_scope.cancel()
    await stream.aclose()
