"""The daemon's apps: the stream handlers over trio's in-memory streams and trio's own TCP on
127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import socket
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from ustcp import __version__
from ustcp.apps import APPS, chargen
from ustcp.apps import http as http_app
from ustcp.apps.common import ends_quietly


async def _read_all(stream: trio.abc.ReceiveStream) -> bytes:
    out = bytearray()
    while chunk := await stream.receive_some(65536):
        out += chunk
    return bytes(out)


async def test_registry_names_the_apps() -> None:
    assert set(APPS) == {"echo", "discard", "chargen", "http", "lab"}


async def test_chargen_pattern() -> None:
    line0 = bytes(range(32, 104)) + b"\r\n"
    assert chargen.CYCLE[:74] == line0
    assert len(chargen.CYCLE) == 95 * 74
    assert chargen.CYCLE[74:148] == bytes(range(33, 105)) + b"\r\n"
    assert chargen.CYCLE[-74:] == b"~" + bytes(range(32, 103)) + b"\r\n"
    # (the apps on socket callbacks, echo, discard and chargen, are served over an
    # in-memory pair of stacks in tests/engine/test_callback_apps.py)


async def test_http_bytes_content_is_the_block_repeated() -> None:
    n = 3 * len(http_app.BLOCK) + 777
    body = b"".join(http_app.content(n))
    assert len(body) == n
    assert body == (http_app.BLOCK * 4)[:n]


@pytest.fixture
async def http_port() -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, http_app.handle, 0, host="127.0.0.1")
        )
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


async def test_http_get_root_names_the_stack(http_port: int) -> None:
    def client() -> tuple[int, bytes]:
        return _get(http.client.HTTPConnection("127.0.0.1", http_port, timeout=10), "/")

    status, body = await trio.to_thread.run_sync(client)
    assert status == 200
    assert f"ustcp {__version__}".encode() in body


async def test_http_bytes_repeatable_and_keep_alive(http_port: int) -> None:
    n = 2_500_001

    def client() -> list[tuple[int, bytes]]:
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        results = [_get(conn, f"/bytes/{n}")]
        first_socket = conn.sock
        results.append(_get(conn, f"/bytes/{n}"))
        assert conn.sock is first_socket, "the second request reused the connection"
        results.append(_get(conn, "/bytes/0"))
        results.append(_get(conn, f"/bytes/{http_app.MAX_BYTES + 1}"))
        results.append(_get(conn, "/nowhere"))
        conn.close()
        return results

    (s1, b1), (s2, b2), (s0, b0), (s_big, _), (s404, _) = await trio.to_thread.run_sync(client)
    assert (s1, s2, s0, s_big, s404) == (200, 200, 200, 400, 404)
    assert len(b1) == n and b1 == b2 and b0 == b""
    assert hashlib.sha256(b1).digest() == hashlib.sha256(b"".join(http_app.content(n))).digest()


async def test_http_post_sha256_and_keep_alive(http_port: int) -> None:
    bodies = [os.urandom(3_000_000), b"", b"hello"]

    def client() -> list[tuple[int, bytes]]:
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        out = []
        for body in bodies:
            conn.request("POST", "/sha256", body=body)
            response = conn.getresponse()
            out.append((response.status, response.read()))
        conn.request("GET", "/sha256")
        response = conn.getresponse()
        out.append((response.status, response.read()))
        conn.close()
        return out

    results = await trio.to_thread.run_sync(client)
    for body, (status, got) in zip(bodies, results[:3], strict=True):
        assert status == 200
        assert got == hashlib.sha256(body).hexdigest().encode()
    assert results[3][0] == 405


def _raw_exchange(port: int, *parts: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for part in parts:
            sock.sendall(part)
            if part.endswith(b"\r\n\r\n") and b"Expect" in part:
                interim = b""
                while not interim.endswith(b"\r\n\r\n"):
                    interim += sock.recv(1)
                assert interim.startswith(b"HTTP/1.1 100 ")
        sock.shutdown(socket.SHUT_WR)
        out = bytearray()
        while chunk := sock.recv(65536):
            out += chunk
        return bytes(out)


async def test_http_expect_100_continue(http_port: int) -> None:
    body = b"a" * 5000
    head = (
        b"POST /sha256 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 5000\r\nConnection: close\r\n\r\n"
    )
    reply = await trio.to_thread.run_sync(_raw_exchange, http_port, head, body)
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    assert reply.endswith(hashlib.sha256(body).hexdigest().encode())


async def test_http_malformed_request_gets_400(http_port: int) -> None:
    reply = await trio.to_thread.run_sync(_raw_exchange, http_port, b"NONSENSE\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")


async def test_http_client_vanishing_mid_download_is_quiet(http_port: int) -> None:
    def client() -> None:
        with socket.create_connection(("127.0.0.1", http_port), timeout=10) as sock:
            sock.sendall(b"GET /bytes/100000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.recv(1000)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")

    await trio.to_thread.run_sync(client)
    status, _ = await trio.to_thread.run_sync(
        lambda: _get(http.client.HTTPConnection("127.0.0.1", http_port, timeout=10), "/")
    )
    assert status == 200


async def test_http_head_has_headers_only(http_port: int) -> None:
    def client() -> tuple[int, str | None, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        conn.request("HEAD", "/bytes/12345")
        response = conn.getresponse()
        return response.status, response.getheader("Content-Length"), response.read()

    assert await trio.to_thread.run_sync(client) == (200, "12345", b"")


async def test_a_failing_handler_is_logged_not_raised() -> None:
    @ends_quietly("broken")
    async def broken(stream: trio.abc.HalfCloseableStream) -> None:
        raise RuntimeError("bug")

    client, server = trio.testing.memory_stream_pair()
    await broken(server)
    assert await client.receive_some(10) == b""  # and the stream was closed


class _CountingStream(trio.abc.HalfCloseableStream):
    """A stream that counts its ``aclose`` calls and says whether it is closed, as
    ``ustcp.api.TCPStream.closed`` does."""

    def __init__(self) -> None:
        self.closes = 0
        self.closed = False

    async def aclose(self) -> None:
        self.closes += 1
        self.closed = True
        await trio.lowlevel.checkpoint()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        raise NotImplementedError

    async def wait_send_all_might_not_block(self) -> None:
        raise NotImplementedError

    async def send_eof(self) -> None:
        raise NotImplementedError

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        raise NotImplementedError


async def test_a_handler_that_closed_its_stream_is_not_closed_again() -> None:
    """ends_quietly closes the stream a handler left open, and only that one: a second
    aclose would add a scheduler pass to every connection's end."""

    @ends_quietly("closes")
    async def closes(stream: trio.abc.HalfCloseableStream) -> None:
        await stream.aclose()

    @ends_quietly("leaves")
    async def leaves(stream: trio.abc.HalfCloseableStream) -> None:
        pass

    for handler, expected in ((closes, 1), (leaves, 1)):
        stream = _CountingStream()
        await handler(stream)
        assert stream.closes == expected
