"""Helpers shared by engine tests."""

from __future__ import annotations

from pathlib import Path

from ustcp.packetdrill.parser import parse_script
from ustcp.packetdrill.runner import Result, Runner
from ustcp.tcp.connection import Connection
from ustcp.tcp.listener import Listener
from ustcp.wire.tcp import ACK, TcpOptions, TcpSegment

from .harness import A_IP, B_IP, Net

# A listener on fd 3 with the receive buffer of google's defaults.sh.
LISTEN = """\
`sysctl -q net.ipv4.tcp_rmem="4096 540000 15728640"`
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
"""

# A non-blocking connect on fd 3 without timestamps, its SYN unchecked.
ACTIVE_OPEN = """\
`sysctl -q net.ipv4.tcp_timestamps=0`
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0 > S 0:0(0) <...>
"""

# The first flight after such an open with the default tcp_min_tso_segs: the initial window
# of 10 segments of 1000 bytes as five packets of two (tcp_tso_autosize), all at once.
FIRST_FLIGHT = """\
+0 > P. 1:2001(2000) ack 1
+0 > P. 2001:4001(2000) ack 1
+0 > P. 4001:6001(2000) ack 1
+0 > P. 6001:8001(2000) ack 1
+0 > P. 8001:10001(2000) ack 1
"""

# A passive open in the manner of google's scripts (MSS 1000, SACK, window scale 7); the
# final ACK's window is the format argument.
PASSIVE_OPEN = LISTEN + """\
+0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>
+.1 < . 1:1(0) ack 1 win %d
+0 accept(3, ..., ...) = 4
"""


def open_pair(net: Net, port: int = 80, backlog: int = 16, *, a_ip: bytes = A_IP,
              b_ip: bytes = B_IP) -> tuple[Listener, Connection, Connection]:
    listener = net.b.listen(net.now, b_ip, port, backlog)
    client = net.a.connect(net.now, a_ip, b_ip, port)
    net.run(net.now + 1.0, stop=lambda: listener.accept_queue_len > 0)
    server = listener.accept()
    assert server is not None
    return listener, client, server


def drain(conn: Connection, now: float) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = conn.recv(now, 1 << 20)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def transfer(net: Net, sender: Connection, receiver: Connection, data: bytes,
             limit: float = 600.0, step: float = 0.01) -> bytes:
    """Send all of ``data`` and collect what arrives, on virtual time."""
    sent = 0
    received = bytearray()
    deadline = net.now + limit
    while len(received) < len(data) and net.now < deadline:
        if sent < len(data):
            sent += sender.send(net.now, memoryview(data)[sent:sent + (1 << 20)])
        net.run(net.now + step)
        received += drain(receiver, net.now)
    return bytes(received)


def one_byte(client: Connection, now: float, offset: int, byte: bytes) -> TcpSegment:
    """A segment of ``byte`` at ``offset`` bytes past the client's SND.NXT, as the client
    would send it (its timestamps, its ACK), for injecting straight into the peer's engine."""
    opts = TcpOptions()
    if client.rcv.ts_ok:
        opts.ts_val = client.rcv.ts_now(now)
        opts.ts_ecr = client.rcv.ts_recent
    return TcpSegment(client.local_port, client.remote_port,
                      (client.snd.snd_nxt + offset) & 0xFFFFFFFF, client.rcv.rcv_nxt, ACK,
                      client.rcv.rcv_wnd >> client.rcv.rcv_wscale, opts, byte)


def run_script(text: str) -> Result:
    """A packetdrill script on the engine target."""
    return Runner(parse_script(text), Path("."), "inline").run()
