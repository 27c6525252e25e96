"""PLPMTUD (RFC 4821, tcp_mtu_probing) on virtual time: a path that silently drops
segments above 1280 bytes (a black hole) stalls a connection with tcp_mtu_probing=0 and is
survived with 1; with 2 the search starts at tcp_base_mss and probes up to the path's MTU;
a lost probe lowers search_high without a cwnd cut."""

from __future__ import annotations

import os

from ustcp.config import StackConfig
from ustcp.tcp.states import State

from .harness import A_IP, Net, Sent
from .util import drain, open_pair, transfer

HOLE = 1280  # the path's MTU; nobody says so


def black_hole(sent: Sent) -> int:
    """Drop what would not fit in a 1280-byte IPv4 packet (20 + 20 + options + payload)."""
    opts = 12 if sent.seg.options.ts_val is not None else 0
    return 0 if 40 + opts + len(sent.seg.payload) > HOLE else 1


def net_with(probing: int) -> Net:
    config = StackConfig()
    config.tcp_mtu_probing = probing
    return Net(config_a=config, filter=black_hole)


def test_black_hole_stalls_without_probing() -> None:
    net = net_with(0)
    _, client, server = open_pair(net)
    client.send(net.now, os.urandom(100_000))
    net.run(net.now + 60)
    assert drain(server, net.now) == b""  # every full-sized segment vanished
    assert client.snd.mss == 1448 and net.a.counters["TcpExtTCPTimeouts"] >= 5


def test_black_hole_survived_with_tcp_mtu_probing_1() -> None:
    net = net_with(1)
    _, client, server = open_pair(net)
    data = os.urandom(300_000)
    start = net.now
    assert transfer(net, client, server, data, limit=120) == data
    # black hole suspected after tcp_retries1 (3 s of retransmitting): MSS to base_mss's,
    # then probes climb to within tcp_probe_threshold of the hole's 1280
    assert client.snd.mtup.enabled and net.now - start < 10
    assert HOLE - 52 - 8 <= client.snd.mss <= HOLE - 52
    assert client.snd.mtup.search_high - client.snd.mtup.search_low < 8
    assert net.a.counters["TcpExtTCPMTUPFail"] >= 1  # a probe above 1280 was lost
    assert net.a.counters["TcpExtTCPMTUPSuccess"] >= 2
    late = [s for s in net.log if s.src == A_IP and s.t > net.now - 0.5 and s.seg.payload]
    assert late and sum(not black_hole(s) for s in late) <= 1  # a probe at most


def test_probing_2_starts_at_base_mss_and_climbs_to_the_path_mtu() -> None:
    config = StackConfig()
    config.tcp_mtu_probing = 2
    net = Net(config_a=config)
    _, client, server = open_pair(net)
    assert client.snd.mss == 1024 - 12  # held at search_low from the start
    data = os.urandom(2_000_000)
    assert transfer(net, client, server, data, limit=120) == data
    assert net.a.counters["TcpExtTCPMTUPSuccess"] >= 2
    assert client.snd.mss > 1400 and client.snd.mtup.search_low > 1450
    assert client.state == State.ESTABLISHED


def test_lost_probe_lowers_search_high_and_keeps_cwnd() -> None:
    config = StackConfig()
    config.tcp_mtu_probing = 2
    net = Net(config_a=config, filter=black_hole)
    _, client, server = open_pair(net)
    data = os.urandom(1_000_000)
    assert transfer(net, client, server, data, limit=120) == data
    assert net.a.counters["TcpExtTCPMTUPFail"] >= 1
    assert client.snd.mtup.search_high < 1500 and client.snd.mss <= HOLE - 52
    assert net.a.counters["TcpExtTCPMTUPSuccess"] >= 1  # found something above 1064
