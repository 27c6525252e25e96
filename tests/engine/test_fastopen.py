"""TCP Fast Open, server side (RFC 7413; listener.Listener._try_fastopen): small packetdrill
scripts on the engine, the same the kernel target runs, and the queue limit by hand."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ustcp.config import StackConfig
from ustcp.mib import Counters, Mib
from ustcp.packetdrill.parser import parse_script
from ustcp.packetdrill.runner import Result, Runner
from ustcp.tcp.engine import FASTOPEN_CACHE_MAX, TcpEngine
from ustcp.tcp.fastopen import FastOpenBlackhole, FastOpenKeys
from ustcp.tcp.options import SockOpts
from ustcp.tcp.states import State
from ustcp.wire.tcp import ACK, SYN, TcpOptions, TcpSegment

from .util import run_script

KEY = "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4"
COOKIE = "3021b9d889017eeb"  # KEY's cookie for 192.0.2.1 -> 192.168.0.1, as Linux's

LISTEN = f"""\
`sysctl -q net.ipv4.tcp_fastopen=%s
sysctl -q net.ipv4.tcp_fastopen_key={KEY}
sysctl -q net.ipv4.tcp_timestamps=0`
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0 setsockopt(3, SOL_TCP, TCP_FASTOPEN, [5], 4) = 0
+0 getsockopt(3, SOL_TCP, TCP_FASTOPEN, [5], [4]) = 0
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 `nstat -n`
"""


def run(text: str, flags: str = "0x2") -> Result:
    return Runner(parse_script(LISTEN % flags + text), Path("."), "inline").run()


def test_a_cookie_request_gets_the_cookie_on_an_ordinary_handshake() -> None:
    result = run(f"""\
+0 < S 0:10(10) win 32792 <mss 1460,sackOK,nop,nop,FO,nop,nop>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,FO {COOKIE},nop,nop>
+0 `nstat | grep -q "TcpExtTCPFastOpenCookieReqd *1 "`
+.01 < . 1:1(0) ack 1 win 257
+0 accept(3, ..., ...) = 4
+0 `nstat | grep -q TcpExtTCPFastOpenPassive || true`
""")
    assert result.status == "pass", result.message


def test_a_valid_cookie_delivers_the_syn_data_to_accept_at_once() -> None:
    result = run(f"""\
+0 < S 1000:1010(10) win 32792 <mss 1460,sackOK,nop,nop,FO {COOKIE},nop,nop>
+0 > S. 0:0(0) ack 1011 <mss 1460,nop,nop,sackOK>
+0 accept(3, ..., ...) = 4
+0 %{{ assert tcpi_state == TCP_SYN_RECV, tcpi_state }}%
+0 read(4, ..., 100) = 10
+0 write(4, ..., 20) = 20
+0 > P. 1:21(20) ack 11
+.01 < . 11:11(0) ack 21 win 257
+0 %{{ assert tcpi_state == TCP_ESTABLISHED, tcpi_state }}%
+0 `nstat | grep -q "TcpExtTCPFastOpenPassive *1 "`
""")
    assert result.status == "pass", result.message


def test_the_experimental_option_is_answered_in_its_own_form() -> None:
    result = run(f"""\
+0 < S 0:0(0) win 32792 <mss 1460,sackOK,nop,nop,FOEXP,nop,nop>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,FOEXP {COOKIE}>
""")
    assert result.status == "pass", result.message


def test_a_wrong_cookie_falls_back_and_hands_the_right_one() -> None:
    # The SYN-ACK acknowledges the SYN only (ack 1): the client must send its data again.
    result = run(f"""\
+0 < S 0:10(10) win 32792 <mss 1460,sackOK,nop,nop,FO 0102030405060708,nop,nop>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,FO {COOKIE},nop,nop>
+0 `nstat | grep -q "TcpExtTCPFastOpenPassiveFail *1 "`
+.01 < . 1:1(0) ack 1 win 257
+0 accept(3, ..., ...) = 4
+0 %{{ assert tcpi_state == TCP_ESTABLISHED, tcpi_state }}%
""")
    assert result.status == "pass", result.message


@pytest.mark.parametrize("flags", ["0x1", "0x0"])
def test_no_server_bit_no_cookie(flags: str) -> None:
    result = run("""\
+0 < S 0:0(0) win 32792 <mss 1460,sackOK,nop,nop,FO,nop,nop>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK>
+0 `nstat | grep -q "TcpExtTCPFastOpenCookieReqd *1 "`
""", flags)
    assert result.status == "pass", result.message


def test_no_cookie_needed_with_0x200() -> None:
    result = run("""\
+0 < S 1000:1010(10) win 32792 <mss 1460,sackOK,nop,nop>
+0 > S. 0:0(0) ack 1011 <mss 1460,nop,nop,sackOK>
+0 accept(3, ..., ...) = 4
+0 read(4, ..., 100) = 10
""", "0x202")
    assert result.status == "pass", result.message


def test_a_backup_key_cookie_is_accepted_and_replaced() -> None:
    text = (LISTEN % "0x2").replace(KEY, "00000001-00000002-00000003-00000004," + KEY)
    fresh = FastOpenKeys("00000001-00000002-00000003-00000004").cookie(
        socket.inet_aton("192.0.2.1"), socket.inet_aton("192.168.0.1")).hex()
    result = Runner(parse_script(text + f"""\
+0 < S 1000:1010(10) win 32792 <mss 1460,sackOK,nop,nop,FO {COOKIE},nop,nop>
+0 > S. 0:0(0) ack 1011 <mss 1460,nop,nop,sackOK,FO {fresh},nop,nop>
+0 `nstat | grep -q "TcpExtTCPFastOpenPassiveAltKey *1 "`
"""), Path("."), "inline").run()
    assert result.status == "pass", result.message


def test_the_fast_open_queue_is_bounded_by_its_length() -> None:
    cfg = StackConfig()
    cfg.set("tcp_fastopen", "0x2")
    cfg.set("tcp_fastopen_key", KEY)
    counters = Counters()
    engine = TcpEngine(cfg, counters, seed=1)
    local, remote = socket.inet_aton("192.168.0.1"), socket.inet_aton("192.0.2.1")
    listener = engine.listen(0.0, local, 8080, 10, SockOpts(fastopen=1))
    cookie = bytes.fromhex(COOKIE)
    for port in (40001, 40002):
        syn = TcpSegment(port, 8080, 1000, 0, SYN, 32792,
                         TcpOptions(mss=1460, fastopen=cookie), b"0123456789")
        engine.on_segment(0.0, remote, local, syn)
    synacks = [seg for _, _, seg in engine.take_output() if seg.flags == SYN | ACK]
    assert [seg.ack - 1000 for seg in synacks] == [11, 1]  # the second one's data not acked
    assert counters[Mib.TcpExtTCPFastOpenPassive] == 1
    assert counters[Mib.TcpExtTCPFastOpenListenOverflow] == 1
    child = listener.accept()
    assert child is not None and child.state == State.SYN_RECV
    assert child.recv(0.0, 100) == b"0123456789"


CLIENT = """\
`sysctl -q net.ipv4.tcp_timestamps=0
sysctl -q net.ipv4.tcp_rmem="4096 540000 15728640"`
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 setsockopt(3, SOL_TCP, TCP_FASTOPEN_CONNECT, [1], 4) = 0
+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation is now in progress)
+0 > S 0:0(0) <mss 1460,nop,nop,sackOK,nop,wscale 8,FO,nop,nop>
+.01 < S. 123:123(0) ack 1 win 14600 <mss 1460,nop,nop,sackOK,nop,wscale 6,FO abcd1234,nop,nop>
+0 > . 1:1(0) ack 1
+0 close(3) = 0
+0 > F. 1:1(0) ack 1
+.01 < F. 1:1(0) ack 2 win 92
+0 > . 2:2(0) ack 2
+0 `nstat -n`
+0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 4
+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 sendto(4, ..., 100, MSG_FASTOPEN, ..., ...) = 100
+0 > S 0:100(100) <mss 1460,nop,nop,sackOK,nop,wscale 8,FO abcd1234,nop,nop>
"""


def test_client_asks_for_a_cookie_then_sends_data_in_the_syn() -> None:
    # The same exchange passes on this machine's kernel (--target both).
    result = Runner(parse_script(CLIENT + """\
+.01 < S. 456:456(0) ack 101 win 14600 <mss 1460,nop,nop,sackOK,nop,wscale 6>
+0 > . 101:101(0) ack 1
+0 `nstat | grep -q "TcpExtTCPFastOpenActive *1 "`
"""), Path("."), "inline").run()
    assert result.status == "pass", result.message


def test_client_data_the_syn_ack_does_not_cover_goes_again_at_once() -> None:
    result = Runner(parse_script(CLIENT + """\
+.01 < S. 456:456(0) ack 1 win 14600 <mss 1460,nop,nop,sackOK,nop,wscale 6>
+0 > P. 1:101(100) ack 1
+0 `nstat | grep -q "TcpExtTCPFastOpenActiveFail *1 "`
"""), Path("."), "inline").run()
    assert result.status == "pass", result.message


def test_with_a_cookie_connect_waits_for_the_first_write() -> None:
    result = Runner(parse_script(CLIENT.replace(
        "+0 sendto(4, ..., 100, MSG_FASTOPEN, ..., ...) = 100\n",
        "+0 setsockopt(4, SOL_TCP, TCP_FASTOPEN_CONNECT, [1], 4) = 0\n"
        "+0 connect(4, ..., ...) = 0\n+.05 write(4, ..., 100) = 100\n")), Path("."),
        "inline").run()
    assert result.status == "pass", result.message


def test_the_client_cookie_cache_is_bounded() -> None:

    engine = TcpEngine(StackConfig(), Counters(), seed=1)
    for i in range(FASTOPEN_CACHE_MAX + 1):
        engine.fastopen_cache_set(i.to_bytes(4, "big"), 1460, b"abcd", False, 0)
    assert engine.fastopen_cookie((0).to_bytes(4, "big")) is None  # the oldest went
    assert engine.fastopen_cookie(FASTOPEN_CACHE_MAX.to_bytes(4, "big")) == b"abcd"
    assert len(engine._fastopen_cache) == FASTOPEN_CACHE_MAX


def test_syn_data_fits_the_mss_remembered_with_the_cookie() -> None:
    """tcp_send_syn_data: the SYN carries the server's MSS remembered with its cookie (940
    here) less the whole option space (40), and a non-blocking sendto returns that much;
    once the SYN-ACK covers it, TCP_INFO shows TCPI_OPT_SYN_DATA and one packet delivered
    (the SYN and its data count once)."""
    text = CLIENT.replace("<mss 1460,nop,nop,sackOK,nop,wscale 6,FO abcd1234",
                          "<mss 940,nop,nop,sackOK,nop,wscale 6,FO abcd1234")
    text = text.replace("sendto(4, ..., 100, MSG_FASTOPEN, ..., ...) = 100\n"
                        "+0 > S 0:100(100)",
                        "sendto(4, ..., 2000, MSG_FASTOPEN, ..., ...) = 900\n"
                        "+0 > S 0:900(900)")
    result = Runner(parse_script(text + """\
+.01 < S. 456:456(0) ack 901 win 14600 <mss 940,nop,nop,sackOK,nop,wscale 6>
+0 > . 901:901(0) ack 1
+0 %{ assert tcpi_options & TCPI_OPT_SYN_DATA, tcpi_options }%
+0 %{ assert tcpi_delivered == 1, tcpi_delivered }%
"""), Path("."), "inline").run()
    assert result.status == "pass", result.message


# A first Fast Open sendto with no cookie cached: the SYN asks for one
COOKIE_REQUEST = """\
`sysctl -q net.ipv4.tcp_timestamps=0
sysctl -q net.ipv4.tcp_rmem="4096 540000 15728640"`
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 sendto(3, ..., 100, MSG_FASTOPEN, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0 > S 0:0(0) <mss 1460,nop,nop,sackOK,nop,wscale 8,FO,nop,nop>
"""


def test_a_retransmitted_syn_goes_without_the_fast_open_option() -> None:
    """tcp_send_syn_data: only the first SYN asks for a cookie (or carries one with data);
    its retransmission is a plain SYN."""
    result = Runner(parse_script(COOKIE_REQUEST + """\
+1 > S 0:0(0) <mss 1460,nop,nop,sackOK,nop,wscale 8>
"""), Path("."), "inline").run()
    assert result.status == "pass", result.message


def test_an_unanswered_cookie_request_is_asked_again_in_the_experimental_form() -> None:
    """A cookie request whose SYN-ACK has no Fast Open option (tcp_rcv_fastopen_synack's
    try_exp = 1): the next SYN asks with the experimental option (kind 254, 0xF989)."""
    result = Runner(parse_script(COOKIE_REQUEST + """\
+.01 < S. 123:123(0) ack 1 win 14600 <mss 1460,nop,nop,sackOK,nop,wscale 6>
+0 > . 1:1(0) ack 1
+0 close(3) = 0
+0 > F. 1:1(0) ack 1
+.01 < F. 1:1(0) ack 2 win 92
+0 > . 2:2(0) ack 2
+0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 4
+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 sendto(4, ..., 100, MSG_FASTOPEN, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0 > S 0:0(0) <mss 1460,nop,nop,sackOK,nop,wscale 8,FOEXP>
"""), Path("."), "inline").run()
    assert result.status == "pass", result.message


def test_a_reset_fast_open_child_reads_its_data_then_econnreset() -> None:
    """tcp_reset on a Fast Open child in SYN_RECV: ECONNRESET (only a connect in SYN_SENT is
    refused), and the data that came with the SYN is still read first."""
    result = run(f"""\
+0 < S 0:10(10) win 32792 <mss 1460,sackOK,nop,nop,FO {COOKIE},nop,nop>
+0 > S. 0:0(0) ack 11 <mss 1460,nop,nop,sackOK>
+0 accept(3, ..., ...) = 4
+.01 < R. 11:11(0) ack 1 win 257
+0 read(4, ..., 100) = 10
+0 read(4, ..., 100) = -1 ECONNRESET (Connection reset by peer)
""")
    assert result.status == "pass", result.message


def test_the_fin_that_completes_a_fast_open_handshake_is_acked_at_once() -> None:
    """tcp_fastopen_add_skb queues the SYN's data without tcp_event_data_recv: no ATO, no
    quick-ACK credit, so the FIN that completes the handshake is ACKed at once, not after
    the 40 ms delayed-ACK minimum (as Linux 6.18 does here; this script passes on it)."""
    result = run(f"""\
+0 < S 0:10(10) win 32792 <mss 1460,sackOK,nop,nop,FO {COOKIE},nop,nop>
+0 > S. 0:0(0) ack 11 <mss 1460,nop,nop,sackOK>
+.1 < F. 11:11(0) ack 1 win 32792
+0 > . 1:1(0) ack 12
+.1 accept(3, ..., ...) = 4
+0 %{{ assert tcpi_state == TCP_CLOSE_WAIT, tcpi_state }}%
+0 read(4, ..., 512) = 10
+0 read(4, ..., 512) = 0
+0 close(4) = 0
+0 > F. 1:1(0) ack 12
""")
    assert result.status == "pass", result.message


def test_data_and_fin_in_a_fast_open_syn_ack_are_taken() -> None:
    """tcp_fastopen_add_skb on the client: a SYN-ACK that answers a Fast Open SYN may carry
    data and a FIN; both are taken (CLOSE_WAIT at once). The FIN made the connection
    interactive, so the ACK waits for the delayed-ACK timer at its longest, 200 ms
    (tcp_rcv_synsent_state_process saves one), as Linux 6.18 does here."""
    result = Runner(parse_script(CLIENT + """\
+.01 < SF. 1000:1200(200) ack 101 win 14600 <mss 1460,nop,nop,sackOK,nop,wscale 6>
+0 %{ assert tcpi_state == TCP_CLOSE_WAIT, tcpi_state }%
+.2 > . 101:101(0) ack 202
+0 read(4, ..., 1000) = 200
+0 read(4, ..., 1000) = 0
"""), Path("."), "inline").run()
    assert result.status == "pass", result.message


def test_a_syn_ack_echoing_a_timestamp_we_never_sent_is_reset() -> None:
    """tcp_rcv_synsent_state_process: a SYN-ACK whose TSecr is not between our first SYN's
    TSval and now answers some other SYN: RST, PAWSActive counted, still SYN_SENT."""
    result = Runner(parse_script("""\
--tcp_ts_ecr_scaled
`sysctl -q net.ipv4.tcp_rmem="4096 540000 15728640"`
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0 > S 0:0(0) <mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 8>
+.01 < S. 0:0(0) ack 1 win 5840 <mss 1460,TS val 500 ecr 9999,sackOK,nop,wscale 6>
+0 > R 1:1(0)
+0 `nstat | grep -q "TcpExtPAWSActive *1 "`
+.01 < S. 0:0(0) ack 1 win 5840 <mss 1460,TS val 500 ecr 1,sackOK,nop,wscale 6>
+0 > . 1:1(0) ack 1 <nop,nop,TS val 21 ecr 500>
"""), Path("."), "inline").run()
    assert result.status == "pass", result.message


def test_flushing_tcp_metrics_forgets_the_cookie() -> None:
    """``ip tcp_metrics flush all`` empties the client's Fast Open cache: the next Fast Open
    SYN asks for a cookie again instead of carrying data."""
    result = Runner(parse_script(CLIENT.replace(
        "+0 sendto(4, ..., 100, MSG_FASTOPEN, ..., ...) = 100\n"
        "+0 > S 0:100(100) <mss 1460,nop,nop,sackOK,nop,wscale 8,FO abcd1234,nop,nop>\n",
        "+0 `ip tcp_metrics flush all`\n"
        "+0 sendto(4, ..., 100, MSG_FASTOPEN, ..., ...) = -1 EINPROGRESS "
        "(Operation now in progress)\n"
        "+0 > S 0:0(0) <mss 1460,nop,nop,sackOK,nop,wscale 8,FO,nop,nop>\n")),
        Path("."), "inline").run()
    assert result.status == "pass", result.message


# CLIENT's cookie, then SYN data into a black hole: three SYN timeouts pause active Fast Open
BLACKHOLE = CLIENT.replace(
    'tcp_rmem="4096 540000 15728640"`',
    'tcp_rmem="4096 540000 15728640"\nsysctl -q net.ipv4.tcp_fastopen_blackhole_timeout_sec=4`',
) + """\
+1 > S 0:0(0) <mss 1460,nop,nop,sackOK,nop,wscale 8>
+1 > S 0:0(0) <mss 1460,nop,nop,sackOK,nop,wscale 8>
+1 > S 0:0(0) <mss 1460,nop,nop,sackOK,nop,wscale 8>
+0 `nstat | grep -q "TcpExtTCPFastOpenBlackhole *1 "`
+0 close(4) = 0
// Paused: the next Fast Open sendto sends a plain SYN and takes nothing
+0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 5
+0 fcntl(5, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 sendto(5, ..., 100, MSG_FASTOPEN, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0 > S 0:0(0) <mss 1460,nop,nop,sackOK,nop,wscale 8>
+0 close(5) = 0
// Four seconds later Fast Open is tried again
+4.1 socket(..., SOCK_STREAM, IPPROTO_TCP) = 6
+0 fcntl(6, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 sendto(6, ..., 100, MSG_FASTOPEN, ..., ...) = 100
+0 > S 0:100(100) <mss 1460,nop,nop,sackOK,nop,wscale 8,FO abcd1234,nop,nop>
"""


def test_fast_open_timeouts_pause_active_fast_open() -> None:
    """tcp_fastopen_blackhole_timeout_sec (tcp_fastopen_active_detect_blackhole): SYN data
    that times out three times pauses active Fast Open host-wide (TcpExtTCPFastOpenBlackhole);
    meanwhile a Fast Open sendto sends a plain SYN and takes nothing; after the timeout Fast
    Open is tried again. The script passes on this machine's kernel too (--target both)."""
    result = Runner(parse_script(BLACKHOLE), Path("."), "inline").run()
    assert result.status == "pass", result.message


def test_blackhole_pauses_double_and_a_fin_ends_them() -> None:
    """tcp_fastopen_active_should_disable: each pause is twice the last (at most 64 times
    the sysctl); a FIN on a connection opened after a pause clears the count."""
    bh = FastOpenBlackhole()
    assert not bh.detect(0.0, 0, 2, False)  # the sysctl at 0 (Linux's default): never
    assert not bh.detect(0.0, 10, 1, False)  # before the third timeout: not yet
    assert bh.detect(0.0, 10, 2, False) and bh.paused(9.9, 10) and not bh.paused(10.0, 10)
    assert bh.detect(20.0, 10, 0, True) and bh.paused(39.9, 10) and not bh.paused(40.0, 10)
    for _ in range(10):
        bh.detect(100.0, 10, 2, False)
    assert bh.paused(100.0 + 640 - 0.1, 10) and not bh.paused(100.0 + 640, 10)
    bh.clear()
    assert not bh.paused(100.0, 10)


# The errnos of a Fast Open send (tcp_sendmsg_fastopen, __inet_stream_connect); the script
# passes on this machine's kernel too (``ustcp packetdrill --target both``).
SEND_ERRNOS = """\
`sysctl -q net.ipv4.tcp_rmem="4096 540000 15728640"
sysctl -q net.ipv4.tcp_timestamps=0`
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
// Fast Open off for clients, or no address: EOPNOTSUPP (tcp_sendmsg_fastopen)
+0 `sysctl -q net.ipv4.tcp_fastopen=0`
+0 sendto(3, ..., 1000, MSG_FASTOPEN, ..., ...) = -1 EOPNOTSUPP (Operation not supported)
+0 `sysctl -q net.ipv4.tcp_fastopen=1`
+0 sendto(3, ..., 1000, MSG_FASTOPEN, AF_UNSPEC, ...) = -1 EOPNOTSUPP (Operation not supported)
// No cookie: the SYN asks for one; another Fast Open send while it is out is EALREADY
+0 sendto(3, ..., 1000, MSG_FASTOPEN, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0 > S 0:0(0) <mss 1460,nop,nop,sackOK,nop,wscale 8,FO,nop,nop>
+.01 sendto(3, ..., 1000, MSG_FASTOPEN, ..., ...) = -1 EALREADY (Operation already in progress)
+0 write(3, ..., 1000) = -1 EAGAIN (Resource temporarily unavailable)
"""


def test_fast_open_send_errnos() -> None:
    result = run_script(SEND_ERRNOS)
    assert result.status == "pass", result.message
