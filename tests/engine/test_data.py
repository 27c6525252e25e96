"""Data transfer, ACK policy, retransmission and loss recovery on virtual time."""

from __future__ import annotations

import hashlib
import itertools
import random

import pytest

from ustcp.config import StackConfig
from ustcp.mib import Counters
from ustcp.tcp.engine import TcpEngine
from ustcp.tcp.states import State
from ustcp.wire.tcp import PSH

from .harness import A_IP, B_IP, Net, Sent
from .util import drain, open_pair, transfer


def payload(n: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)


def test_data_both_ways(net: Net) -> None:
    _, client, server = open_pair(net)
    up, down = payload(300_000, 1), payload(200_000, 2)
    assert transfer(net, client, server, up) == up
    assert transfer(net, server, client, down) == down
    assert client.tcp_info(net.now)["tcpi_bytes_acked"] == len(up)
    assert server.tcp_info(net.now)["tcpi_bytes_received"] == len(up)


def test_segments_are_mss_sized_and_each_packet_pushes_on_its_last(net: Net) -> None:
    # Linux 6.18 sends a write as packets of tcp_tso_segs MSS (here the minimum, 2: the
    # pacing rate of 10 segments per 10 ms RTT is under 2 MSS per 1/1024 s), cut into MSS
    # segments when the link has no GSO, with PSH on the last segment of each packet.
    _, client, _server = open_pair(net)
    mark = len(net.log)
    client.send(net.now, b"z" * 5000)
    net.run(net.now + 0.001)
    data = [s.seg for s in net.log[mark:] if s.src == A_IP and s.seg.payload]
    assert [len(s.payload) for s in data] == [1448, 1448, 1448, 656]
    assert [bool(s.flags & PSH) for s in data] == [False, True, False, True]


def test_first_data_is_quick_acked(net: Net) -> None:
    _, client, _server = open_pair(net)
    mark = len(net.log)
    client.send(net.now, b"a" * 100)
    net.run(net.now + 0.02)
    data = next(s for s in net.log[mark:] if s.src == A_IP)
    ack = next(s for s in net.log[mark:] if s.src == B_IP)
    assert ack.seg.ack == (data.seg.seq + 100) & 0xFFFFFFFF
    assert ack.t == data.t + net.delay  # no delay: quick-ack at the start


def test_every_second_full_segment_is_acked_at_once(net: Net) -> None:
    _, client, server = open_pair(net)
    client.send(net.now, b"w" * 10)
    net.run(net.now + 0.1)
    server.rcv.quick = 0
    server.rcv.rcv_mss = 1448
    mark = len(net.log)
    client.send(net.now, b"f" * (4 * 1448))
    net.run(net.now + 0.011)
    acks = [s for s in net.log[mark:] if s.src == B_IP]
    assert [s.seg.ack - client.snd.snd_una for s in acks][:0] == []
    assert len(acks) == 2
    assert all(s.t == net.log[mark].t + net.delay for s in acks)


def test_delayed_ack_waits_40ms_once_quickacks_are_spent() -> None:
    net = Net()
    _, client, server = open_pair(net)
    server.rcv.quick = 0  # the quick-ack credit of a new connection is spent
    server.rcv.ato = 0.04
    server.rcv.pingpong = 1
    mark = len(net.log)
    client.send(net.now, b"b" * 10)
    sent_at = net.now
    net.run(net.now + 0.2)
    ack = next(s for s in net.log[mark:] if s.src == B_IP)
    assert abs((ack.t - sent_at) - (net.delay + 0.04)) < 1e-6
    assert net.b.counters["TcpExtDelayedACKs"] == 1


def test_retransmission_timeout_with_exponential_backoff() -> None:
    cut = {"on": False}
    net = Net(filter=lambda s: 0 if cut["on"] and s.src == A_IP and s.seg.payload else 1)
    _, client, server = open_pair(net)
    client.send(net.now, b"warm-up")
    net.run(net.now + 0.5)
    cut["on"] = True
    client.send(net.now, b"lost")
    net.run(net.now + 10.0)
    times = [s.t for s in net.sent_by(A_IP) if bytes(s.seg.payload) == b"lost"]
    assert net.a.counters["TcpExtTCPLossProbes"] == 1  # the first resend is the TLP
    gaps = [round(b - a, 4) for a, b in itertools.pairwise(times[1:])]
    assert len(gaps) >= 4
    for earlier, later in itertools.pairwise(gaps):
        assert abs(later - 2 * earlier) < 1e-3  # RFC 6298 5.5: back off the timer
    assert gaps[0] >= 0.2  # Linux's minimum RTO
    cut["on"] = False
    net.run(net.now + 20.0)
    assert drain(server, net.now) == b"warm-uplost"
    assert client.snd.ccs.snd_cwnd >= 1


def test_fast_retransmit_after_three_sacks_halves_cwnd_with_reno() -> None:
    net = Net()
    net.config_a.tcp_congestion_control = "reno"
    lost_once = {"done": False}

    def drop_one(sent: Sent) -> int:
        if sent.src == A_IP and sent.seg.payload and not lost_once["done"] \
                and net.a.connections and sent.seg.seq == target["seq"]:
            lost_once["done"] = True
            return 0
        return 1

    target = {"seq": -1}
    net.filter = drop_one
    _, client, server = open_pair(net)
    client.send(net.now, payload(20 * 1448))
    net.run(net.now + 1)
    target["seq"] = client.snd.snd_nxt  # lose the first segment of the next flight
    cwnd_before = client.snd.ccs.snd_cwnd
    data = payload(30 * 1448, 3)
    client.send(net.now, data)
    net.run(net.now + 0.011)  # SACKs are back, the hole is retransmitted
    assert client.snd.ccs.ca_state in (3, 0)
    assert client.snd.ccs.snd_ssthresh == max(cwnd_before // 2, 2) or \
        client.snd.ccs.snd_ssthresh == max(client.snd.ccs.prior_cwnd // 2, 2)
    net.run(net.now + 2)
    assert net.a.counters["TcpExtTCPSackRecovery"] == 1
    assert net.a.counters["TcpExtTCPTimeouts"] == 0
    got = drain(server, net.now)
    assert got[-len(data):] == data


def lossy(rate: float, seed: int) -> tuple[Net, random.Random]:
    rng = random.Random(seed)
    net = Net(filter=lambda s: 0 if rng.random() < rate else 1)
    return net, rng


def test_bulk_transfer_through_loss_keeps_data_intact() -> None:
    for rate, seed in ((0.01, 1), (0.05, 2)):
        net, _ = lossy(rate, seed)
        _, client, server = open_pair(net)
        data = payload(2_000_000, seed)
        got = transfer(net, client, server, data, limit=900.0)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        assert net.a.counters["TcpRetransSegs"] > 0
        net.run(net.now + 5.0)
        # The scoreboard drains to zero once everything is acknowledged.
        assert (client.snd.rtx.packets_out, client.snd.rtx.sacked_out, client.snd.rtx.lost_out,
                client.snd.rtx.retrans_out) == (0, 0, 0, 0)
        assert client.snd.ccs.ca_state == 0


def test_zero_window_persist_probes_back_off_and_recover() -> None:
    net = Net()
    net.config_b.tcp_rmem = (4096, 16384, 16384)
    _, client, server = open_pair(net)
    data = payload(100_000)
    sent = client.send(net.now, data)
    net.run(net.now + 30.0)
    assert client.snd.snd_wnd == 0
    probes = [s for s in net.sent_by(A_IP) if not s.seg.payload and
              s.seg.seq == (client.snd.snd_una - 1) & 0xFFFFFFFF]
    assert len(probes) >= 3
    gaps = [b.t - a.t for a, b in itertools.pairwise(probes)]
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps))
    # Each probe's ACK (one RTT later, still a zero window) re-arms the persist timer
    # from its arrival (tcp_ack_probe), with the interval doubled each time (once the
    # RTO has settled: the first gaps still see it move).
    rtt = 2 * net.delay
    for earlier, later in itertools.pairwise(gaps[2:]):
        assert later - rtt == pytest.approx(2 * (earlier - rtt), abs=0.002)
    assert net.a.counters["TcpExtTCPWinProbe"] >= 3
    assert client.snd.backoff >= 3
    received = drain(server, net.now)
    net.run(net.now + 0.007)  # the window update arrives, data leaves, no ACK yet
    # tcp_ack_probe: the opened window ends the probing and forgets its backoff, so the
    # data now in flight is timed by the plain RTO.
    assert client.snd.rtx.packets_out and client.snd.backoff == 0
    assert client.snd.rto_value() == client.snd.rtt.rto
    while len(received) < len(data):
        if sent < len(data):
            sent += client.send(net.now, data[sent:])
        net.run(net.now + 2.0)
        received += drain(server, net.now)
    assert received == data
    assert client.state == server.state == State.ESTABLISHED


def test_nagle_holds_small_segments_until_acked_and_nodelay_does_not(net: Net) -> None:
    _, client, server = open_pair(net)
    mark = len(net.log)
    for _ in range(5):
        client.send(net.now, b"x")
    net.run(net.now + 0.001)
    assert len([s for s in net.log[mark:] if s.src == A_IP and s.seg.payload]) == 1
    net.run(net.now + 0.5)
    assert drain(server, net.now) == b"xxxxx"
    client.sockopts.nodelay = True
    mark = len(net.log)
    for _ in range(5):
        client.send(net.now, b"y")
    net.run(net.now + 0.001)
    assert len([s for s in net.log[mark:] if s.src == A_IP and s.seg.payload]) == 5


def test_receive_buffer_grows_for_a_reader_that_keeps_up() -> None:
    net = Net(delay=0.02)
    _, client, server = open_pair(net)
    client.sockopts.sndbuf = 8 << 20
    data = payload(8_000_000, 9)
    assert transfer(net, client, server, data, step=0.005) == data
    rmem_default, rmem_max = net.config_b.tcp_rmem[1], net.config_b.tcp_rmem[2]
    assert rmem_default < server.rcv.rcvbuf <= rmem_max  # tcp_moderate_rcvbuf
    assert max(s.seg.window << server.rcv.rcv_wscale for s in net.sent_by(B_IP)) > 65535 * 2
    net.config_b.tcp_moderate_rcvbuf = 0
    _, client2, server2 = open_pair(net, port=81)
    assert transfer(net, client2, server2, data[:2_000_000], step=0.005) == data[:2_000_000]
    assert server2.rcv.rcvbuf == rmem_default


def test_reader_that_stops_gets_a_zero_window_not_drops() -> None:
    # With window scaling the advertised window is rounded up to the scale unit; what
    # was promised must still be accepted, and the window must reach exactly zero.
    net = Net()
    _, client, server = open_pair(net)
    client.sockopts.sndbuf = 8 << 20
    assert server.rcv.rcv_wscale == 7
    client.send(net.now, payload(1_000_000))
    net.run(net.now + 5.0)
    assert net.b.counters["TcpExtTCPRcvQDrop"] == 0
    assert net.b.counters["TcpExtTCPToZeroWindowAdv"] >= 1
    assert client.snd.snd_wnd == 0 and net.a.counters["TcpExtTCPWinProbe"] >= 1
    assert len(server.rcv.rcv_buf) >= server.rcv.rcvbuf - (1 << server.rcv.rcv_wscale)


def test_a_large_window_scale_cannot_grow_the_buffer_of_a_reader_that_stopped() -> None:
    """Found by the pair fuzzer. The window never shrinks, so each ACK rounds what is left
    of it up to the scale unit; with a unit above the MSS (tcp_rmem[2] of 256 MB: scale 13,
    8 KB) it never closed, and honouring it grew a stopped reader's buffer without bound
    (3 MB for a 128 KB buffer after 20 s). Now the promise is honoured only up to a bound
    past the buffer; the segment beyond is dropped and the window goes to zero at once
    (Linux: tcp_try_rmem_schedule, ICSK_ACK_NOMEM), and the data still arrives intact."""
    config = StackConfig(tcp_rmem=(4096, 131072, 1 << 28))
    net = Net(config_a=config, config_b=config)
    _, client, server = open_pair(net)
    assert server.rcv.rcv_wscale == 13
    client.sockopts.sndbuf = 8 << 20
    data = payload(3_000_000)
    assert client.send(net.now, data) == len(data)
    net.run(net.now + 20.0)
    assert server.rcv.rcvbuf < len(server.rcv.rcv_buf) <= server.rcv.rcvbuf + 8192
    assert net.b.counters["TcpExtTCPRcvQDrop"] >= 1 and server.rcv.rcv_wnd == 0
    received = bytearray()
    while len(received) < len(data) and net.now < 300.0:
        received += drain(server, net.now)
        net.run(net.now + 0.1)
    assert bytes(received) == data


@pytest.mark.parametrize(("loss", "cc"), [(0.01, "cubic"), (0.05, "reno")])
def test_50mb_through_loss_reordering_and_duplication(loss: float, cc: str) -> None:
    rng = random.Random(int(loss * 1000))

    def impair(sent: Sent) -> int:
        r = rng.random()
        return 0 if r < loss else 2 if r < loss + 0.01 else 1  # loss, 1% duplicates

    net = Net(filter=impair, delay=0.005,
              extra_delay=lambda s: 0.004 if rng.random() < 0.02 else 0.0)  # 2% reordered
    net.config_a.tcp_congestion_control = cc
    _, client, server = open_pair(net)
    client.sockopts.sndbuf = 8 << 20
    data = payload(50_000_000, 50)
    got = transfer(net, client, server, data, limit=3600.0, step=0.05)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert net.a.counters["TcpRetransSegs"] > 0 and net.b.counters["TcpExtTCPOFOQueue"] > 0
    assert net.b.counters["TcpExtDelayedACKLost"] > 0  # duplicates were D-SACKed


@pytest.mark.parametrize("sack", [1, 0], ids=["sack", "no-sack"])
def test_send_time_queue_stays_as_short_as_the_flight(sack: int) -> None:
    """The RACK send-time queue holds only what may still be lost: after 500 request /
    response exchanges and a 1 MB transfer it is no longer than the retransmission queue,
    with SACK (RACK runs) and without (it never does)."""
    config = StackConfig(tcp_sack=sack)
    net = Net(config_a=config, config_b=config, delay=0.001)
    _, client, server = open_pair(net)
    for i in range(500):
        client.send(net.now, b"?")
        net.run(net.now + 0.01)
        assert drain(server, net.now) == b"?"
        server.send(net.now, b"!")
        net.run(net.now + 0.01)
        assert drain(client, net.now) == b"!"
        assert len(server.snd.rtx.tsorted) <= len(server.snd.rtx.records) + 1, i
    data = payload(1 << 20)
    assert transfer(net, server, client, data) == data
    assert len(server.snd.rtx.tsorted) <= len(server.snd.rtx.records) + 1


def test_window_stays_shut_until_a_sixteenth_of_a_large_buffer_is_free() -> None:
    """__tcp_select_window: with a large buffer, a free space below 1/16 of it (here
    64 KB of 1 MB) is offered as a zero window even when it exceeds an MSS, so a reader
    that frees 20 KB sends no window update and one that frees 200 KB does."""
    config = StackConfig(tcp_rmem=(4096, 1 << 20, 1 << 20), tcp_moderate_rcvbuf=0)
    net = Net(config_b=config)
    _, client, server = open_pair(net)
    client.sockopts.sndbuf = 8 << 20
    client.send(net.now, payload(3 << 20))
    net.run(net.now + 5.0)
    assert client.snd.snd_wnd == 0
    mark = len(net.log)
    server.recv(net.now, 20_000)
    net.run(net.now + 0.5)
    assert client.snd.snd_wnd == 0
    assert all(s.seg.window == 0 for s in net.log[mark:] if s.src == B_IP)
    server.recv(net.now, 200_000)
    net.run(net.now + 0.5)
    assert any(s.seg.window << server.rcv.rcv_wscale >= 100_000
               for s in net.log[mark:] if s.src == B_IP)


def test_gso_super_packets_count_as_their_wire_segments() -> None:
    """A GSO super-packet is one TcpSegment but several segments on the wire: TcpOutSegs
    and tcpi_segs_out count the wire segments (tcp_skb_pcount), as Linux's do."""
    net = Net()
    net.a = TcpEngine(net.config_a, Counters(), seed=1, gso_max_size=65536)
    _, client, _server = open_pair(net)
    out_before, segs_before = net.a.counters["TcpOutSegs"], client.snd.segs_out
    mark = len(net.log)
    client.send(net.now, b"z" * 20_000)
    net.run(net.now + 1.0)
    sent = [s.seg for s in net.log[mark:] if s.src == A_IP]
    assert any(seg.gso_size for seg in sent)  # the test means something only with GSO
    wire = sum(-(-len(seg.payload) // seg.gso_size) if seg.gso_size else 1 for seg in sent)
    assert wire == 14 > len(sent)  # 20,000 bytes in 1448-byte segments
    assert net.a.counters["TcpOutSegs"] - out_before == wire
    assert client.snd.segs_out - segs_before == wire


def test_msg_more_holds_the_tail_until_a_write_without_it(net: Net) -> None:
    # tcp_push with MSG_MORE: no PSH mark and TCP_NAGLE_CORK for that push, even with
    # TCP_NODELAY; the next write without MSG_MORE sends all of it, marked.
    _, client, _server = open_pair(net)
    client.sockopts.nodelay = True
    mark = len(net.log)
    client.send(net.now, b"m" * 40, more=True)
    client.send(net.now, b"m" * 60, more=True)
    net.run(net.now + 0.01)
    assert not [s for s in net.log[mark:] if s.src == A_IP and s.seg.payload]
    client.send(net.now, b"e" * 5)
    net.run(net.now + 0.001)
    data = [s.seg for s in net.log[mark:] if s.src == A_IP and s.seg.payload]
    assert [(len(s.payload), bool(s.flags & PSH)) for s in data] == [(105, True)]


def test_setting_nodelay_pushes_what_msg_more_held_without_psh(net: Net) -> None:
    _, client, _server = open_pair(net)
    mark = len(net.log)
    client.send(net.now, b"m" * 40, more=True)
    net.run(net.now + 0.01)
    assert not [s for s in net.log[mark:] if s.src == A_IP and s.seg.payload]
    client.sockopts.nodelay = True
    client.push_pending(net.now, nagle_push=True)  # what setsockopt(TCP_NODELAY, 1) does
    net.run(net.now + 0.001)
    data = [s.seg for s in net.log[mark:] if s.src == A_IP and s.seg.payload]
    assert [(len(s.payload), bool(s.flags & PSH)) for s in data] == [(40, False)]
