"""TCP_USER_TIMEOUT (RFC 5482; Linux tcp_write_timeout, tcp_probe_timer): how long data
may stay unacknowledged, on the retransmission and the zero-window paths. Both scripts run
the same on this machine's kernel (``ustcp packetdrill --target both``); the profile line
stands for google's defaults.sh."""

from __future__ import annotations

from pathlib import Path

from ustcp.packetdrill.parser import parse_script
from ustcp.packetdrill.runner import Runner

from .util import PASSIVE_OPEN

# A passive open whose final ACK announces a window (the format argument), then
# TCP_USER_TIMEOUT = 1000 ms.
OPEN = PASSIVE_OPEN + """\
+0 setsockopt(4, SOL_TCP, TCP_USER_TIMEOUT, [1000], 4) = 0
"""

RETRANSMIT = OPEN % 257 + """\
+0 getsockopt(4, SOL_TCP, TCP_USER_TIMEOUT, [1000], [4]) = 0
+0 write(4, ..., 1000) = 1000
+0 > P. 1:1001(1000) ack 1
// Retransmissions go unanswered: the user timeout ends it about 1 s after the first send.
// It counts from the first RTO retransmission (about 0.7 s; the loss probe at 0.4 does not
// count): the next RTO is clamped to 1 s after it, and there it gives up.
+1.55 %{ assert tcpi_state == TCP_ESTABLISHED, tcpi_state }%
+.2 %{ assert tcpi_state == TCP_CLOSE, tcpi_state }%
+0 read(4, ..., 1000) = -1 ETIMEDOUT (Connection timed out)
"""

ZERO_WINDOW = OPEN % 0 + """\
+0 write(4, ..., 1000) = 1000
// Zero-window probes, answered with a zero window: TCP_USER_TIMEOUT bounds them from the
// first probe on.
+.3~+.32 > . 0:0(0) ack 1
+0 < . 1:1(0) ack 1 win 0
+.6~+.65 > . 0:0(0) ack 1
+0 < . 1:1(0) ack 1 win 0
+.25 %{ assert tcpi_state == TCP_ESTABLISHED, tcpi_state }%
+.2 %{ assert tcpi_state == TCP_CLOSE, tcpi_state }%
+0 read(4, ..., 1000) = -1 ETIMEDOUT (Connection timed out)
"""


def test_the_user_timeout_ends_unanswered_retransmissions() -> None:
    result = Runner(parse_script(RETRANSMIT), Path("."), "inline").run()
    assert result.status == "pass", result.message


def test_the_user_timeout_ends_zero_window_probing_from_the_first_probe() -> None:
    result = Runner(parse_script(ZERO_WINDOW), Path("."), "inline").run()
    assert result.status == "pass", result.message


def test_a_negative_user_timeout_is_einval() -> None:
    result = Runner(parse_script("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
                                 "+0 setsockopt(3, SOL_TCP, TCP_USER_TIMEOUT, [-1], 4) = -1 "
                                 "EINVAL (Invalid argument)\n"), Path("."), "inline").run()
    assert result.status == "pass", result.message
