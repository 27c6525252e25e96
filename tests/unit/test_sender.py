"""ACK processing and recovery decisions on a lone Sender (and its Receiver), driven with
hand-made ACKs: no engine, no peer. Each test runs with the sequence space wrapping in
the middle of the flight as well."""

from __future__ import annotations

from typing import Any

import pytest

from ustcp.config import StackConfig
from ustcp.mib import Counters
from ustcp.tcp import ack, recovery
from ustcp.tcp.congestion.base import CA_LOSS, CA_OPEN, CA_RECOVERY
from ustcp.tcp.isn import IsnGenerator
from ustcp.tcp.options import SockOpts
from ustcp.tcp.receiver import Receiver
from ustcp.tcp.rto import RtoEstimator
from ustcp.tcp.sender import Sender
from ustcp.tcp.seq import seq_add
from ustcp.tcp.states import State
from ustcp.wire.tcp import ACK, PSH, TcpOptions, TcpSegment, gso_segments

MSS = 1000
WRAPS = [1000, 0xFFFFFFFF - 2500]  # an ISN far from the wrap, and one the flight crosses


class FakeHost:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.counters = Counters()
        self.isn = IsnGenerator(b"k" * 32)
        self.gso_max_size = 0
        self.orphan_count = 0
        self.sent: list[TcpSegment] = []
        self.woken = 0

    def path_mtu(self, remote_ip: bytes) -> int:
        return MSS + 40

    def mss_for(self, remote_ip: bytes) -> int:
        return MSS

    def emit(self, src_ip: bytes, dst_ip: bytes, seg: TcpSegment) -> None:
        self.sent.append(seg)

    def xmit(self, now: float, src_ip: bytes, dst_ip: bytes, seg: TcpSegment) -> None:
        """No qdisc, no GSO: a GSO packet leaves as its MSS segments (as TcpEngine does)."""
        self.sent.extend(gso_segments(seg, seg.gso_size))

    def wake(self, obj: Any) -> None:
        self.woken += 1


class FakeOwner:
    def __init__(self) -> None:
        self.state = State.ESTABLISHED
        self.orphan = False
        self.waiter: Any = None


def make_sender(iss: int, *, sack: bool = True, **cfg: Any) -> tuple[Sender, FakeHost]:
    config = StackConfig(**cfg)
    host = FakeHost(config)
    owner = FakeOwner()
    rtt = RtoEstimator()
    box: list[Sender] = []
    rcv = Receiver(host, owner, SockOpts(nodelay=True), 0.0,  # type: ignore[arg-type]
                   advmss=MSS, rtt=rtt,
                   rto_value=lambda: box[0].rto_value())
    rcv.init_seq(5000)
    snd = Sender(host, owner, rcv, rtt, (b"\x0a\0\0\x01", 1, b"\x0a\0\0\x02", 2),  # type: ignore[arg-type]
                 SockOpts(nodelay=True), 0.0)
    box.append(snd)
    snd.init_seq(iss)
    snd.start(0.0)  # our SYN
    snd.peer_syn_options(sack, 0, MSS)
    synack = TcpSegment(2, 1, 5000, seq_add(iss, 1), ACK, 65535)
    ack.clean_rtx(snd, 0.05, synack.ack, synack, snd.snd_una)  # a 50 ms RTT sample
    snd.handshake_acked(synack, 65535, synsent=True)
    snd.init_transfer(0.0)
    rcv.init_transfer(0.0, snd.mss)
    host.sent.clear()
    return snd, host


def ack_seg(snd: Sender, ackno: int, *, sack: tuple[tuple[int, int], ...] = (),
            window: int = 65535) -> TcpSegment:
    return TcpSegment(2, 1, snd.rcv.rcv_nxt, ackno, ACK, window,
                      TcpOptions(sack_blocks=sack))


@pytest.mark.parametrize("iss", WRAPS)
def test_an_ack_frees_the_queue_and_samples_the_rtt(iss: int) -> None:
    snd, host = make_sender(iss)
    una = snd.snd_una
    assert snd.write(0.0, bytes(5 * MSS)) == 5 * MSS
    assert len(host.sent) == 5 and snd.rtx.packets_out == 5  # within the initial cwnd
    assert snd.t_rto is not None
    verdict = ack.process_ack(snd, 0.05, ack_seg(snd, seq_add(una, 3 * MSS)))
    assert verdict == ack.ACK_OK
    assert snd.snd_una == seq_add(una, 3 * MSS) and snd.rtx.packets_out == 2
    assert snd.bytes_acked == 3 * MSS and len(snd.snd_buf) == 2 * MSS
    assert snd.rtt.srtt_us == 50_000 and snd.rtt.rttvar_us < 25_000  # a second 50 ms
    assert host.woken  # writers may have room


@pytest.mark.parametrize("iss", WRAPS)
def test_an_ack_for_unsent_data_drops_and_an_ancient_one_asks_for_a_challenge(iss: int
                                                                            ) -> None:
    snd, host = make_sender(iss)
    snd.write(0.0, bytes(2 * MSS))
    beyond = seq_add(snd.snd_nxt, 1)
    assert ack.process_ack(snd, 0.01, ack_seg(snd, beyond)) == ack.ACK_DROP
    assert host.counters["UstcpDropAckUnsent"] == 1
    ancient = seq_add(snd.snd_una, -snd.max_window - 1)
    assert ack.process_ack(snd, 0.01, ack_seg(snd, ancient)) == ack.ACK_CHALLENGE
    assert snd.rtx.packets_out == 2  # neither touched the queue


@pytest.mark.parametrize("iss", WRAPS)
def test_three_dupacks_without_sack_enter_newreno_recovery(iss: int) -> None:
    snd, host = make_sender(iss, sack=False)
    una = snd.snd_una
    snd.write(0.0, bytes(10 * MSS))
    cwnd = snd.ccs.snd_cwnd
    host.sent.clear()
    for _ in range(3):
        ack.process_ack(snd, 0.1, ack_seg(snd, una))  # the head was lost
    assert snd.ccs.ca_state == CA_RECOVERY
    assert host.counters["TcpExtTCPRenoRecovery"] == 1
    assert snd.ccs.snd_ssthresh < cwnd
    assert [s.seq for s in host.sent][:1] == [una]  # the fast retransmit of the head
    assert snd.rtx.retrans_out == 1 and snd.rtx.lost_out == 1
    # The retransmission fills the hole: everything is acknowledged, but without SACK the
    # state is held until something above high_seq is (RFC 6582 3.2 step 4; Linux 6.18
    # measured: tests/engine/undo/reno-eifel-full-undo.pkt).
    ack.process_ack(snd, 0.2, ack_seg(snd, snd.snd_nxt))
    assert snd.rtx.packets_out == 0 and snd.ccs.ca_state == CA_RECOVERY
    snd.write(0.3, bytes(MSS))
    ack.process_ack(snd, 0.4, ack_seg(snd, snd.snd_nxt))
    assert snd.ccs.ca_state == CA_OPEN


@pytest.mark.parametrize("iss", WRAPS)
def test_sack_blocks_tag_the_scoreboard_and_a_dsack_is_counted(iss: int) -> None:
    snd, host = make_sender(iss)
    una = snd.snd_una
    snd.write(0.0, bytes(6 * MSS))
    block = (seq_add(una, 2 * MSS), seq_add(una, 4 * MSS))
    ack.process_ack(snd, 0.05, ack_seg(snd, una, sack=(block,)))
    assert snd.rtx.sacked_out == 2 and snd.rtx.highest_sack == block[1]
    assert snd.ccs.ca_state != CA_OPEN  # SACKed data above a hole: disorder at least
    # A block below the cumulative ACK is a D-SACK: counted, not tagged.
    dsack = (una, seq_add(una, MSS))
    ack.process_ack(snd, 0.06, ack_seg(snd, seq_add(una, MSS), sack=(dsack,)))
    assert host.counters["TcpExtTCPDSACKRecv"] == 1
    assert snd.rtx.sacked_out == 2


@pytest.mark.parametrize("iss", WRAPS)
def test_the_window_update_rule_ignores_an_older_segment(iss: int) -> None:
    snd, _ = make_sender(iss)
    una = snd.snd_una
    newer = TcpSegment(2, 1, seq_add(snd.snd_wl1, 10), una, ACK, 30000)
    ack.process_ack(snd, 0.01, newer)
    assert snd.snd_wnd == 30000 and snd.snd_wl1 == newer.seq
    older = TcpSegment(2, 1, seq_add(newer.seq, -5), una, ACK, 100)
    assert not ack.update_window(snd, older)  # RFC 9293 3.10.7.4: SND.WL1 went past it
    assert snd.snd_wnd == 30000


@pytest.mark.parametrize("iss", WRAPS)
def test_an_rto_marks_everything_lost_and_collapses_cwnd(iss: int) -> None:
    snd, host = make_sender(iss)
    snd.write(0.0, bytes(4 * MSS))
    host.sent.clear()
    assert snd.retransmit_timer(1.5) is False  # not given up
    assert snd.ccs.ca_state == CA_LOSS and snd.ccs.snd_cwnd == 1
    assert snd.rtx.lost_out == 4 and snd.rtx.retrans_out == 1
    assert [s.seq for s in host.sent] == [snd.snd_una] and snd.backoff == 1
    recovery.xmit_retransmit_queue(snd, 1.5)  # cwnd 1 is full: nothing more goes
    assert len(host.sent) == 1


@pytest.mark.parametrize("iss", WRAPS)
def test_a_blocked_writer_wakes_when_linuxs_does(iss: int) -> None:
    """google/blocking/blocking-write.pkt's exchange, with the figures measured on Linux 6.18
    (SO_MEMINFO): SO_SNDBUF 21000 (42000), peer window 50000, so skbs of 25000 bytes. A
    write of 61000 takes 60000: the first skb leaves at once and its unsent rest is topped
    up before the second skb is started (wmem_queued 63328 = 60000 + 4 skbs). The writer
    sleeps through the ACKs of 10001 and 30001 and wakes at 35001, when a third is free."""
    snd, _ = make_sender(iss, tcp_min_tso_segs=10)
    snd.sockopts.sndbuf = 21000
    snd.snd_wnd = snd.max_window = 50_000
    una = snd.snd_una
    assert snd.write(0.0, bytes(61_000)) == 60_000
    assert snd.nospace and snd.snd_buf.wmem_queued == 63_328
    assert snd.write(0.0, bytes(1_000)) == 0
    for acked, queued in ((10_000, 53_328), (30_000, 32_496)):
        now = 0.1 * acked / 10_000
        ack.process_ack(snd, now, ack_seg(snd, seq_add(una, acked), window=50_000))
        snd.push(now)  # what the ACK lets out goes before the writer is woken
        assert snd.snd_buf.wmem_queued == queued and not snd.send_space
        assert snd.write(0.5, bytes(1_000)) == 0
    ack.process_ack(snd, 0.5, ack_seg(snd, seq_add(una, 35_000), window=50_000))
    snd.push(0.5)
    assert snd.snd_buf.wmem_queued == 27_496 and snd.send_space
    assert snd.write(0.5, bytes(1_000)) == 1_000 and not snd.nospace


@pytest.mark.parametrize("iss", WRAPS)
def test_forced_push_marks_psh_where_linux_does(iss: int) -> None:
    """google/cubic/cubic-rto-ss-ca-cwnd-bump.pkt's send: the peer's largest window 32896
    makes skbs of 16000; the first leaves at once (two segments on cwnd 2), its unsent rest
    is topped up to 18000, and by then more than half that window was written since the last
    PSH (forced_push): that skb's end carries PSH, the segments around it do not."""
    snd, host = make_sender(iss, sack=False)
    snd.sockopts.sndbuf = 200_000
    snd.snd_wnd = snd.max_window = 32_896
    una = snd.snd_una
    snd.ccs.snd_cwnd = 2
    assert snd.write(0.0, bytes(100_000)) == 100_000
    for k in range(1, 20):
        snd.ccs.snd_cwnd = 2  # one segment per ACK, as in congestion avoidance
        ack.process_ack(snd, 0.1 * k, ack_seg(snd, seq_add(una, k * MSS), window=32_896))
        snd.push(0.1 * k)
    pushed = {seq_add(s.seq, len(s.payload)) for s in host.sent if s.flags & PSH}
    ends = {seq_add(una, k * MSS) for k in range(1, 21)}
    assert pushed & ends == {seq_add(una, 18_000)}
