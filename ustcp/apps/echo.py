"""Echo (RFC 862): send back every byte received; after the peer's FIN, send ours and finish.

An app on socket callbacks (:mod:`ustcp.callbacks`): no task per connection, one scheduler
pass per round trip."""

from __future__ import annotations

from typing import Final

from ustcp.callbacks import CallbackSocket

CHUNK: Final = 256 * 1024


class Echo:
    """Reads only while everything read so far has been sent: a peer that sends and never
    reads fills our send buffer, then our receive window, and is stopped by flow control."""

    __slots__ = ("unsent",)

    def __init__(self) -> None:
        self.unsent = memoryview(b"")

    def ready(self, sock: CallbackSocket) -> None:
        while True:
            unsent = self.unsent
            if unsent:
                # The call stays out of the slice: compiled, a memoryview slice evaluates
                # its bounds twice (mypyc 2.4), and the data would go out twice.
                sent = sock.send(unsent)
                self.unsent = unsent = unsent[sent:]
                if unsent:
                    return  # called again when the send buffer has room
            data = sock.recv(CHUNK)
            if data is None:
                return  # called again when more comes
            if not data:
                sock.close()  # the peer's FIN, and everything echoed: our FIN
                return
            self.unsent = memoryview(data)
