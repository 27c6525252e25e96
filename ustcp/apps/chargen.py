"""Character generator (RFC 864): the 95-line rotating pattern, sent until the peer goes away.

Line k (k = 0..94) is the 72 printable ASCII characters starting at character 32 + k,
wrapping around after '~', followed by CRLF. One cycle of 95 lines is computed once; the
sender slices large chunks out of a buffer holding the cycle several times over, so no Python
loop runs per byte or per line while sending. Whatever the peer sends is discarded; its FIN
or reset ends the connection.

An app on socket callbacks (:mod:`ustcp.callbacks`): it sends whenever the send buffer has
room, with no task per connection.
"""

from __future__ import annotations

from typing import Final

from ustcp.apps.discard import drain
from ustcp.callbacks import CallbackSocket

PRINTABLE: Final = bytes(range(32, 127))
LINE_WIDTH: Final = 72
CHUNK: Final = 256 * 1024  # the most one send offers


def _cycle() -> bytes:
    doubled = PRINTABLE * 2
    return b"".join(doubled[k : k + LINE_WIDTH] + b"\r\n" for k in range(len(PRINTABLE)))


CYCLE: Final = _cycle()
"""One full cycle of the pattern: 95 lines of 74 bytes."""

_REPEATED: Final = memoryview(CYCLE * (CHUNK // len(CYCLE) + 2))


class Chargen:
    """``offset``: where in the cycle the next byte sent is."""

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset = 0

    def ready(self, sock: CallbackSocket) -> None:
        drain(sock)
        if sock.closed:
            return  # the peer's FIN ends the stream
        offset = self.offset
        while sent := sock.send(_REPEATED[offset : offset + CHUNK]):
            offset = (offset + sent) % len(CYCLE)
        self.offset = offset
