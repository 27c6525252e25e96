"""cwnd and ssthresh traces through the engine where the RFCs fix them: slow-start doubling,
Reno halving on fast retransmit, CUBIC's beta of 0.7, and cwnd = 1 after an RTO."""

from __future__ import annotations

import random

import pytest

from ustcp.tcp.congestion.base import CA_LOSS, TCP_INFINITE_SSTHRESH

from .harness import A_IP, Net, Sent
from .util import drain, open_pair, transfer


def bulk(n: int) -> bytes:
    return random.Random(n).randbytes(n)


def test_slow_start_doubles_cwnd_every_round_trip() -> None:
    net = Net(delay=0.05)  # 100 ms RTT, so rounds are easy to tell apart
    net.config_b.tcp_rmem = (4096, 4 << 20, 8 << 20)  # the receiver never limits
    _, client, server = open_pair(net)
    client.sockopts.sndbuf = 8 << 20
    client.send(net.now, bulk(4 << 20))
    start = net.now
    samples = []
    for rnd in range(1, 5):
        net.run(start + rnd * 0.1 + 0.001)
        drain(server, net.now)
        samples.append(client.snd.ccs.snd_cwnd)
    # 10 -> 20 -> 40 -> 80 -> 160: every ACKed packet adds one (RFC 5681 3.1 with ABC).
    assert samples == [20, 40, 80, 160]
    assert client.snd.ccs.snd_ssthresh == TCP_INFINITE_SSTHRESH


def lose_once(net: Net, target: dict[str, int]) -> None:
    def drop(sent: Sent) -> int:
        if sent.src == A_IP and sent.seg.payload and sent.seg.seq == target["seq"]:
            target["seq"] = -1
            return 0
        return 1
    net.filter = drop


@pytest.mark.parametrize(("cc", "expected"), [("reno", lambda w: w // 2),
                                               ("cubic", lambda w: w * 717 // 1024)])
def test_fast_retransmit_sets_ssthresh_by_the_algorithm(cc: str, expected) -> None:  # type: ignore[no-untyped-def]
    net = Net()
    net.config_a.tcp_congestion_control = cc
    net.config_b.tcp_rmem = (4096, 4 << 20, 8 << 20)
    target = {"seq": -1}
    lose_once(net, target)
    _, client, server = open_pair(net)
    client.sockopts.sndbuf = 8 << 20
    client.send(net.now, bulk(200_000))
    net.run(net.now + 0.2)
    drain(server, net.now)
    target["seq"] = client.snd.snd_nxt
    client.send(net.now, bulk(40 * client.snd.mss))
    net.run(net.now + 1.0)
    assert net.a.counters["TcpExtTCPSackRecovery"] == 1
    assert net.a.counters["TcpExtTCPTimeouts"] == 0
    entry_cwnd = client.snd.ccs.prior_cwnd  # cwnd when recovery began
    assert entry_cwnd >= 10
    assert client.snd.ccs.snd_ssthresh == max(expected(entry_cwnd), 2)
    assert client.snd.ccs.ca_state == 0
    assert client.snd.ccs.snd_cwnd >= client.snd.ccs.snd_ssthresh  # recovery ended at ssthresh


def test_rto_collapses_cwnd_to_one() -> None:
    cut = {"on": False}
    net = Net(filter=lambda s: 0 if cut["on"] and s.src == A_IP else 1)
    net.config_a.tcp_congestion_control = "reno"
    _, client, _server = open_pair(net)
    client.sockopts.sndbuf = 8 << 20
    client.send(net.now, bulk(100_000))
    net.run(net.now + 0.2)
    cwnd = client.snd.ccs.snd_cwnd
    cut["on"] = True
    client.send(net.now, bulk(20 * client.snd.mss))
    net.run(net.now + client.snd.rto_value() + 0.3)
    assert net.a.counters["TcpExtTCPTimeouts"] >= 1
    assert client.snd.ccs.ca_state == CA_LOSS
    assert client.snd.ccs.snd_cwnd == 1
    assert client.snd.ccs.snd_ssthresh == max(cwnd // 2, 2)
    cut["on"] = False
    net.run(net.now + 5.0)
    assert client.snd.ccs.ca_state == 0 and client.snd.rtx.packets_out == 0


def test_sender_silly_window_avoidance_waits_for_a_full_segment() -> None:
    net = Net()
    net.config_b.tcp_rmem = (4096, 8192, 8192)  # a window of five segments
    _, client, server = open_pair(net)
    client.sockopts.nodelay = True
    data = bulk(100_000)
    assert transfer(net, client, server, data, step=0.05) == data
    sizes = [len(s.seg.payload) for s in net.sent_by(A_IP) if s.seg.payload]
    # Never a runt while more data waits: every segment but the last is a full MSS
    # (the window must fit a whole segment, RFC 9293 3.8.6.2.1, Linux tcp_snd_wnd_test),
    # and the receiver never offers less than one (RFC 9293 3.8.6.2.2).
    assert all(size == client.snd.mss for size in sizes[:-1])
    assert all(s.seg.window == 0 or s.seg.window >= client.snd.mss
               for s in net.log if s.src != A_IP)
