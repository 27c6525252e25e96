"""``--app PORT=proxy:...``, ``PORT=static:DIR`` and ``PORT=module:function`` against the
kernel: curl through the proxy to ``python3 -m http.server`` on the kernel's side, curl of
the static app, and a user's module loaded by import path."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ustcp
from tests.kernel.nsutil import ADDR, PEER_ADDR, ROOT, Daemon, daemon, netns, peer_cmd

pytestmark = pytest.mark.kernel

UPSTREAM_PORT = 8000
HALF_PORT = "8002"  # peer.py serve: reads to EOF, then answers
BLOB = 3_000_000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Path]]:
    """A daemon with a proxy to the kernel side's :8000, the static app on a directory and a
    handler module of the user's; ``python3 -m http.server`` on the kernel side."""
    tmp = tmp_path_factory.mktemp("own")
    www = tmp / "www"
    www.mkdir()
    (www / "blob.bin").write_bytes(os.urandom(BLOB))
    (tmp / "secret.txt").write_text("outside")
    mods = tmp / "mods"
    mods.mkdir()
    (mods / "kernel_test_handlers.py").write_text(textwrap.dedent("""
        async def shout(stream):
            async for data in stream:
                await stream.send_all(data.upper())
    """))
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{mods}:{env_path}" if env_path else str(mods)
    try:
        with netns() as ns, daemon(
                ns, tmp / "serve.log", "--app", "http:80",
                "--app", f"8080=proxy:{PEER_ADDR}:{UPSTREAM_PORT}",
                "--app", f"8081=proxy:{PEER_ADDR}:{HALF_PORT}",
                "--app", f"8001=static:{www}",
                "--app", "9000=kernel_test_handlers:shout", "--metrics", "9100") as d:
            upstream = subprocess.Popen(
                ["ip", "netns", "exec", ns, "python3", "-m", "http.server", str(UPSTREAM_PORT),
                 "--bind", PEER_ADDR, "--directory", str(www)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
            try:
                yield d, www
            finally:
                upstream.kill()
                upstream.wait(timeout=10)
    finally:
        os.environ["PYTHONPATH"] = env_path


def _curl(d: Daemon, *args: str) -> subprocess.CompletedProcess[bytes]:
    return d.run("curl", "-s", "-m", "30", *args, timeout=40)


def test_proxy_carries_a_download_from_a_kernel_server(served: tuple[Daemon, Path]) -> None:
    d, www = served
    deadline = time.monotonic() + 20  # http.server starting up: a refused connect is reset
    while True:
        got = _curl(d, f"http://{ADDR}:8080/blob.bin")
        if got.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256(got.stdout).digest() == \
        hashlib.sha256((www / "blob.bin").read_bytes()).digest()


HALF_CLOSE_CLIENT = textwrap.dedent("""
    import socket, sys
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
    s.sendall(bytes(range(256)) * 800)
    s.shutdown(socket.SHUT_WR)
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    print(answer.decode().strip())
""")


def test_proxy_carries_half_close(served: tuple[Daemon, Path]) -> None:
    """The client half-closes; the proxy passes the FIN on, and the upstream's answer,
    which it sends only after that FIN, comes back before the proxy closes."""
    d, _ = served
    server = subprocess.Popen(["ip", "netns", "exec", d.ns, *peer_cmd("serve", HALF_PORT)],
                              stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert server.stdout is not None and server.stdout.readline() == b"listening\n"
        done = d.run("python3", "-c", HALF_CLOSE_CLIENT, ADDR, "8081", timeout=30)
    finally:
        server.kill()
        server.wait(timeout=10)
    body = bytes(range(256)) * 800
    assert done.stdout.decode().strip() == f"{len(body)} {hashlib.sha256(body).hexdigest()}", \
        done.stderr


def test_static_range_head_and_no_traversal(served: tuple[Daemon, Path]) -> None:
    d, www = served
    data = (www / "blob.bin").read_bytes()
    whole = _curl(d, f"http://{ADDR}:8001/blob.bin")
    assert whole.returncode == 0 and whole.stdout == data
    part = _curl(d, "-r", "100-199", f"http://{ADDR}:8001/blob.bin")
    assert part.stdout == data[100:200]
    head = _curl(d, "-I", f"http://{ADDR}:8001/blob.bin")
    assert head.stdout.startswith(b"HTTP/1.1 200") and f"{BLOB}".encode() in head.stdout
    escape = _curl(d, "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                   f"http://{ADDR}:8001/../secret.txt")
    assert escape.stdout == b"404"


def test_module_function_handler(served: tuple[Daemon, Path]) -> None:
    d, _ = served
    done = d.run("nc", "-N", ADDR, "9000", input=b"hello stack\n", timeout=20)
    assert done.stdout == b"HELLO STACK\n", done.stderr


def test_metrics_endpoint_for_prometheus(served: tuple[Daemon, Path]) -> None:
    d, _ = served
    got = _curl(d, "-i", f"http://{ADDR}:9100/metrics")
    head, _, body = got.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200") and "text/plain; version=0.0.4" in head
    samples = dict(line.split() for line in body.splitlines() if not line.startswith("#"))
    assert int(samples["ustcp_netstat_Tcp_PassiveOpens"]) >= 1  # this very connection
    assert "# TYPE ustcp_netstat_Tcp_CurrEstab gauge" in body
    assert _curl(d, "-o", "/dev/null", "-w", "%{http_code}",
                 f"http://{ADDR}:9100/").stdout == b"404"
    # The banner follows --log-format json: one event naming every app.
    [banner] = [json.loads(line) for line in d.output().splitlines()
                if '"serving"' in line]
    assert banner["apps"]["8080"] == f"proxy:{PEER_ADDR}:{UPSTREAM_PORT}"
    # The daemon runs the engine this test process runs (compiled in make test's main
    # pass: the packetdrill, engine and kernel tests all exercise the build).
    assert banner["engine"] == ustcp.ENGINE
