"""A SYN flood of 20,000 SYN/s (8,000 on the pure-Python engine, see RATE) for 10 s from
spoofed sources (tools/synflood.py) while the kernel keeps connecting with curl, once per
tcp_syncookies value (issue 3).

- tcp_syncookies=1: the SYN queue overflows into cookies and every curl is served;
- tcp_syncookies=0: the SYN queue fills and new SYNs are dropped: Linux keeps the last
  quarter of tcp_max_syn_backlog for proven peers, so drops start there (ListenDrops);
- tcp_syncookies=2: every SYN gets a cookie, curl works, and the kernel's own TCP_INFO
  shows that timestamps, SACK and window scaling survived the cookie.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ustcp
from tests.kernel.nsutil import ROOT, Daemon, daemon, netns

# SYN/s of the flood, by the engine the daemon runs (the same USTCP_ENGINE as this process).
# The property is the SYN queue's: it overflows within a second at either rate (backlog
# 4096), and curls are served through it. The rate must stay within what the daemon reads,
# or the TUN device's queue (500 frames here) fills and drops curl's frames with the flood's:
# the compiled engine reads 186,000-198,000 of 200,000 SYNs in 10 s, pure Python only
# 95,000-175,000 depending on the machine's load, and a curl whose SYN and retransmissions
# all met a full device queue failed about once in four runs of this file.
RATE = 20_000 if ustcp.ENGINE == "compiled" else 8_000
DURATION = 10
# s a curl (and the TCP_INFO probe) may take. The flood keeps the device queue full, so a
# frame of theirs may be dropped at the device like the flood's own (the daemon reads
# 7,000-20,000 SYN/s depending on the machine's load); SYN retransmissions at 1, 3 and 7 s
# then bring it in. 4 s failed 1 curl in 18 with the machine loaded (load 6 on 2 cores).
CURL_TIMEOUT = 12
TCP_INFO = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=CURL_TIMEOUT)
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
assert s.recv(100).startswith(b"HTTP/1.1 200")
print(info[5])
"""


def counters(d: Daemon) -> dict[str, int]:
    done = d.run(sys.executable, "-m", "ustcp.cli", "nstat", "-azj")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    return dict(data["kernel"])


def flood_and_curl(d: Daemon) -> tuple[dict[str, object], list[bool], list[int]]:
    flood = subprocess.Popen(
        ["ip", "netns", "exec", d.ns, sys.executable, str(ROOT / "tools" / "synflood.py"),
         "--target", d.addr, "--port", "80", "--rate", str(RATE), "--duration",
         str(DURATION), "--source-net", "10.77.0.0/24", "--seed", "3", "--pool", "65536",
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    ok: list[bool] = []
    options: list[int] = []
    try:
        time.sleep(1.0)  # let the SYN queue fill first
        while flood.poll() is None:
            done = d.run("curl", "-s", "-o", "/dev/null", "-m", str(CURL_TIMEOUT), "-w",
                         "%{http_code}", f"http://{d.addr}/", timeout=CURL_TIMEOUT + 10)
            ok.append(done.stdout == b"200")
            info = d.run(sys.executable, "-c", TCP_INFO.replace("CURL_TIMEOUT", str(CURL_TIMEOUT)),
                         d.addr, timeout=CURL_TIMEOUT + 10)
            if info.returncode == 0:
                options.append(int(info.stdout))
            time.sleep(0.3)
        out, err = flood.communicate(timeout=30)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    assert flood.returncode == 0, err.decode()
    return json.loads(out), ok, options


@pytest.mark.parametrize("cookies", [1, 0, 2])
def test_syn_flood(cookies: int, tmp_path: Path) -> None:
    # The device queue at the TUN default (500), not the daemon's 10,000: a 20k SYN/s flood
    # keeps a 10,000-frame queue full, which delays every curl segment by about a second
    # (bufferbloat) and made curls miss their 4 s limit; this test is about the SYN queue.
    with netns() as ns, daemon(ns, tmp_path / "serve.log", "--txqueuelen", "500",
                              "--sysctl", f"tcp_syncookies={cookies}") as d:
        before = counters(d)
        sent, ok, options = flood_and_curl(d)
        after = counters(d)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    print(f"\ntcp_syncookies={cookies}: flood {sent}; curl {sum(ok)}/{len(ok)} ok; "
          f"SYNs in {delta.get('TcpInSegs')}, cookies sent {delta.get('TcpExtSyncookiesSent')}, "
          f"cookies back {delta.get('TcpExtSyncookiesRecv')}, "
          f"SYN-ACKs {delta.get('TcpOutSegs')}, ReqQFullDrop "
          f"{delta.get('TcpExtTCPReqQFullDrop')}, ListenDrops {delta.get('TcpExtListenDrops')}")
    assert int(sent["sent"]) >= RATE * DURATION * 0.8  # type: ignore[call-overload]
    assert len(ok) >= 2
    if cookies == 0:
        # The queue is full: most SYNs the daemon reads are dropped (95 % of 174,116 read on
        # a quiet machine; the few slots that free up are requests the kernel's host
        # unreachables for the spoofed sources ended, tcp_req_err). Relative to what was
        # read: at load 6 the daemon read 30,000 and "more than RATE" failed.
        assert delta["TcpExtListenDrops"] > delta["TcpInSegs"] // 2
        assert delta.get("TcpExtSyncookiesSent", 0) == 0
    else:
        assert all(ok), ok  # every curl served during the flood
        assert delta["TcpExtSyncookiesSent"] > RATE  # the flood was answered with cookies
        # Each round makes two connections (curl, then the TCP_INFO probe). With
        # tcp_syncookies=2 every one that completed came back through a cookie. With =1
        # only those whose SYN found the queue full do: a SYN that meets a slot just freed
        # (a request the kernel's host unreachable ended, or its SYN-ACK timer) takes the
        # normal path, as in Linux; which one a curl meets is chance, so nothing is asserted
        # on it (once on the pure engine at load 6, 0 of 26 came through a cookie while 80 %
        # of the 33,321 SYNs read were answered with one).
        served = len(ok) + len(options)  # the curls (all served) and the probes that were
        if cookies == 2:
            assert delta["TcpExtSyncookiesRecv"] >= served
        assert delta.get("TcpExtTCPReqQFullDrop", 0) == 0
    if cookies == 2:
        assert options and all(o & 7 == 7 for o in options), options
