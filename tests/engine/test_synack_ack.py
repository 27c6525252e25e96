"""The ACK of a SYN-ACK (tcp_rcv_synsent_state_process): sent at once, without quick-ack
mode, so ATO stays 0 until data arrives and a FIN that comes first is ACKed at once; saved
for the data when a writer waits for the handshake (sk_write_pending), TCP_DEFER_ACCEPT is
set or the socket is interactive. Both scripts pass on this machine's kernel too (``ustcp
packetdrill --target both``)."""

from __future__ import annotations

from .util import ACTIVE_OPEN, run_script

SYNACK_THEN_FIN = ACTIVE_OPEN + """\
+.01 < S. 0:0(0) ack 1 win 5840 <mss 1460,nop,nop,sackOK,nop,wscale 6>
+0 > . 1:1(0) ack 1
// No quickack mode after the SYN-ACK and ATO still 0: a FIN before any data is ACKed at once
+.01 < F. 1:1(0) ack 1 win 257
+0~+.005 > . 1:1(0) ack 2
"""

SYNACK_WITH_A_WRITER = ACTIVE_OPEN + """\
+0 fcntl(3, F_SETFL, O_RDWR) = 0
// A blocking write waits for the handshake (sk_write_pending): the SYN-ACK's ACK is saved
// and rides on the data
+0...0.01 write(3, ..., 1000) = 1000
+.01 < S. 0:0(0) ack 1 win 5840 <mss 1460,nop,nop,sackOK,nop,wscale 6>
+0 > P. 1:1001(1000) ack 1
+0 %{ assert tcpi_segs_out == 2, tcpi_segs_out }%
+.01 < . 1:1(0) ack 1001 win 257
"""


def test_a_fin_before_any_data_is_acked_at_once() -> None:
    result = run_script(SYNACK_THEN_FIN)
    assert result.status == "pass", result.message


def test_a_waiting_writer_carries_the_synacks_ack() -> None:
    result = run_script(SYNACK_WITH_A_WRITER)
    assert result.status == "pass", result.message
