"""``ustcp ss``, ``nstat``, ``trace`` and ``ladder`` against a daemon serving the kernel.

Each test runs the daemon in a namespace of its own (tests/kernel/nsutil.py) and the
``ustcp`` client commands inside that namespace, as a user would.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel.nsutil import ADDR, ROOT, Daemon, daemon, netns, ustcp_cmd
from ustcp.obs import ladder

pytestmark = pytest.mark.kernel

# An HTTP/1.0 request read to EOF: the server closes first, so TIME_WAIT is on the stack.
HTTP10_GET = (
    "import socket, sys\n"
    "s = socket.create_connection((sys.argv[1], 80), timeout=5)\n"
    "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
    "data = b''\n"
    "while chunk := s.recv(65536):\n"
    "    data += chunk\n"
    "s.close()\n"
    "print(data.split(b'\\r\\n', 1)[0].decode())\n"
)


@pytest.fixture
def debug_daemon(tmp_path: Path) -> Iterator[Daemon]:
    with netns() as ns, daemon(ns, tmp_path / "serve.log", "--log-level", "debug") as d:
        yield d


def ustcp(d: Daemon, *args: str, timeout: float = 20) -> str:
    done = d.run(*ustcp_cmd(*args), timeout=timeout)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode()


def http10_get(d: Daemon) -> None:
    done = d.run("python3", "-c", HTTP10_GET, ADDR, timeout=20)
    assert done.returncode == 0 and done.stdout.startswith(b"HTTP/1.1 200"), done.stderr


def test_ss_shows_estab_with_cwnd_during_a_transfer(debug_daemon: Daemon) -> None:
    d = debug_daemon
    curl = subprocess.Popen(
        ["ip", "netns", "exec", d.ns, "curl", "-s", "-o", "/dev/null", "-m", "15",
         "--limit-rate", "2M", f"http://{ADDR}/bytes/20000000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            text = ustcp(d, "ss", "-tanoi", "state", "established", "sport", "=", ":80")
            if "bytes_acked:" in text:
                break
            time.sleep(0.2)
        rows = json.loads(ustcp(d, "ss", "--state", "established", "--port", "80", "--json"))
    finally:
        curl.kill()
        curl.wait(timeout=10)
    lines = text.splitlines()
    # One state chosen: as ss, no State column.
    assert lines[0].split() == ["Recv-Q", "Send-Q", "Local", "Address:Port", "Peer",
                                "Address:Port"]
    assert re.match(rf" *\d+ +\d+ +{ADDR}:80 +10\.77\.0\.1:\d+", lines[1]), text
    assert lines[2].startswith("\t ts sack cubic wscale:"), text
    cwnd = re.search(r" cwnd:(\d+) ", lines[2])
    assert cwnd is not None and int(cwnd.group(1)) >= 10, text
    assert len(rows) == 1 and rows[0]["info"]["cwnd"] >= 10 and rows[0]["info"]["mss"] == 1448


def test_ss_shows_time_wait_after_the_stack_closes_first(debug_daemon: Daemon) -> None:
    http10_get(debug_daemon)
    text = ustcp(debug_daemon, "ss", "-tano", "state", "time-wait")
    lines = text.splitlines()
    assert len(lines) == 2, text
    assert re.fullmatch(rf" +0 +0 +{ADDR}:80 +10\.77\.0\.1:\d+ +"
                        r"timer:\(timewait,(5\d|60)sec,0\)", lines[1]), text
    assert ustcp(debug_daemon, "ss", "--state", "time-wait", "--port", "9").count("\n") == 1


def test_ss_lists_listeners_with_their_queues(debug_daemon: Daemon) -> None:
    rows = json.loads(ustcp(debug_daemon, "ss", "--state", "listening", "--json"))
    assert {r["local"] for r in rows} == {f"{addr}:{p}" for p in (7, 9, 19, 80)
                                          for addr in (ADDR, "[fd77::2]")}  # dual-stack
    assert all(r["recv_q"] == 0 and r["send_q"] == 4096 and r["syn_queue"] == 0 for r in rows)
    text = ustcp(debug_daemon, "ss", "-ltni", "sport", "=", ":80", "src", ADDR)
    assert text.splitlines()[1:] == [
        f"LISTEN      0   4096 {ADDR}:80       0.0.0.0:*", "\t synq:0"], text
    text = ustcp(debug_daemon, "ss", "-ltni", "src", "[fd77::2]:80")
    assert text.splitlines()[1:] == [
        "LISTEN      0   4096 [fd77::2]:80       [::]:*", "\t synq:0"], text


def test_nstat_shows_passive_opens(debug_daemon: Daemon) -> None:
    http10_get(debug_daemon)
    text = ustcp(debug_daemon, "nstat", "-a")
    match = re.search(r"^TcpPassiveOpens +(\d+)$", text, re.MULTILINE)
    assert match is not None and int(match.group(1)) >= 1, text
    before = json.loads(ustcp(debug_daemon, "nstat", "--json"))["kernel"]
    assert before["TcpPassiveOpens"] >= 1
    http10_get(debug_daemon)
    delta = json.loads(ustcp(debug_daemon, "nstat", "--json"))["kernel"]
    assert delta["TcpPassiveOpens"] == 1


def _trace(d: Daemon, *args: str) -> list[str]:
    """Run ``ustcp trace ARGS`` while making HTTP requests until it has its events."""
    proc = subprocess.Popen(["ip", "netns", "exec", d.ns, *ustcp_cmd("trace", *args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
            http10_get(d)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0, err.decode(errors="replace")
    return out.decode().splitlines()


def test_trace_follows_state_changes(debug_daemon: Daemon) -> None:
    lines = _trace(debug_daemon, "--event", "state_change", "--conn", f"{ADDR}:80>",
                   "--count", "3", "--json")
    events = [json.loads(line) for line in lines]
    assert len(events) == 3
    assert all(e["event"] == "state_change" and e["conn"].startswith(f"{ADDR}:80>")
               for e in events)
    assert {e["new"] for e in events} <= {"SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2",
                                          "CLOSE"}
    console = _trace(debug_daemon, "--event", "state_change", "accepted", "--count", "2")
    assert len(console) == 2
    assert any(re.search(r"state_change +10\.77\.0\.2:80>10\.77\.0\.1:\d+ +\w+ -> \w+", line)
               for line in console), console


def test_ladder_of_a_daemon_capture(tmp_path: Path) -> None:
    pcap = tmp_path / "capture.pcap"
    with netns() as ns, daemon(ns, tmp_path / "serve.log", "--pcap", str(pcap)) as d:
        http10_get(d)
    svg = tmp_path / "ladder.svg"
    result = subprocess.run(ustcp_cmd("ladder", str(pcap), "--svg", str(svg)),
                            capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    convs = ladder.conversations(ladder.read_pcap(str(pcap)))
    # The fixture's readiness probes (curl; on a loaded machine one may meet the device
    # before the app listens, and be reset), then the HTTP/1.0 GET.
    n = len(convs)
    assert n >= 2 and all(c.server.endswith(":80") for c in convs), convs
    text = result.stdout
    assert text.count("connection ") == n
    assert "──SYN seq=0 win=64240" in text and "<──SYN,ACK seq=0 ack=1" in text
    last = text.split(f"connection {n}:")[1]
    # The client's FIN also acknowledges the server's: FIN-WAIT-2 lasts no segment.
    for state in ("SYN-SENT", "SYN-RECV", "ESTABLISHED", "CLOSE-WAIT", "FIN-WAIT-1",
                  "LAST-ACK", "TIME-WAIT", "CLOSED"):
        assert state in last, last
    arrows = [e for e in ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}line")
              if e.get("class") == "arrow"]
    assert len(arrows) == sum(len(c.segments) for c in convs)


def test_trace_on_a_default_daemon_shows_passive_opens_as_linux(tmp_path: Path) -> None:
    """The daemon logs at info (its default): the follower still gets the debug-level state
    changes, a passive open shows CLOSE -> SYN_RECV -> ESTABLISHED as Linux's
    inet_sock_set_state does, times are wall-clock, and the daemon's own log stays quiet."""
    with netns() as ns, daemon(ns, tmp_path / "serve.log") as d:
        started = time.time()
        lines = _trace(d, "--event", "state_change", "--conn", f"{ADDR}:80>", "--count", "2",
                       "--json")
        console = _trace(d, "--event", "state_change", "--count", "1", "--relative")
        log = d.output()
    events = [json.loads(line) for line in lines]
    assert [(e["old"], e["new"]) for e in events] == [("CLOSE", "SYN_RECV"),
                                                      ("SYN_RECV", "ESTABLISHED")]
    assert all(abs(e["time"] - started) < 60 and "t" not in e for e in events)
    assert re.fullmatch(r"\+0\.000000  state_change +\S+  CLOSE -> SYN_RECV", console[0]), console
    assert "state_change" not in log
