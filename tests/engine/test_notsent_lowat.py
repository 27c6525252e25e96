"""TCP_NOTSENT_LOWAT (Linux tcp_stream_memory_free): a writer gets no new skb while as many
bytes as the mark are written and unsent, and POLLOUT waits until fewer than half the mark
are. The script runs the same on this machine's kernel (``ustcp packetdrill --target
both``): a write of 40000 takes 26000 (one skb of the size goal, 16000, sent as cwnd
allows, its unsent rest topped up to 16000 unsent: no more skbs), the next write is EAGAIN,
and the ACK that lets the rest out sets POLLOUT."""

from __future__ import annotations

from pathlib import Path

from ustcp.packetdrill.parser import parse_script
from ustcp.packetdrill.runner import Runner

from .util import FIRST_FLIGHT, PASSIVE_OPEN

LOWAT = PASSIVE_OPEN % 257 + """\
+0 getsockopt(4, SOL_TCP, TCP_NOTSENT_LOWAT, [0], [4]) = 0
+0 setsockopt(4, SOL_TCP, TCP_NOTSENT_LOWAT, [6000], 4) = 0
+0 getsockopt(4, SOL_TCP, TCP_NOTSENT_LOWAT, [6000], [4]) = 0
+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 write(4, ..., 40000) = 26000
""" + FIRST_FLIGHT + """\
+0 write(4, ..., 1000) = -1 EAGAIN (Resource temporarily unavailable)
+0 poll([{fd=4, events=POLLOUT, revents=0}], 1, 0) = 0
+.1 < . 1:1(0) ack 10001 win 257
+0 poll([{fd=4, events=POLLOUT, revents=POLLOUT}], 1, 0) = 1
"""


def test_notsent_lowat_holds_writers_and_pollout() -> None:
    result = Runner(parse_script(LOWAT), Path("."), "inline").run()
    assert result.status == "pass", result.message


def test_without_the_mark_the_same_write_takes_more() -> None:
    unmarked = LOWAT.replace("[6000]", "[0]")  # 0: the sysctl's UINT_MAX
    result = Runner(parse_script(unmarked), Path("."), "inline").run()
    assert result.status == "fail" and "write" in result.message, result.message
