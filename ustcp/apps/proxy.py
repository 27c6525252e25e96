"""A TCP relay from the stack to a server behind it (``--app 8080=proxy:HOST:PORT``).

Each connection accepted on the stack opens one to ``HOST:PORT`` from the stack's own
address (:func:`ustcp.api.open_tcp_stream`: out through the TUN device, so a server on the
kernel's side of the namespace is reached at the kernel peer address, 10.77.0.1 by
default). Bytes are copied both ways; a FIN from either side becomes a FIN to the other
(``send_eof``) while the other direction carries on, so half-closed protocols work. A reset
on either side resets the other; a refused or unreachable upstream resets the client.
"""

from __future__ import annotations

import structlog
import trio

from ustcp.api import TCPStream, open_tcp_stream
from ustcp.apps.common import CONNECTION_GONE, Handler, ends_quietly

CHUNK = 256 * 1024
CONNECT_TIMEOUT = 10.0  # seconds; the SYN retries alone would take over two minutes

log = structlog.get_logger("ustcp.apps")


async def _pump(source: TCPStream, sink: TCPStream) -> None:
    """Copy until ``source``'s FIN, then pass the FIN on."""
    while data := await source.receive_some(CHUNK):
        await sink.send_all(data)
    await sink.send_eof()


def relay_to(host: str, port: int) -> Handler:
    """A handler that relays each connection to ``host:port`` (an IPv4 literal)."""

    @ends_quietly("proxy")
    async def relay(stream: trio.abc.HalfCloseableStream) -> None:
        assert isinstance(stream, TCPStream)
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                upstream = await open_tcp_stream(stream.stack, host, port)
        except (OSError, trio.TooSlowError) as exc:
            log.info("proxy_connect_failed", upstream=f"{host}:{port}", error=repr(exc))
            stream.abort()
            return
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, stream, upstream)
                nursery.start_soon(_pump, upstream, stream)
        except* CONNECTION_GONE:
            # One side was reset (or vanished): reset the other rather than closing it
            # cleanly, so the peer learns the stream is incomplete.
            stream.abort()
            upstream.abort()
        finally:
            await upstream.aclose()

    return relay
