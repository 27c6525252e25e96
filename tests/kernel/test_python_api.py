"""The programs of docs/python-api.md, taken from the page and run against the kernel: the
echo server (nc), the client (to ``python3 -m http.server``), TLS (curl -k), hypercorn
(curl), trio-websocket (a kernel-side trio-websocket client); the memory pair runs anywhere.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.kernel.nsutil import ADDR, PEER_ADDR, ROOT, in_ns, interrupt, netns

pytestmark = pytest.mark.kernel

PAGE = ROOT / "docs" / "python-api.md"
READY_TIMEOUT = 20.0

WAIT_PORT = """
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[3])
while True:
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.1)
"""

WS_CLIENT = """
import trio
from trio_websocket import open_websocket_url

async def main():
    async with open_websocket_url("ws://10.77.0.2:8765/") as ws:
        await ws.send_message("hello websocket")
        print(await ws.get_message())

trio.run(main)
"""


def programs() -> dict[str, str]:
    """The page's ```python blocks that start with ``# file: NAME``."""
    blocks = re.findall(r"```python\n# file: (\S+)\n(.*?)```", PAGE.read_text(), re.DOTALL)
    return dict(blocks)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("examples")
    for name, code in programs().items():
        (where / name).write_text(code)
    return where


@contextmanager
def running(ns: str, script: Path, port: int, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """The program in ``ns`` until ``port`` answers on the stack; SIGINT on the way out."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(script), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=script.parent)
    try:
        waited = in_ns(ns, sys.executable, "-c", WAIT_PORT, ADDR, str(port),
                       str(READY_TIMEOUT), timeout=READY_TIMEOUT + 10)
        if waited.returncode != 0:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"{script.name} did not listen on {port}: {err.decode()}")
        yield proc
    finally:
        interrupt(proc)


def test_the_page_has_its_programs() -> None:
    assert set(programs()) == {"echo_server.py", "client.py", "tls_server.py", "asgi_app.py",
                               "websocket_server.py", "memory_pair.py", "callback_echo.py"}


def test_echo_server_and_quiet_logging(examples: Path) -> None:
    with netns() as ns, running(ns, examples / "echo_server.py", 7) as proc:
        done = in_ns(ns, "nc", "-N", ADDR, "7", input=b"hello ustcp\n", timeout=20)
        assert done.stdout == b"hello ustcp\n", done.stderr
        proc.send_signal(signal.SIGINT)
        # It leaves in 0.3-0.9 s on a quiet machine; 10 s ran out once in a flake run of
        # tests/kernel under load 6 on 2 cores (the traceback's imports, trio's teardown).
        out, _ = proc.communicate(timeout=60)
    assert out == b""  # no event of the stack's reaches stdout


def test_client_reaches_a_kernel_server(examples: Path) -> None:
    with netns() as ns:
        # The kernel's address appears with the device: serve on any address meanwhile.
        server = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-m", "http.server",
                                   "8000", "--directory", str(examples)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            waited = in_ns(ns, sys.executable, "-c", WAIT_PORT, "127.0.0.1", "8000", "20")
            assert waited.returncode == 0
            done = in_ns(ns, sys.executable, str(examples / "client.py"), timeout=40)
        finally:
            server.kill()
            server.wait(10)
    assert done.stdout.decode().strip() == "HTTP/1.0 200 OK", done.stderr


def test_tls_with_curl(examples: Path, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca.issue_cert(ADDR).private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    with netns() as ns, running(ns, examples / "tls_server.py", 8443, str(tmp_path / "cert.pem")):
        done = in_ns(ns, "curl", "-sk", "-m", "20", f"https://{ADDR}:8443/", timeout=30)
    assert done.stdout == b"hello over TLS\n", done.stderr


def test_asgi_app_under_hypercorn(examples: Path) -> None:
    pytest.importorskip("hypercorn")
    with netns() as ns, running(ns, examples / "asgi_app.py", 8000):
        done = in_ns(ns, "curl", "-s", "-m", "20", f"http://{ADDR}:8000/", timeout=30)
    assert done.stdout == f"hello {PEER_ADDR} from {ADDR}\n".encode(), done.stderr


def test_websocket_server(examples: Path) -> None:
    pytest.importorskip("trio_websocket")
    with netns() as ns, running(ns, examples / "websocket_server.py", 8765):
        done = in_ns(ns, sys.executable, "-c", WS_CLIENT, timeout=30)
    assert done.stdout == b"HELLO WEBSOCKET\n", done.stderr


def test_callback_app_without_a_device(examples: Path) -> None:
    done = subprocess.run([sys.executable, str(examples / "callback_echo.py")],
                          capture_output=True, timeout=30, cwd=ROOT)
    assert done.stdout == b"HELLO b''\n", done.stderr


def test_memory_pair_without_a_device(examples: Path) -> None:
    done = subprocess.run([sys.executable, str(examples / "memory_pair.py")],
                          capture_output=True, timeout=30, cwd=ROOT)
    assert done.stdout == b"hello ('10.0.0.2', 7)\n", done.stderr
