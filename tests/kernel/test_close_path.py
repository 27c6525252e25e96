"""The close path against the kernel: the stack closes first and keeps TIME_WAIT, yet the
kernel client may reconnect from the same port at once (RFC 6191 via timestamps); and the
options the kernel negotiated with the stack, read from the kernel's own TCP_INFO."""

from __future__ import annotations

import json
import sys

from tests.kernel.nsutil import Daemon

RECONNECT = r"""
import json, socket, sys, time
def syn_retrans():  # this namespace's TcpExtTCPSynRetrans (the kernel's, as nstat reads it)
    with open("/proc/net/netstat") as f:
        head, values = f.readline().split(), f.readline().split()
    return int(values[head.index("TCPSynRetrans")])
host, port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
local_port = None
times = []
before = syn_retrans()
for _ in range(rounds):
    start = time.monotonic()
    for attempt in range(200):  # our side may still be in LAST_ACK for a moment
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", local_port or 0))
        local_port = s.getsockname()[1]
        s.settimeout(10)
        try:
            s.connect((host, port))
            break
        except OSError as exc:
            if exc.errno != 99:
                raise
            s.close()
            time.sleep(0.005)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = b""
    while chunk := s.recv(65536):
        body += chunk
    s.close()
    times.append(time.monotonic() - start)
    assert body.startswith(b"HTTP/1.1 200"), body[:80]
print(json.dumps({"port": local_port, "times": times, "syn_retrans": syn_retrans() - before}))
"""

TCP_INFO = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
print(info[5], info[6] & 0x0F, info[6] >> 4)  # tcpi_options, snd_wscale, rcv_wscale
s.close()
"""


def tw_entries_for(daemon: Daemon, port: int) -> int:
    done = daemon.run(sys.executable, "-m", "ustcp.cli", "ss", "--json", "--state",
                      "TIME-WAIT")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    return sum(1 for row in rows if row["peer"].endswith(f":{port}"))


def test_stack_closes_first_and_the_same_port_reconnects_at_once_20_times(
        shared_daemon: Daemon) -> None:
    done = shared_daemon.run(sys.executable, "-c", RECONNECT, shared_daemon.addr, "80", "20",
                             timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    assert len(result["times"]) == 20
    # No reconnect needed a SYN retransmission: each SYN met the stack's TIME_WAIT entry
    # and was accepted as a new incarnation (the kernel's own counter, not a timing).
    assert result["syn_retrans"] == 0, result
    assert tw_entries_for(shared_daemon, result["port"]) == 1  # the stack closed first


def test_kernel_sees_timestamps_sack_and_window_scaling(shared_daemon: Daemon) -> None:
    done = shared_daemon.run(sys.executable, "-c", TCP_INFO, shared_daemon.addr, "7")
    assert done.returncode == 0, done.stderr.decode()
    options, snd_wscale, rcv_wscale = (int(x) for x in done.stdout.split())
    assert options & 1, "TCPI_OPT_TIMESTAMPS"
    assert options & 2, "TCPI_OPT_SACK"
    assert options & 4, "TCPI_OPT_WSCALE"
    assert snd_wscale == 7  # the stack's shift for tcp_rmem[2] = 6 MB
    assert rcv_wscale > 0  # the kernel's own shift was accepted too
