"""TCP_INQ (Linux tcp_inq_hint, TCP_CM_INQ): with the option set, every successful read
tells how many bytes are still there to read; a received FIN counts one until the stream is
read to its end, and after that the hint stays 1, never 0 (SOCK_DONE). The same calls on a
Linux 6.18 loopback pair gave the same numbers (500, 1, 1; EINVAL for 2)."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from ustcp.tcp.sock import TCP_CM_INQ, TCP_INQ, Sock

from .harness import Net
from .util import PASSIVE_OPEN, open_pair, run_script

TCP = socket.IPPROTO_TCP


def inq(control: list[tuple[int, int, bytes]]) -> int:
    [(level, kind, data)] = control
    assert (level, kind) == (TCP, TCP_CM_INQ)
    value: int = struct.unpack("i", data)[0]
    return value


def test_inq_counts_what_is_left_then_the_fin(net: Net) -> None:
    _listener, client, server = open_pair(net)
    sock = Sock(net.b.config, server.sockopts, conn=server)
    assert sock.getsockopt(net.now, TCP, TCP_INQ) == 0
    client.send(net.now, b"x" * 3000)
    net.run(net.now + 0.5)
    assert sock.recvmsg(net.now, 1000) == (b"x" * 1000, [])  # off: no control message
    sock.setsockopt(net.now, TCP, TCP_INQ, 1)
    assert sock.getsockopt(net.now, TCP, TCP_INQ) == 1
    data, control = sock.recvmsg(net.now, 1500)
    assert len(data) == 1500 and inq(control) == 500
    client.shutdown(net.now, socket.SHUT_WR)
    net.run(net.now + 0.5)
    data, control = sock.recvmsg(net.now, 1000)
    assert len(data) == 500 and inq(control) == 1  # the FIN, still to be read
    data, control = sock.recvmsg(net.now, 1000)
    assert data == b"" and inq(control) == 1  # done: never 0


def test_inq_takes_zero_or_one(net: Net) -> None:
    _listener, _client, server = open_pair(net)
    sock = Sock(net.b.config, server.sockopts, conn=server)
    with pytest.raises(OSError) as exc:
        sock.setsockopt(net.now, TCP, TCP_INQ, 2)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(BlockingIOError):  # nothing to read: an error, no control message
        sock.recvmsg(net.now, 100)


# The same through packetdrill's recvmsg (msg_iov, msg_control with TCP_CM_INQ); this
# script passes on this machine's kernel too (``ustcp packetdrill --target both``).
RECVMSG_INQ = PASSIVE_OPEN % 257 + """\
+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
// Without TCP_INQ a read carries no control message
+0 < P. 1:3001(3000) ack 1 win 257
+0 recvmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 500}], msg_flags=0, msg_control=[]}, 0) = 500
+0 setsockopt(4, SOL_TCP, TCP_INQ, [1], 4) = 0
// With it, each read tells what is left (tcp_inq_hint); the iovecs add up
+0 recvmsg(4, {msg_name(...)=...,
    msg_iov(2)=[{..., 500}, {..., 1000}], msg_flags=0,
    msg_control=[{cmsg_level=SOL_TCP,
    cmsg_type=TCP_CM_INQ, cmsg_data=1000}]}, 0) = 1500
+0 recvmsg(4, {msg_name(...)=...,
    msg_iov(1)=[{..., 5000}], msg_flags=0,
    msg_control=[{cmsg_level=SOL_TCP,
    cmsg_type=TCP_CM_INQ, cmsg_data=0}]}, 0) = 1000
+0 recvmsg(4, {msg_name(...)=...,
    msg_iov(1)=[{..., 5000}], msg_flags=0,
    msg_control=[]}, MSG_DONTWAIT) = -1 EAGAIN (Resource temporarily unavailable)
// A FIN counts one until the stream is read to its end
+.1 < F. 3001:3501(500) ack 1 win 257
+0 recvmsg(4, {msg_name(...)=...,
    msg_iov(1)=[{..., 400}], msg_flags=0,
    msg_control=[{cmsg_level=SOL_TCP,
    cmsg_type=TCP_CM_INQ, cmsg_data=101}]}, 0) = 400
+0 recvmsg(4, {msg_name(...)=...,
    msg_iov(1)=[{..., 400}], msg_flags=0,
    msg_control=[{cmsg_level=SOL_TCP,
    cmsg_type=TCP_CM_INQ, cmsg_data=1}]}, 0) = 100
"""


def test_recvmsg_carries_tcp_cm_inq_in_a_script() -> None:
    result = run_script(RECVMSG_INQ)
    assert result.status == "pass", result.message


def test_a_wrong_inq_in_the_script_fails_it() -> None:
    wrong = RECVMSG_INQ.replace("cmsg_data=101", "cmsg_data=100")
    result = run_script(wrong)
    assert result.status == "fail" and "recvmsg cmsg" in result.message, result.message
