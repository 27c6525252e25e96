"""Undo of spurious cwnd reductions (undo.py; Linux tcp_try_undo_*): a D-SACK of every
retransmission of a recovery, an ACK echoing the original's timestamp after an RTO
(Eifel, RFC 3522), F-RTO after an RTO (RFC 5682). Each script gave the same packets,
tcp_info and counters on this machine's Linux 6.18 (``ustcp packetdrill --target both``);
LISTEN stands for google's defaults.sh, whose values are ustcp's defaults."""

from __future__ import annotations

from pathlib import Path

from ustcp.packetdrill.parser import parse_script
from ustcp.packetdrill.runner import Runner

from .util import LISTEN

# MSS 1000 of payload (1012 with timestamps), SACK, a 100 ms RTT; 10 segments in flight.
OPEN = LISTEN + """\
+.1 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>
+.1 < . 1:1(0) ack 1 win 320
+0 accept(3, ..., ...) = 4
+0 `nstat -n`
"""

DSACK_IN_RECOVERY = OPEN + """\
+0 write(4, ..., 10000) = 10000
+0 > P. 1:10001(10000) ack 1
+.11 < . 1:1(0) ack 1 win 320 <sack 1001:2001,nop,nop>
+.01 < . 1:1(0) ack 1 win 320 <sack 1001:3001,nop,nop>
+.01 < . 1:1(0) ack 1 win 320 <sack 1001:4001,nop,nop>
+0 > . 1:1001(1000) ack 1
+.01 %{ assert (tcpi_ca_state, tcpi_snd_cwnd, tcpi_snd_ssthresh) == (3, 7, 7) }%
// The original 1:1001 was only late: a cumulative ACK, then the D-SACK of the
// retransmission, the only one of the episode: the reduction is undone at once.
+.01 < . 1:1(0) ack 5001 win 320
+0 < . 1:1(0) ack 5001 win 320 <sack 1:1001,nop,nop>
+0 %{ assert (tcpi_ca_state, tcpi_snd_cwnd, tcpi_snd_ssthresh) == (0, 10, 2147483647) }%
+0 %{ assert tcpi_dsack_dups == 1, tcpi_dsack_dups }%
+0 `nstat | grep -q "TcpExtTCPDSACKUndo *1 "`
+0 `nstat -a | grep -q "TcpExtTCPDSACKRecvSegs *1 "`
"""

EIFEL_AFTER_RTO = LISTEN + """\
+.1 < S 0:0(0) win 32792 <mss 1012,sackOK,TS val 100 ecr 0,nop,wscale 7>
+0 > S. 0:0(0) ack 1 <mss 1460,sackOK,TS val 100 ecr 100,nop,wscale 8>
+.1 < . 1:1(0) ack 1 win 320 <nop,nop,TS val 200 ecr 100>
+0 accept(3, ..., ...) = 4
+0 `nstat -n`
+0 write(4, ..., 10000) = 10000
+0 > P. 1:10001(10000) ack 1 <nop,nop,TS val 300 ecr 200>
// the loss probe, then the RTO
+.2~+.23 > P. 9001:10001(1000) ack 1 <nop,nop,TS val 500 ecr 200>
+.2~+.5 > . 1:1001(1000) ack 1 <nop,nop,TS val 700 ecr 200>
+0 %{ assert (tcpi_ca_state, tcpi_snd_cwnd, tcpi_snd_ssthresh) == (4, 1, 7) }%
// The ACK of the retransmitted segment echoes the original's TSval: the original arrived,
// the timeout was spurious (Eifel detection).
+.01 < . 1:1(0) ack 1001 win 320 <nop,nop,TS val 300 ecr 300>
+0 %{ assert (tcpi_ca_state, tcpi_snd_cwnd, tcpi_snd_ssthresh) == (0, 11, 2147483647) }%
+0 `nstat | grep -q "TcpExtTCPLossUndo *1 "`
"""

FRTO = OPEN + """\
+0 write(4, ..., 20000) = 20000
+0 > P. 1:10001(10000) ack 1
// the loss probe sends new data, then the RTO
+.2~+.23 > . 10001:11001(1000) ack 1
+.2~+.5 > . 1:1001(1000) ack 1
+0 %{ assert (tcpi_ca_state, tcpi_snd_cwnd, tcpi_snd_ssthresh) == (4, 1, 7) }%
// F-RTO step 2b: the retransmission is acked; two new segments, not more retransmissions
+.1 < . 1:1(0) ack 1001 win 320
+0 > . 11001:13001(2000) ack 1
+0 %{ assert (tcpi_ca_state, tcpi_snd_cwnd, tcpi_snd_ssthresh) == (4, 2, 7) }%
// step 3b: never-retransmitted data acknowledged: the RTO was spurious
+.01 < . 1:1(0) ack 3001 win 320
+0 > P. 13001:15001(2000) ack 1
+0 %{ assert (tcpi_ca_state, tcpi_snd_cwnd, tcpi_snd_ssthresh) == (0, 12, 2147483647) }%
+0 `nstat | grep -q "TcpExtTCPSpuriousRTOs *1 "`
+0 `nstat -a | grep -q "TcpExtTCPLossUndo *1 "`
"""

# tcp_frto=0: the same timeout is taken as real; the next lost segments are resent.
NO_FRTO = OPEN.replace("sysctl -q", "sysctl -q net.ipv4.tcp_frto=0", 1) + """\
+0 write(4, ..., 20000) = 20000
+0 > P. 1:10001(10000) ack 1
+.2~+.23 > . 10001:11001(1000) ack 1
+.2~+.5 > . 1:1001(1000) ack 1
+.1 < . 1:1(0) ack 1001 win 320
+0 > . 1001:3001(2000) ack 1
+.01 < . 1:1(0) ack 3001 win 320
+0 %{ assert tcpi_ca_state == 4, tcpi_ca_state }%
"""


def run(script: str) -> None:
    result = Runner(parse_script(script), Path("."), "inline").run()
    assert result.status == "pass", result.message


def test_dsack_of_every_retransmission_undoes_recovery() -> None:
    run(DSACK_IN_RECOVERY)


def test_an_ack_echoing_the_original_timestamp_undoes_the_rto() -> None:
    run(EIFEL_AFTER_RTO)


def test_frto_sends_new_data_and_undoes_a_spurious_rto() -> None:
    run(FRTO)


def test_without_frto_the_rto_retransmits_on() -> None:
    run(NO_FRTO)
