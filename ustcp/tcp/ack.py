"""ACK processing (Linux tcp_ack and its helpers in tcp_input.c): what an acceptable ACK
does to the sender's half of a connection.

:func:`process_ack` validates the acknowledgment number (RFC 5961 5.2), takes TS.Recent
(RFC 7323 4.3), applies the window update rule (RFC 9293 3.10.7.4), tags SACK blocks,
removes acknowledged data from the retransmission queue with an RTT sample (Karn's rule,
RFC 6298), feeds the congestion control and the loss-recovery state machine
(:mod:`ustcp.tcp.recovery`) and restarts the retransmission timer. Functions take the
:class:`~ustcp.tcp.sender.Sender`, as the recovery module's do; what the ACK of our FIN
does to the state is the connection's (``Connection.state_after_ack``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ..mib import Mib
from ..wire.tcp import ECE, FIN, SYN, TcpSegment
from . import mtu_probe, recovery
from .chrono import CHRONO_BUSY
from .congestion.base import CA_OPEN
from .ecn import TCP_ECN_OK
from .seq import after, before, before_eq, seq_add, seq_diff
from .timers import XmitTimer

if TYPE_CHECKING:
    from .sender import Sender


# What process_ack says of a segment.
ACK_OK: Final = 0
ACK_DROP: Final = 1  # to be dropped: it acknowledges data never sent (tcp_ack's invalid_ack)
ACK_CHALLENGE: Final = 2  # to be dropped with a challenge ACK: too old (RFC 5961 5.2)


def process_ack(snd: Sender, now: float, seg: TcpSegment) -> int:
    """tcp_ack: ACK_OK, or why the segment is to be dropped."""
    ack = seg.ack
    prior_una = snd.snd_una
    prior_packets = snd.rtx.packets_out
    if after(ack, snd.snd_nxt):
        snd.host.counters.inc(Mib.UstcpDropAckUnsent)
        return ACK_DROP  # Linux drops it without an ACK (tcp_ack: invalid_ack)
    if before(ack, seq_add(prior_una, -min(snd.max_window, snd.bytes_acked))):
        # RFC 5961 5.2, no further back than the bytes ever acknowledged: an ACK for bytes
        # never sent (before the ISN) is challenged too (tcp_ack, Linux 6.4 on)
        return ACK_CHALLENGE
    snd.last_ack_recv = now
    snd.rcv.replace_ts_recent(now, seg)  # RFC 7323 4.3, once the ACK is acceptable
    window_update = update_window(snd, seg)
    newly_sacked = 0
    flag = 0
    prior_fack = snd.rtx.fack(prior_una)
    if snd.sack_ok and seg.options.sack_blocks:
        newly_sacked, flag = recovery.sacktag(snd, now, seg.options.sack_blocks, ack)
    acked_pkts = 0
    una_advanced = after(ack, prior_una)
    if una_advanced:
        flag |= recovery.FLAG_SND_UNA_ADVANCED
        # The congestion control sees the new SND.UNA in its pkts_acked hook (tcp_ack
        # updates tp->snd_una before tcp_clean_rtx_queue): HyStart's round ends on the ACK
        # that passes its end_seq, not on the one after.
        snd.ccs.snd_una = ack
        acked_pkts, orig_acked = clean_rtx(snd, now, ack, seg, prior_fack)
        if orig_acked:
            flag |= recovery.FLAG_ORIG_SACK_ACKED
        snd.snd_una = ack
        mtu_probe.on_ack(snd, now)  # the probe acknowledged: the MSS may rise (RFC 4821)
        snd.backoff = 0
        snd.retransmits = 0
        snd.retrans_stamp = snd.uto_stamp = 0.0
        if not snd.sack_ok:
            # Dupacks already stood for delivered segments (tcp_remove_reno_sacks).
            prior_sacked = snd.rtx.sacked_out
            snd.rtx.remove_reno_sacks(acked_pkts)
            acked_pkts = max(acked_pkts - prior_sacked, 1)
        snd.probes_out = 0
        snd.host.wake(snd.owner)
    elif not snd.sack_ok and is_dupack(snd, seg, prior_una):
        snd.rtx.add_reno_sack()
        newly_sacked = 1
    if not prior_packets:
        ack_probe(snd, now)  # tcp_ack's no_queue: nothing was in flight
    if snd.tlp_high_seq is not None:
        recovery.process_tlp_ack(snd, now, ack, acked_pkts, newly_sacked, seg)
    newly_lost = 0
    rexmit = recovery.REXMIT_NONE
    # An ECN echo (tcp_ecn_rcv_ecn_echo: FLAG_ECE); with nothing in flight the ACK takes
    # tcp_ack's no_queue path, without the state machine.
    if snd.ecn_flags & TCP_ECN_OK and seg.flags & ECE and not seg.flags & SYN \
            and prior_packets:
        flag |= recovery.FLAG_ECE
    if not (una_advanced or window_update or seg.payload
            or flag & recovery.FLAG_DSACKING_ACK):
        flag |= recovery.FLAG_DUPACK
    # tcp_ack_is_dubious: a duplicate ACK (no progress, no data, no window update), one
    # with SACK information or an ECN echo, or any ACK outside CA_Open goes through the
    # recovery state machine; a clean ACK in CA_Open cannot prove a loss.
    if not (una_advanced or window_update or seg.payload) or seg.options.sack_blocks \
            or flag & recovery.FLAG_ECE or snd.ccs.ca_state != CA_OPEN:
        newly_lost, rexmit = recovery.fastretrans_alert(snd, now, prior_una, flag,
                                                        seg.options.ts_ecr)
    recovery.cong_control(snd, now, acked_pkts, newly_sacked, newly_lost, una_advanced)
    xmit_recovery(snd, now, rexmit)
    if una_advanced and snd.xmit_timer != XmitTimer.REO_TIMEOUT:
        snd.set_xmit_timer(now)
    return ACK_OK


def xmit_recovery(snd: Sender, now: float, rexmit: int) -> None:
    """tcp_xmit_recovery: retransmit what is lost; for F-RTO's step 2b new data first,
    Nagle aside, and the retransmissions only if no new data could go."""
    if rexmit == recovery.REXMIT_NEW:
        snd.push_ignoring_nagle(now)
        if after(snd.snd_nxt, snd.high_seq):
            return
        snd.undo.frto = False
    if rexmit != recovery.REXMIT_NONE and snd.rtx.lost_out > snd.rtx.retrans_out:
        recovery.xmit_retransmit_queue(snd, now)


def ack_probe(snd: Sender, now: float) -> None:
    """An ACK with nothing in flight while data waits (tcp_ack_probe): once the window
    takes the next segment, the persist timer stops and its backoff is forgotten, so
    the data about to leave gets the plain RTO, not the probes' backed-off one; while the
    window stays shut, the next probe is timed from this ACK."""
    unsent = seq_diff(snd.write_seq, snd.snd_nxt)
    if unsent <= 0:
        return
    head_end = seq_add(snd.snd_nxt, min(unsent, snd.mss))
    if not after(head_end, seq_add(snd.snd_una, snd.snd_wnd)):
        snd.backoff = 0
        snd.t_probe0 = None
        snd.probes_tstamp = None
    elif snd.t_probe0 is not None:
        snd.reset_xmit_timer(XmitTimer.PROBE0, snd.probe0_deadline(now))


def is_dupack(snd: Sender, seg: TcpSegment, prior_una: int) -> bool:
    """RFC 5681 2: same ACK, no data, no window change, data outstanding."""
    return (seg.ack == prior_una and not seg.payload and not seg.flags & (SYN | FIN)
            and snd.rtx.packets_out > 0
            and (seg.window << snd.snd_wscale) == snd.snd_wnd)


def update_window(snd: Sender, seg: TcpSegment) -> bool:
    """RFC 9293 3.10.7.4 window update rule (tcp_ack_update_window); True when the
    segment may update the window (Linux's FLAG_WIN_UPDATE), changed or not."""
    nwin = seg.window << snd.snd_wscale
    if after(seg.ack, snd.snd_una) or after(seg.seq, snd.snd_wl1) or (
            seg.seq == snd.snd_wl1 and (nwin > snd.snd_wnd or not nwin)):
        if nwin != snd.snd_wnd:
            snd.host.wake(snd.owner)
        snd.snd_wnd = nwin
        snd.snd_wl1 = seg.seq
        snd.snd_wl2 = seg.ack
        snd.max_window = max(snd.max_window, nwin)
        return True
    return False


def clean_rtx(snd: Sender, now: float, ack: int, seg: TcpSegment,
              prior_fack: int) -> tuple[int, bool]:
    """Drop acknowledged records; sample the RTT (Karn's rule, RFC 6298 3); feed the
    congestion control (tcp_clean_rtx_queue). Returns the packets newly delivered
    (acknowledged now and not already SACKed) and whether never-retransmitted data sent
    before high_seq was among them (FLAG_ORIG_SACK_ACKED, for F-RTO)."""
    orig_acked = False
    acked_pkts = 0
    acked_bytes = 0
    rtt_us = -1
    first_ackt: float | None = None  # earliest send time acked: the RTO's sample
    last_ackt: float | None = None  # latest: the congestion control's (ca_rtt_us)
    reord: int | None = None
    delivered = 0  # acked now and not SACKed before (tcp_newly_delivered)
    rtx = snd.rtx
    records = rtx.records
    while records:
        rec = records[0]
        if after(rec.end, ack):
            if after(ack, rec.start) and not rec.syn:
                # Partially acknowledged (tcp_trim_head).
                acked_bytes += seq_diff(ack, rec.start)
                delta = rtx.trim_head(rec, ack, snd.mss)
                acked_pkts += delta
                if not rec.sacked:
                    delivered += delta
                recovery.rack_advance(snd, now, rec)
                if not rec.ever_retrans:
                    first_ackt = rec.xmit if first_ackt is None else first_ackt
                    last_ackt = rec.xmit
            break
        rtx.pop_head()
        recovery.rack_advance(snd, now, rec)
        acked_pkts += rec.pcount
        if not rec.sacked:
            delivered += rec.pcount
        span = seq_diff(rec.end, rec.start)
        if rec.fin:
            snd.fin_acked = True
            span -= 1
        if rec.syn:
            span -= 1
        acked_bytes += span
        if not rec.ever_retrans and not rec.sacked:
            if first_ackt is None:
                first_ackt = rec.xmit
            last_ackt = rec.xmit
            if before_eq(rec.end, snd.high_seq):
                orig_acked = True
            if reord is None:
                reord = rec.start
    if snd.sack_ok and reord is not None and before(reord, prior_fack):
        recovery.check_sack_reordering(snd, reord)  # a non-retransmitted hole got filled
    # Keep the send-time queue as short as the retransmission queue: without this, a
    # connection whose ACKs never leave data outstanding (request/response) or that
    # runs without SACK (no RACK) would only ever append to it.
    rtx.prune_tsorted()
    if not records:
        snd.chrono.stop(now, CHRONO_BUSY, snd.queues_empty())  # all acknowledged
    if acked_bytes:
        snd.snd_buf.consume(acked_bytes)
        snd.bytes_acked += acked_bytes
    snd.delivered += delivered
    snd.ccs.delivered = snd.delivered
    ca_rtt_us = -1
    if first_ackt is not None and last_ackt is not None:
        rtt_us = max(1, int((now - first_ackt) * 1e6))
        ca_rtt_us = max(1, int((now - last_ackt) * 1e6))
    elif snd.rcv.ts_ok and seg.options.ts_ecr and acked_pkts:
        # RFC 7323 4.1: RTT from TSecr when every acked segment was retransmitted.
        rtt_ms = seq_diff(snd.rcv.ts_now(now), seg.options.ts_ecr)
        if 0 <= rtt_ms < 3_600_000:
            rtt_us = ca_rtt_us = max(1, rtt_ms * 1000)
    if rtt_us > 0:
        snd.rtt.on_sample(rtt_us, snd_una=ack, snd_nxt=snd.snd_nxt)
        snd.ccs.srtt_us = snd.rtt.srtt_us
        snd.ccs.min_rtt_us = snd.rtt.min_rtt_us
    if acked_pkts:
        snd.cc.pkts_acked(snd.ccs, now, acked_pkts, ca_rtt_us)
    snd.ccs.packets_out = snd.rtx.packets_out
    return delivered, orig_acked
