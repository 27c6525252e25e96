"""The http app's deadlines (issue 13, defect 3), with short ones so the test takes seconds:
slow request heads and slow bodies get 408 and are closed, clients that stop reading are
reset, and meanwhile curl is served as fast as ever."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kernel.nsutil import ADDR, daemon, netns

pytestmark = pytest.mark.kernel

DEADLINE = 2.0  # s: head, body and send
BOUND = 10.0  # s: every slow client must be cut off within this of its start
HEADS, BODIES, READERS = 50, 20, 20

# Opens the three kinds of slow clients, then watches each until the daemon ends it.
SLOW_CLIENTS = r"""
import json, socket, struct, sys, time
host, heads, bodies, readers, bound = sys.argv[1], *map(int, sys.argv[2:5]), float(sys.argv[5])
def conn(rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(bound)
    s.connect((host, 80))
    return s
started = time.monotonic()
slow = []
for _ in range(heads):  # part of a head, then nothing
    s = conn(); s.sendall(b"GET / HTTP/1.1\r\nHost: slow\r\n"); slow.append(("head", s))
for _ in range(bodies):  # a head announcing 100000 bytes, 10 of them, then nothing
    s = conn()
    s.sendall(b"POST /sha256 HTTP/1.1\r\nHost: slow\r\nContent-Length: 100000\r\n\r\n0123456789")
    slow.append(("body", s))
for _ in range(readers):  # a big download never read
    s = conn(4096); s.sendall(b"GET /bytes/100000000 HTTP/1.1\r\nHost: slow\r\n\r\n")
    slow.append(("reader", s))
print("ready", flush=True)
results = {"head": [], "body": [], "reader": []}
for kind, s in slow:
    if kind == "reader":
        # never read: wait until the kernel's socket is closed by a RST (tcpi_state 7)
        while time.monotonic() - started < bound:
            if s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == 7:
                break
            time.sleep(0.05)
        state = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
        results[kind].append(["reset" if state == 7 else f"state {state}",
                              round(time.monotonic() - started, 2)])
        continue
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except OSError as exc:
        data += repr(exc).encode()
    results[kind].append([data.split(b"\r\n", 1)[0].decode(errors="replace"),
                          round(time.monotonic() - started, 2)])
print(json.dumps(results), flush=True)
"""


def test_slow_heads_bodies_and_readers_are_cut_off_while_curl_stays_fast(
        tmp_path: Path) -> None:
    args = [f"--http-deadline={name}={DEADLINE}" for name in ("head", "body", "send")]
    with netns() as ns, daemon(ns, tmp_path / "serve.log", *args,
                              "--http-deadline=body_rate=1000") as d:
        slow = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                                 SLOW_CLIENTS, ADDR, str(HEADS), str(BODIES), str(READERS),
                                 str(BOUND)], stdout=subprocess.PIPE, text=True)
        try:
            assert slow.stdout is not None and slow.stdout.readline().strip() == "ready"
            curls = []
            while slow.poll() is None and len(curls) < 40:
                done = d.run("curl", "-s", "-o", "/dev/null", "-m", "10", "-w",
                             "%{http_code} %{time_total}", f"http://{ADDR}/bytes/100000",
                             timeout=30)
                curls.append(done.stdout.decode().split())
                time.sleep(0.1)
            results = json.loads(slow.stdout.readline())
            slow.wait(timeout=30)
        finally:
            if slow.poll() is None:
                slow.kill()
                slow.wait()
    heads, bodies, readers = results["head"], results["body"], results["reader"]
    assert len(heads) == HEADS and len(bodies) == BODIES and len(readers) == READERS
    # cut off after the deadline, never before it, all within the bound
    for kind, rows in (("head", heads), ("body", bodies)):
        assert all(r[0] == "HTTP/1.1 408 Request Timeout" for r in rows), (kind, rows)
        assert all(DEADLINE <= r[1] < BOUND for r in rows), (kind, rows)
    assert all(r[0] == "reset" and r[1] < BOUND for r in readers), readers
    assert curls and all(c[0] == "200" for c in curls), curls
    assert max(float(c[1]) for c in curls) < 2.0, curls  # served at once despite the rest
