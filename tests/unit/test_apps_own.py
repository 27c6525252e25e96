"""``--app`` forms (built-ins, proxy, static, module:function), the static app, and the
library's server loop (a failing handler ends its connection only), over the in-memory pair."""

from __future__ import annotations

import os
import socket
import textwrap
from pathlib import Path

import h11
import pytest
import trio

import ustcp
from ustcp import cli
from ustcp.api import TCPStream
from ustcp.apps import static
from ustcp.apps.spec import AppSpecError, parse_app, parse_apps

B_ADDR = "10.0.0.2"


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module ``myhandlers`` in the working directory, as a user's own app would be."""
    (tmp_path / "myhandlers.py").write_text(textwrap.dedent("""
        async def shout(stream):
            async for data in stream:
                await stream.send_all(data.upper())

        class Greeter:
            async def __call__(self, stream):
                await stream.send_all(b"hi")

        greeter = Greeter()

        def not_async(stream):
            pass
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(__import__("sys").modules, "myhandlers", raising=False)
    return "myhandlers"


def test_app_forms(handler_module: str, tmp_path: Path) -> None:
    apps = parse_apps(["echo:7", "8=http", "8080=proxy:10.77.0.1:8000",
                       f"8000=static:{tmp_path}", f"9000={handler_module}:shout",
                       f"9001={handler_module}:greeter"])
    assert [(a.port, a.label) for a in apps] == [
        (7, "echo"), (8, "http"), (8080, "proxy:10.77.0.1:8000"), (8000, f"static:{tmp_path}"),
        (9000, "myhandlers:shout"), (9001, "myhandlers:greeter")]
    assert apps[4].handler.__name__ == "shout"


@pytest.mark.parametrize(("spec", "says"), [
    ("9000=nosuchmodule_xyz:handler", "cannot import 'nosuchmodule_xyz'"),
    ("9000=myhandlers:missing", "has no attribute 'missing'"),
    ("9000=myhandlers:not_async", "is not an async callable"),
    ("9000=myhandlers", "module:function"),
    ("9000=proxy:localhost:80", "proxy:IPV4:PORT"),
    ("9000=proxy:10.77.0.1:0", "is not a port"),
    ("9000=static:/nonexistent-dir-xyz", "is not a directory"),
    ("0=echo", "is not a port"),
])
def test_bad_app_is_one_line_and_status_2(
    handler_module: str, spec: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AppSpecError, match=says.replace("(", r"\(")):
        parse_app(spec)
    assert cli.main(["serve", "--app", spec]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ustcp: bad --app") and says in err[0], err


def test_static_resolve_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    (root / "index.html").write_text("i")
    (tmp_path / "secret").write_text("s")
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "inside").symlink_to(root / "sub" / "a.txt")
    r = root.resolve()
    assert static.resolve(r, b"/sub/a.txt") == r / "sub" / "a.txt"
    assert static.resolve(r, b"/sub/./a.txt?x=1") == r / "sub" / "a.txt"
    assert static.resolve(r, b"/") == r / "index.html"
    assert static.resolve(r, b"/inside") == r / "sub" / "a.txt"
    for target in (b"/../secret", b"/%2e%2e/secret", b"/sub/../../secret", b"/escape",
                   b"/sub/a.txt%00", b"//etc/passwd", b"secret", b"/nope", b"/sub"):
        assert static.resolve(r, target) is None, target


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), (b"bytes=0-9", (0, 9)), (b"bytes=10-", (10, 99)), (b"bytes=-10", (90, 99)),
    (b"bytes=90-200", (90, 99)), (b"bytes=100-", False), (b"bytes=5-4", False),
    (b"bytes=-0", False), (b"bytes=-", None), (b"bytes=0-1,5-6", None), (b"items=0-1", None),
])
def test_byte_range(header: bytes | None, expected: object) -> None:
    assert static.byte_range(header, 100) == expected


async def _http(stream: TCPStream, method: str, target: str,
                headers: list[tuple[str, str]] | None = None) -> tuple[h11.Response, bytes]:
    client = h11.Connection(h11.CLIENT)
    await stream.send_all(client.send(h11.Request(
        method=method, target=target, headers=[("Host", B_ADDR), *(headers or [])])))
    await stream.send_all(client.send(h11.EndOfMessage()))
    response: h11.Response | None = None
    body = b""
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await stream.receive_some())
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            return response, body


async def test_static_over_the_pair(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    (tmp_path / "blob.bin").write_bytes(data)
    (tmp_path.parent / f"{tmp_path.name}-secret").write_text("no")
    async with ustcp.open_memory_pair() as (a, b), trio.open_nursery() as nursery:
        await nursery.start(ustcp.serve_tcp, b, static.serve_directory(tmp_path), 8000)
        stream = await ustcp.open_tcp_stream(a, B_ADDR, 8000)
        response, body = await _http(stream, "GET", "/blob.bin")
        assert response.status_code == 200 and body == data
        response, body = await _http(stream, "GET", "/blob.bin", [("Range", "bytes=1000-1999")])
        headers = dict(response.headers)
        assert response.status_code == 206 and body == data[1000:2000]
        assert headers[b"content-range"] == b"bytes 1000-1999/300000"
        response, body = await _http(stream, "HEAD", "/blob.bin")
        assert response.status_code == 200 and body == b""
        assert dict(response.headers)[b"content-length"] == b"300000"
        response, _ = await _http(stream, "GET", "/blob.bin", [("Range", "bytes=300000-")])
        assert response.status_code == 416
        response, body = await _http(stream, "GET", f"/../{tmp_path.name}-secret")
        assert response.status_code == 404 and b"no" not in body
        response, _ = await _http(stream, "POST", "/blob.bin")
        assert response.status_code == 405
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_failing_handler_resets_its_connection_only() -> None:
    """A handler's exception is logged and resets that connection; the server goes on."""
    calls = 0

    async def flaky(stream: TCPStream) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("app bug")
        assert stream.socket.family == socket.AF_INET
        peer, local = stream.socket.getpeername(), stream.socket.getsockname()
        await stream.send_all(f"{peer[0]} {local[0]}:{local[1]}".encode())

    async with ustcp.open_memory_pair() as (a, b), trio.open_nursery() as nursery:
        await nursery.start(ustcp.serve_tcp, b, flaky, 7)
        first = await ustcp.open_tcp_stream(a, B_ADDR, 7)
        with pytest.raises(trio.BrokenResourceError) as info:
            await first.receive_some()
        assert isinstance(info.value.__cause__, ConnectionResetError)
        second = await ustcp.open_tcp_stream(a, B_ADDR, 7)
        assert await second.receive_some() == b"10.0.0.1 10.0.0.2:7"
        assert b.counters.snapshot()["TcpOutRsts"] >= 1
        nursery.cancel_scope.cancel()
