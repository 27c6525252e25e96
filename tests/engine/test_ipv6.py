"""TCP over IPv6 in the engine, on virtual time: the engine sees only 16-byte addresses and
asks its host for the MSS (60 bytes of headers, not 40); syncookies use Linux's IPv6 MSS
table; TIME_WAIT, tw_reuse, PAWS and SACK recovery work unchanged; a listener on ``::``
takes IPv4 too unless IPV6_V6ONLY."""

from __future__ import annotations

import os

import pytest

from ustcp.config import StackConfig
from ustcp.mib import Counters
from ustcp.tcp import syncookies
from ustcp.tcp.engine import TcpEngine
from ustcp.tcp.options import SockOpts
from ustcp.tcp.states import State
from ustcp.wire.addr import ANY6
from ustcp.wire.tcp import ACK, RST, SYN, TcpOptions, TcpSegment

from .harness import A_IP, A_IP6, B_IP, B_IP6, Net, Sent
from .util import drain, open_pair, transfer


def test_handshake_announces_the_v6_mss(net: Net) -> None:
    _, client, server = open_pair(net, a_ip=A_IP6, b_ip=B_IP6)
    syn = net.log[0].seg
    assert syn.options.mss == 1500 - 60  # tcp_v6 MSS: 40 bytes of IPv6 header, 20 of TCP
    assert client.rcv.advmss == server.rcv.advmss == 1440
    assert client.snd.mss == server.snd.mss == 1440 - 12  # timestamps on
    assert client.name == f"[fd00::1]:{client.local_port}>[fd00::2]:80"
    assert client.tcp_info(net.now)["tcpi_pmtu"] == 1500
    assert all(len(s.src) == len(s.dst) == 16 for s in net.log)


def test_sack_recovery_over_v6_delivers_every_byte() -> None:
    dropped: set[int] = set()

    def lose_two(sent: Sent) -> int:
        if sent.src == A_IP6 and sent.seg.payload and len(dropped) < 2 \
                and sent.seg.seq not in dropped and sent.t > 0.05:
            dropped.add(sent.seg.seq)
            return 0
        return 1

    net = Net(filter=lose_two)
    _, client, server = open_pair(net, a_ip=A_IP6, b_ip=B_IP6)
    data = os.urandom(300_000)
    assert transfer(net, client, server, data) == data
    assert len(dropped) == 2
    assert net.a.counters["TcpExtTCPSackRecovery"] >= 1
    assert net.b.counters["TcpExtTCPSACKReorder"] == 0


@pytest.mark.parametrize(("peer_mss", "cookie_mss"), [
    (1440, 1440), (1400, 1220), (1000, 1220), (9000, 8940), (1460, 1440)])
def test_syncookies_use_the_v6_mss_table(peer_mss: int, cookie_mss: int) -> None:
    """cookie_v6_init_sequence: msstab6 = 1280, 1480, 1500, 9000 less 60."""
    engine = TcpEngine(StackConfig(tcp_syncookies=2), Counters(), seed=3)
    listener = engine.listen(0.0, B_IP6, 80, 16)
    syn = TcpSegment(40000, 80, 1000, 0, SYN, 64240,
                     TcpOptions(mss=peer_mss, wscale=7, sack_permitted=True, ts_val=7))
    engine.on_segment(1.0, A_IP6, B_IP6, syn)
    [(src, dst, synack)] = engine.take_output()
    assert (src, dst, synack.flags) == (B_IP6, A_IP6, SYN | ACK)
    assert listener.syn_queue_len == 0 and engine.counters["TcpExtSyncookiesSent"] == 1
    assert synack.options.mss == 1440
    ack = TcpSegment(40000, 80, 1001, (synack.seq + 1) & 0xFFFFFFFF, ACK, 502,
                     TcpOptions(ts_val=8, ts_ecr=synack.options.ts_val or 0), b"v6 cookie")
    engine.on_segment(2.0, A_IP6, B_IP6, ack)
    assert engine.counters["TcpExtSyncookiesRecv"] == 1
    conn = listener.accept()
    assert conn is not None
    assert conn.snd.mss_clamp == cookie_mss and conn.snd.sack_ok and conn.snd.snd_wscale == 7
    assert conn.recv(2.0, 100) == b"v6 cookie"


def test_cookie_for_v6_fails_against_another_address() -> None:
    secrets = syncookies.SyncookieSecrets(b"k")
    cookie, mss = syncookies.cookie_init_sequence(secrets, 0.0, A_IP6, 1, B_IP6, 80, 5, 1440)
    assert mss == 1440
    assert syncookies.cookie_check(secrets, 1.0, A_IP6, 1, B_IP6, 80, 5, cookie) == 1440
    other = bytes(15) + b"\x09"
    assert syncookies.cookie_check(secrets, 1.0, other, 1, B_IP6, 80, 5, cookie) != 1440


def test_time_wait_reopen_and_tw_reuse_over_v6() -> None:
    net = Net()
    net.config_a.tcp_tw_reuse = 1
    _, client, server = open_pair(net, a_ip=A_IP6, b_ip=B_IP6)
    client.close(net.now)
    net.run(net.now + 0.1)
    server.close(net.now)
    net.run(net.now + 0.1)
    assert client.key in net.a.time_wait.entries  # the table took over the v6 4-tuple
    entry = net.a.time_wait.entries[client.key]
    net.run(net.now + 1.5)
    again = net.a.connect(net.now, A_IP6, B_IP6, 80, local_port=client.local_port)
    assert again.snd.iss == (entry.snd_nxt + 65537) & 0xFFFFFFFF  # tcp_twsk_unique
    net.run(net.now + 0.5)
    assert again.state == State.ESTABLISHED
    assert client.key not in net.a.time_wait.entries  # reused


def test_paws_over_v6(net: Net) -> None:
    _, client, server = open_pair(net, a_ip=A_IP6, b_ip=B_IP6)
    client.send(net.now, b"fresh")
    net.run(net.now + 0.1)
    assert drain(server, net.now) == b"fresh"
    dup = TcpSegment(client.local_port, 80, server.rcv.rcv_nxt, server.snd.snd_nxt, ACK, 1000,
                     TcpOptions(ts_val=(server.rcv.ts_recent - 10) & 0xFFFFFFFF, ts_ecr=0),
                     b"stale")
    net.b.on_segment(net.now, A_IP6, B_IP6, dup)
    assert net.b.counters["TcpExtPAWSEstab"] == 1
    assert drain(server, net.now) == b""


@pytest.mark.parametrize("v6only", [False, True])
def test_listener_on_any6_takes_v4_unless_v6only(v6only: bool) -> None:
    engine = TcpEngine(StackConfig(), Counters(), seed=3)
    listener = engine.listen(0.0, ANY6, 80, 16, SockOpts(v6only=v6only))
    assert listener.name == "[::]:80"
    for src, dst in ((A_IP, B_IP), (A_IP6, B_IP6)):
        engine.on_segment(0.0, src, dst, TcpSegment(40000, 80, 1, 0, SYN, 64240,
                                                    TcpOptions(mss=1400)))
    flags = [(len(dst), seg.flags) for _, dst, seg in engine.take_output()]
    v4_answer = RST | ACK if v6only else SYN | ACK
    assert flags == [(4, v4_answer), (16, SYN | ACK)]
    with pytest.raises(OSError):
        engine.listen(0.0, B_IP6, 80, 16)  # :: already holds port 80
