"""The receiver's estimate of the peer's segment size (tcpi_rcv_mss; Linux
tcp_measure_rcv_mss), and the challenge that an ACK of bytes never sent meets (tcp_ack).
Both scripts pass on this machine's kernel too (``ustcp packetdrill --target both``; the GRO
packet goes in with a virtio-net GSO header there)."""

from __future__ import annotations

from .util import LISTEN, PASSIVE_OPEN, run_script

RCV_MSS = "--mss=1000\n" + LISTEN + """\
+0 < S 0:0(0) win 32792 <mss 1100,sackOK,nop,nop,nop,wscale 7>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>
+0 < . 1:1(0) ack 1 win 320
+0 accept(3, ..., ...) = 4
+0 %{ assert tcpi_rcv_mss == 536, tcpi_rcv_mss }%
// A GRO packet of ten 1000-byte segments: the segment size, not the packet's, is measured
+0 < . 1:10001(10000) ack 1 win 320
+0 > . 1:1(0) ack 10001
+0 %{ assert tcpi_rcv_mss == 1000, tcpi_rcv_mss }%
// Smaller ones lower it only when two in a row have the same size (and, this small, no PSH)
+.1 < . 10001:10301(300) ack 1 win 320
+0 %{ assert tcpi_rcv_mss == 1000, tcpi_rcv_mss }%
+0 < . 10301:10601(300) ack 1 win 320
+0 %{ assert tcpi_rcv_mss == 300, tcpi_rcv_mss }%
"""

OLD_ACK = PASSIVE_OPEN % 320 + """\
// Nothing was ever acknowledged: an ACK of our SYN's sequence number, below SND.UNA,
// acknowledges bytes never sent; it is challenged and its data dropped
+0 `nstat -n`
+.1 < . 1:1001(1000) ack 0 win 320
+0 > . 1:1(0) ack 1
+0 `nstat | grep -q "TcpExtTCPChallengeACK *1 "`
+.1 < . 1:1001(1000) ack 1 win 320
+0 > . 1:1(0) ack 1001
"""



def test_rcv_mss_follows_gro_segments_and_two_equal_smaller_ones() -> None:
    result = run_script(RCV_MSS)
    assert result.status == "pass", result.message


def test_a_pushed_small_segment_does_not_lower_rcv_mss() -> None:
    # With PSH a 300-byte segment may be a write's tail: not taken as full-sized (the
    # kernel fails the script at the same line)
    result = run_script(RCV_MSS.replace("< . 10301:10601(300)", "< P. 10301:10601(300)"))
    assert result.status == "fail" and "tcpi_rcv_mss=1000" in result.message, result.message


def test_an_ack_of_bytes_never_sent_is_challenged() -> None:
    result = run_script(OLD_ACK)
    assert result.status == "pass", result.message
