"""ICMP errors in packetdrill scripts (``< icmp unreachable frag_needed mtu 1200 [1:1461(1460)]``):
the runner builds a real ICMP frame quoting the flow's segment and hands it to the IP layer
(ustcp.ip), which tells the engine (tcp_v4_err). Each script passes on this machine's kernel
too (``ustcp packetdrill --target both``), where the same frame is written to the TUN device.
"""

from __future__ import annotations

from .util import ACTIVE_OPEN, LISTEN, run_script

# An established connection's path MTU falls: an ICMP quoting a sequence number outside
# SND.UNA..SND.NXT is counted and ignored, one inside it lowers the MSS to 1160 and what no
# longer fits is resent at once, the split tail of a retransmission as well
# (tcp_v4_mtu_reduced, tcp_simple_retransmit).
FRAG_NEEDED = LISTEN + """\
+0 `sysctl -q net.ipv4.tcp_timestamps=0`
+0 < S 0:0(0) win 32792 <mss 1460,sackOK,nop,nop,nop,wscale 8>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>
+.1 < . 1:1(0) ack 1 win 257
+0 accept(3, ..., ...) = 4
+0 `nstat -n`
+0 write(4, ..., 2920) = 2920
+0 > P. 1:2921(2920) ack 1
// Out of the window: counted, ignored
+.01 < icmp unreachable frag_needed mtu 1200 [5000:6460(1460)]
+0 `nstat | grep -q "TcpExtOutOfWindowIcmps *1 "`
// In the window: the MSS falls to 1160 and what no longer fits goes again at once
+0 < icmp unreachable frag_needed mtu 1200 [1:1461(1460)]
+0 > P. 1:2321(2320) ack 1
+0 > P. 2321:2921(600) ack 1
+0 %{ assert tcpi_snd_mss == 1160, tcpi_snd_mss }%
+.1 < . 1:1(0) ack 2921 win 257
+0 write(4, ..., 2000) = 2000
+0 > P. 2921:4921(2000) ack 1
"""

# A Fast Open SYN with data meets "fragmentation needed": the SYN goes again alone at once
# with the path's MSS (tcp_simple_retransmit's SYN-data case, tcp_advertise_mss); the data
# waits for the peer's window and follows the SYN-ACK (tcp_rcv_fastopen_synack).
SYN_DATA_FRAG_NEEDED = """\
`sysctl -q net.ipv4.tcp_fastopen=0x5
sysctl -q net.ipv4.tcp_rmem="4096 540000 15728640"
sysctl -q net.ipv4.tcp_timestamps=0`
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 sendto(3, ..., 1000, MSG_FASTOPEN, ..., ...) = 1000
+0 > S 0:1000(1000) <mss 1460,nop,nop,sackOK,nop,wscale 8>
// The SYN with its data was too big: the SYN goes again alone at once, its MSS from the
// path, the data waits for the window (tcp_simple_retransmit, tcp_advertise_mss)
+.01 < icmp unreachable frag_needed mtu 800
+0 > S 0:0(0) <mss 760,nop,nop,sackOK,nop,wscale 8>
+.02 < S. 0:0(0) ack 1 win 5840 <mss 1040,nop,nop,sackOK,nop,wscale 6>
+0 > P. 1:1001(1000) ack 1
+.02 < . 1:1(0) ack 1001 win 257
"""

# A connect in SYN_SENT fails with the error's errno (113 EHOSTUNREACH), unless the quoted
# sequence number is outside the window.
CONNECT_UNREACHABLE = ACTIVE_OPEN + """\
// Out of the window (the SYN is ISN 0): ignored
+.1 < icmp unreachable host_unreachable [5:5(0)]
+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0
// In it: a connect in SYN_SENT fails at once with the error's errno (tcp_v4_err)
+0 < icmp unreachable host_unreachable
+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [113], [4]) = 0
// The socket is gone: a late SYN-ACK finds none
+.1 < S. 0:0(0) ack 1 win 5840 <mss 1460,nop,nop,sackOK,nop,wscale 8>
+0 > R 1:1(0)
"""



def test_frag_needed_lowers_the_mss_and_resends_what_no_longer_fits() -> None:
    result = run_script(FRAG_NEEDED)
    assert result.status == "pass", result.message


def test_frag_needed_on_a_fast_open_syn_resends_the_bare_syn_with_the_path_mss() -> None:
    result = run_script(SYN_DATA_FRAG_NEEDED)
    assert result.status == "pass", result.message


def test_host_unreachable_fails_a_connect_in_syn_sent() -> None:
    result = run_script(CONNECT_UNREACHABLE)
    assert result.status == "pass", result.message


def test_an_icmp_quoting_another_sequence_number_is_ignored() -> None:
    quoted = CONNECT_UNREACHABLE.replace("host_unreachable\n", "host_unreachable [9:9(0)]\n")
    result = run_script(quoted)
    assert result.status == "fail" and "SO_ERROR" in result.message, result.message
