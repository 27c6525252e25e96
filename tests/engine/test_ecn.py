"""ECN (RFC 3168; tcp/ecn.py): negotiation, ECT(0) on new data, the CE echo until CWR,
the sender's once-per-window response. Each script here runs the same on this machine's
kernel (``ustcp packetdrill --target both``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ustcp.link.impair import Impairer, ImpairmentSpec, frame_pcount, mark_ce
from ustcp.packetdrill.parser import parse_script
from ustcp.packetdrill.runner import Result, Runner
from ustcp.wire.ipv4 import build_ipv4_header, parse_ipv4

PROFILE = """\
`sysctl -q net.ipv4.tcp_rmem="4096 540000 15728640"
sysctl -q net.ipv4.tcp_ecn=%d`
"""

SERVER = """\
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 < SEW 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
"""


def run(text: str, tcp_ecn: int) -> Result:
    return Runner(parse_script(PROFILE % tcp_ecn + text), Path("."), "inline").run()


def test_server_agrees_echoes_ce_until_cwr_and_answers_an_echo_with_cwr() -> None:
    result = run(SERVER + """\
+0 > [noecn] SE. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>
+.1 < . 1:1(0) ack 1 win 257
+0 accept(3, ..., ...) = 4
+0 %{ assert tcpi_options & 8, tcpi_options }%
+0 < [ce] P. 1:1001(1000) ack 1 win 257
+0 > [noecn] E. 1:1(0) ack 1001
+0 write(4, ..., 1000) = 1000
+0 > [ect0] EP. 1:1001(1000) ack 1001
+.01 < [ect0] WP. 1001:2001(1000) ack 1001 win 257
+0 > . 1001:1001(0) ack 2001
+0 %{ assert tcpi_options & 16, tcpi_options }%
+0 write(4, ..., 1000) = 1000
+0 > [ect0] P. 1001:2001(1000) ack 2001
+.1 < E. 2001:2001(0) ack 2001 win 257
+0 %{ assert tcpi_ca_state == TCP_CA_CWR, tcpi_ca_state }%
+0 write(4, ..., 1000) = 1000
+0 > [ect0] WP. 2001:3001(1000) ack 2001
""", 2)
    assert result.status == "pass", result.message


@pytest.mark.parametrize("tcp_ecn", [0])
def test_tcp_ecn_0_refuses(tcp_ecn: int) -> None:
    result = run(SERVER + """\
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>
+.1 < . 1:1(0) ack 1 win 257
+0 accept(3, ..., ...) = 4
+0 write(4, ..., 1000) = 1000
+0 > [noecn] P. 1:1001(1000) ack 1
""", tcp_ecn)
    assert result.status == "pass", result.message


def test_the_response_comes_once_per_window() -> None:
    # Ten segments in flight; echoes on two ACKs of the same window cut ssthresh once.
    result = run(SERVER + """\
+0 > SE. 0:0(0) ack 1 <...>
+.1 < . 1:1(0) ack 1 win 257
+0 accept(3, ..., ...) = 4
+0 write(4, ..., 10000) = 10000
+0 > P. 1:10001(10000) ack 1
+.1 < E. 1:1(0) ack 2001 win 257
+0 %{ assert (tcpi_ca_state, tcpi_snd_ssthresh) == (TCP_CA_CWR, 7), tcpi_snd_ssthresh }%
+0 < E. 1:1(0) ack 4001 win 257
+0 %{ assert (tcpi_ca_state, tcpi_snd_ssthresh) == (TCP_CA_CWR, 7), tcpi_snd_ssthresh }%
+0 < . 1:1(0) ack 10001 win 257
+0 write(4, ..., 1000) = 1000
+0 > [ect0] WP. 10001:11001(1000) ack 1
+.1 < . 1:1(0) ack 11001 win 257
+0 %{ assert tcpi_ca_state == TCP_CA_Open and tcpi_snd_cwnd == 7, tcpi_snd_cwnd }%
""", 2)
    assert result.status == "pass", result.message


CLIENT = """\
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0 > SEW 0:0(0) <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 8>
"""


def test_client_asks_falls_back_on_a_retransmitted_syn_and_queues_cwr() -> None:
    result = run(CLIENT + """\
+1 > S 0:0(0) <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 8>
+.1 < SE. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val 700 ecr 100,nop,wscale 7>
+0 > . 1:1(0) ack 1 <nop,nop,TS val 200 ecr 700>
+0 %{ assert tcpi_options & 8, tcpi_options }%
+0 write(3, ..., 1000) = 1000
+0 > [ect0] WP. 1:1001(1000) ack 1 <nop,nop,TS val 200 ecr 700>
""", 1)
    assert result.status == "pass", result.message


def test_client_without_the_servers_ece_sends_not_ect() -> None:
    result = run(CLIENT + """\
+.1 < S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val 700 ecr 100,nop,wscale 7>
+0 > . 1:1(0) ack 1 <nop,nop,TS val 200 ecr 700>
+0 %{ assert not tcpi_options & 8, tcpi_options }%
+0 write(3, ..., 1000) = 1000
+0 > [noecn] P. 1:1001(1000) ack 1 <nop,nop,TS val 200 ecr 700>
""", 1)
    assert result.status == "pass", result.message


def test_ce_is_a_chance_per_wire_segment_of_a_super_packet() -> None:
    """ce=3% marks a super-packet of 45 segments with the chance that one of them would
    be (1 - 0.97**45 = 75 %): the same marks per byte with offloads on or off, and a
    2 MB download in 64 KB frames draws ~23 marks, not ~1 (the ecn demo and its kernel
    test drew none in some runs when the chance was per frame)."""
    header = build_ipv4_header(bytes(4), bytes(4), 6, 20 + 45 * 1448, ttl=64, ident=7,
                               tos=0x2)
    tcp = bytes(12) + bytes([5 << 4]) + bytes(7)
    super_packet = header + tcp + bytes(45 * 1448)
    single = header + tcp + bytes(1448)
    assert frame_pcount(super_packet, 1448) == 45
    assert frame_pcount(single, 1448) == frame_pcount(super_packet, 0) == 1
    n = 2000
    for segments, chance in ((45, 1 - 0.97 ** 45), (1, 0.03)):
        impairer = Impairer(ImpairmentSpec(ce=0.03, seed=9))
        for _ in range(n):
            impairer.process(0.0, super_packet, segments)
        marked = impairer.counters["UstcpImpairCE"]
        assert abs(marked - n * chance) < 4 * math.sqrt(n * chance * (1 - chance)), marked


def test_ce_marking_marks_only_ect_frames_and_keeps_the_header_checksum() -> None:
    ect = build_ipv4_header(bytes(4), bytes(4), 6, 0, ttl=64, ident=7, tos=0x2)
    marked = mark_ce(ect)
    header, _ = parse_ipv4(marked)  # verifies the checksum
    assert header.tos & 0x3 == 0x3
    impairer = Impairer(ImpairmentSpec(ce=1.0))
    assert impairer.process(0.0, ect)[0].data == marked
    plain = build_ipv4_header(bytes(4), bytes(4), 6, 0, ttl=64, ident=7)
    assert impairer.process(0.0, plain)[0].data == plain
    assert impairer.counters["UstcpImpairCE"] == 1
