"""MSG_EOR (Linux TCP_SKB_CB(skb)->eor, tcp_skb_can_collapse_to): the skb holding the end
of such a write ends a record; later data starts a new skb and no packet, first send or
retransmission, joins the two. The script passes on this machine's kernel too (``ustcp
packetdrill --target both``); so do Google's four ``eor/no-coalesce-*.pkt``."""

from __future__ import annotations

from .util import LISTEN, run_script

NO_COALESCE = LISTEN + """\
+0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 10>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>
+.01 < . 1:1(0) ack 1 win 514
+0 accept(3, ..., ...) = 4
// cwnd (10) sends the first 10000; 400 wait, and MSG_EOR ends their skb after 300 more
+0 write(4, ..., 10400) = 10400
+0 send(4, ..., 300, MSG_EOR) = 300
+0 write(4, ..., 1000) = 1000
+0 > P. 1:10001(10000) ack 1
+.01 < . 1:1(0) ack 10001 win 514
// The record and the data after it never share a packet
+0 > P. 10001:10701(700) ack 1
+0 > P. 10701:11701(1000) ack 1
+.01 < . 1:1(0) ack 11701 win 514
"""



def test_data_after_an_eor_write_never_shares_its_packet() -> None:
    result = run_script(NO_COALESCE)
    assert result.status == "pass", result.message


def test_without_the_flag_the_two_writes_coalesce() -> None:
    result = run_script(NO_COALESCE.replace("300, MSG_EOR)", "300, 0)"))
    assert result.status == "fail" and "payload" in result.message, result.message
