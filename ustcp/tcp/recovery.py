"""Loss recovery over the SACK scoreboard (:mod:`ustcp.tcp.rtxqueue`): RACK-TLP, fast
recovery with PRR, NewReno without SACK.

Functions on a :class:`~ustcp.tcp.sender.Sender`, the way Linux keeps tcp_recovery.c and
the recovery half of tcp_input.c apart from the rest of the socket:

- :func:`sacktag` marks SACKed records (RFC 2018, D-SACK per RFC 2883) and notices
  reordering (tcp_sacktag_write_queue, tcp_check_sack_reordering);
- :func:`rack_detect_loss` is RFC 8985's time-based loss detection, with the reorder
  timer (:func:`rack_reo_timeout`); :func:`send_loss_probe` is its tail loss probe (the
  sender arms it: ``Sender.schedule_loss_probe``);
- :func:`fastretrans_alert` is the recovery state machine (tcp_fastretrans_alert), run
  for dubious ACKs only: it enters and leaves CA_Recovery, runs F-RTO in CA_Loss
  (:func:`process_loss`) and undoes a reduction proved spurious by D-SACK
  (:func:`check_dsack`) or timestamps (the ``try_undo_*`` functions over the episode's
  :class:`~ustcp.tcp.undo.Undo`); :func:`cong_control` then sets
  cwnd with PRR (:func:`cwnd_reduction`, RFC 6937) or grows it through the congestion
  control, and :func:`xmit_retransmit_queue` resends what is marked lost;
- without SACK, duplicate ACKs count as SACKed segments (``RtxQueue.add_reno_sack``),
  which gives limited transmit (RFC 3042) and NewReno's partial ACKs (RFC 6582);
- what an RTO does to the scoreboard and cwnd is ``Sender.enter_loss`` (tcp_enter_loss).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import structlog

from ..mib import Mib
from ..wire.tcp import TcpSegment
from . import ecn, mtu_probe
from .congestion.base import (
    CA_CWR,
    CA_DISORDER,
    CA_LOSS,
    CA_OPEN,
    CA_RECOVERY,
    TCP_INFINITE_SSTHRESH,
    CwndEvent,
)
from .seq import after, before, before_eq, seq_add, seq_diff
from .states import State
from .timers import XmitTimer

if TYPE_CHECKING:
    from .rtxqueue import TxRecord
    from .sender import Sender

log = structlog.get_logger("ustcp.tcp")

# What an ACK did (Linux's FLAG_* of tcp_input.c), for the recovery state machine.
FLAG_SND_UNA_ADVANCED: Final = 0x1  # SND.UNA moved
FLAG_DATA_SACKED: Final = 0x2  # new SACK information
FLAG_ECE: Final = 0x4  # an ECN echo
FLAG_DSACKING_ACK: Final = 0x8  # a D-SACK that counts (tcp_check_dsack)
FLAG_ORIG_SACK_ACKED: Final = 0x10  # never-retransmitted data below high_seq (S)ACKed
FLAG_DUPACK: Final = 0x20  # none of data, a window update, progress or a D-SACK (num_dupack)

# What to send after the ACK (tcp_xmit_recovery's rexmit).
REXMIT_NONE: Final = 0
REXMIT_LOST: Final = 1  # retransmit what is marked lost
REXMIT_NEW: Final = 2  # F-RTO step 2b: new data first


def process_tlp_ack(snd: Sender, now: float, ack: int, acked: int, sacked: int,
                     seg: TcpSegment) -> None:
    """Did the loss probe repair a loss (tcp_process_tlp_ack)? Then reduce cwnd once."""
    assert snd.tlp_high_seq is not None
    if before(ack, snd.tlp_high_seq):
        return
    dsack = bool(seg.options.sack_blocks) and before_eq(seg.options.sack_blocks[0][1], ack)
    if not snd.tlp_retrans or dsack:
        snd.tlp_high_seq = None
    elif after(ack, snd.tlp_high_seq):
        snd.tlp_high_seq = None
        ccs = snd.ccs
        ccs.prior_cwnd = ccs.snd_cwnd
        ccs.snd_ssthresh = snd.cc.ssthresh(ccs)
        ccs.snd_cwnd = min(ccs.snd_cwnd, ccs.snd_ssthresh)
        snd.cc.cwnd_event(ccs, now, CwndEvent.COMPLETE_CWR)
        snd.host.counters.inc(Mib.TcpExtTCPLossProbeRecovery)
    elif not acked and not sacked:
        snd.tlp_high_seq = None


def send_loss_probe(snd: Sender, now: float) -> None:
    """The PTO fired (RFC 8985 7.3, tcp_send_loss_probe): send one new segment if the
    windows allow, else retransmit the last one; then the RTO takes over."""
    if not snd.rtx.packets_out:
        return
    before_nxt = snd.snd_nxt
    if seq_diff(snd.write_seq, snd.snd_nxt) > 0:
        cwnd = snd.ccs.snd_cwnd
        snd.ccs.snd_cwnd = snd.rtx.in_flight() + 1
        snd.push_ignoring_nagle(now)
        snd.ccs.snd_cwnd = max(cwnd, snd.ccs.snd_cwnd - 1)
    if snd.snd_nxt != before_nxt:
        snd.tlp_retrans = False
    else:
        last = snd.rtx.records[-1]
        if last.pcount > 1:
            snd.split(last, seq_diff(last.end, last.start) - (1 if last.fin else 0)
                        - snd.mss * (last.pcount - 1))
            last = snd.rtx.records[-1]
        if last.sacked:
            snd.arm_rto(now)
            return
        snd.retransmit(now, last, probe=True)
        snd.tlp_retrans = True
    snd.tlp_high_seq = snd.snd_nxt
    snd.host.counters.inc(Mib.TcpExtTCPLossProbes)
    snd.arm_rto(now)


def sacktag(snd: Sender, now: float, blocks: tuple[tuple[int, int], ...],
            ack: int) -> tuple[int, int]:
    """Mark SACKed records (tcp_sacktag_write_queue). A first block that starts below
    the ACK, or lies inside the second block, is a D-SACK (RFC 2883 4, tcp_check_dsack):
    counted, held against the episode's retransmissions (:func:`check_dsack`) and not
    tagged.
    Returns the packets newly SACKed and the FLAG_* bits the blocks earned."""
    newly = 0
    flag = 0
    c = snd.host.counters
    reord: int | None = None
    if blocks and (before(blocks[0][0], ack) or (
            len(blocks) > 1 and not before(blocks[0][0], blocks[1][0])
            and not after(blocks[0][1], blocks[1][1]))):
        start, end = blocks[0]
        c.inc(Mib.TcpExtTCPDSACKRecv if before(start, ack) else Mib.TcpExtTCPDSACKOfoRecv)
        blocks = blocks[1:]
        dup_segs = check_dsack(snd, start, end)
        if dup_segs:
            flag |= FLAG_DSACKING_ACK
            newly += dup_segs  # a spurious retransmission was delivered (tcp_dsack_seen)
    # Linux walks the blocks in sequence order (tcp_sacktag_write_queue).
    rtx = snd.rtx
    tagged: list[TxRecord] = []
    for left, right in sorted(blocks, key=lambda b: seq_diff(b[0], snd.snd_una)):
        if not after(right, left):
            continue
        if after(right, snd.snd_nxt) or before(left, seq_add(snd.snd_una, -snd.max_window)):
            c.inc(Mib.TcpExtTCPSACKDiscard)
            continue
        low = rtx.sack_range(left, right, snd.mss, tagged)
        if low is not None and (reord is None or before(low, reord)):
            reord = low
    for rec in tagged:
        newly += rec.pcount
        rack_advance(snd, now, rec)
        if not rec.ever_retrans and before_eq(rec.end, snd.high_seq):
            flag |= FLAG_ORIG_SACK_ACKED  # tcp_sacktag_one
    snd.delivered += newly
    if reord is not None:
        check_sack_reordering(snd, reord)
    if tagged:
        flag |= FLAG_DATA_SACKED
    return newly, flag


def check_sack_reordering(snd: Sender, low_seq: int) -> None:
    """Data below the highest SACK arrived late: the path reorders. Raise the
    reordering degree to the distance seen (tcp_check_sack_reordering)."""
    fack = snd.rtx.fack(snd.snd_una)
    if not before(low_seq, fack):
        return
    metric = seq_diff(fack, low_seq)
    if metric > snd.reordering * snd.mss:
        snd.reordering = min(-(-metric // snd.mss), snd.config.tcp_max_reordering)
    snd.reord_seen += 1
    snd.host.counters.inc(Mib.TcpExtTCPSACKReorder)


def rack_advance(snd: Sender, now: float, rec: TxRecord) -> None:
    """A record was delivered: remember the most recently sent one and its RTT
    (RFC 8985 6.2 step 2, tcp_rack_advance). A retransmitted record's RTT is
    ambiguous unless it is at least the minimum RTT."""
    rtt_us = int((now - rec.xmit) * 1e6)
    if rec.ever_retrans and rtt_us < snd.rtt.min_rtt_us:
        return
    snd.rack_advanced = True
    snd.rack_rtt_us = rtt_us
    if rec.xmit > snd.rack_mstamp or (rec.xmit == snd.rack_mstamp
                                       and after(rec.end, snd.rack_end_seq)):
        snd.rack_mstamp = rec.xmit
        snd.rack_end_seq = rec.end


def rack_reo_wnd(snd: Sender) -> float:
    """The reordering window (RFC 8985 6.2 step 4, tcp_rack_reo_wnd): none while in
    recovery or once `reordering` packets are SACKed, unless reordering was seen."""
    if not snd.reord_seen and (snd.ccs.ca_state >= CA_RECOVERY
                                or snd.rtx.sacked_out >= snd.reordering):
        return 0.0
    return min(snd.rtt.min_rtt_us / 4, snd.rtt.srtt_us) / 1e6


def rack_detect_loss(snd: Sender, now: float) -> bool:
    """Mark lost every record sent before the most recently delivered one whose time
    is up (RFC 8985 6.2 step 5, tcp_rack_detect_loss); arm the reorder timer for the
    rest."""
    if not snd.rack_advanced:
        return False
    snd.rack_advanced = False
    reo_wnd = rack_reo_wnd(snd)
    rack_rtt = snd.rack_rtt_us / 1e6
    marked = False
    wait = 0.0
    snd.rtx.prune_tsorted()
    ts = snd.rtx.tsorted
    for xmit, rec in ts:  # send order; nothing below changes ts
        if rec.done or rec.sacked or xmit != rec.xmit:
            continue
        if rec.lost and not rec.retrans:
            continue
        if xmit > snd.rack_mstamp or (xmit == snd.rack_mstamp
                                       and not after(snd.rack_end_seq, rec.end)):
            break
        remaining = rack_rtt + reo_wnd - (now - xmit)
        if remaining <= 1e-9:
            snd.rtx.mark_lost(rec)
            marked = True
        else:
            wait = max(wait, remaining)
    if wait > 0:
        snd.reset_xmit_timer(XmitTimer.REO_TIMEOUT, now + wait + 0.002)  # + TCP_TIMEOUT_MIN
    return marked


def rack_reo_timeout(snd: Sender, now: float) -> None:
    """The reorder timer fired (tcp_rack_reo_timeout): detect, recover, retransmit."""
    snd.rack_advanced = True
    prior_in_flight = snd.rtx.in_flight()
    rack_detect_loss(snd, now)
    if snd.rtx.in_flight() != prior_in_flight:
        if snd.ccs.ca_state != CA_RECOVERY:
            enter_recovery(snd, now)
            cwnd_reduction(snd, 1, 0, False)
        xmit_retransmit_queue(snd, now)
    if snd.t_rto is None and snd.rtx.packets_out:
        snd.arm_rto(now)


def mark_lost(snd: Sender, now: float, snd_una_advanced: bool) -> bool:
    """Loss detection (tcp_identify_packet_loss). With SACK: a record is lost once
    `reordering` packets above it were SACKed (RFC 6675 IsLost). Without SACK (NewReno,
    tcp_newreno_mark_lost): the head after `reordering` duplicate ACKs, and again on
    each partial ACK during recovery (RFC 6582). Returns True if any was marked."""
    if not snd.rtx.records:
        return False
    if snd.sack_ok and snd.config.tcp_recovery & 1:
        return rack_detect_loss(snd, now)
    if snd.sack_ok:
        marked = False
        sacked_above = 0
        for rec in reversed(snd.rtx.records):
            if rec.sacked:
                sacked_above += rec.pcount
            elif sacked_above >= snd.reordering and not rec.lost:
                snd.rtx.mark_lost(rec)
                marked = True
        return marked
    state = snd.ccs.ca_state
    head = snd.rtx.records[0]
    if head.lost or not ((state < CA_RECOVERY and snd.rtx.sacked_out >= snd.reordering)
                         or (state == CA_RECOVERY and snd_una_advanced)):
        return False
    if head.pcount > 1:
        snd.split(head, snd.mss)
    snd.rtx.mark_lost(head)
    return True


def fastretrans_alert(snd: Sender, now: float, prior_una: int, flag: int,
                      tsecr: int | None) -> tuple[int, int]:
    """The loss-recovery state machine (tcp_fastretrans_alert) for a dubious ACK
    (``flag``: its FLAG_* bits; ``tsecr``: the TSecr it echoes): leaves recovery once
    everything outstanding at its start is acked, undoes a reduction proved spurious
    (:mod:`ustcp.tcp.undo`), detects losses (RACK, RFC 6675 or NewReno, RFC 6582) and
    enters recovery when one is proven; an ECN echo that proves no loss enters CWR
    (tcp_try_to_open). Returns the packets newly marked lost and what to send (REXMIT_*)."""
    if mtu_probe.probe_lost(snd):
        simple_retransmit(snd, now)
        return 0, REXMIT_NONE  # the MTU probe was lost: no cwnd reduction (RFC 4821 7.6.2)
    ccs = snd.ccs
    lost_before = snd.rtx.lost_out
    una_advanced = bool(flag & FLAG_SND_UNA_ADVANCED)
    if flag & FLAG_ECE:
        ccs.prior_ssthresh = 0  # congestion proven by ECN: the reduction is not undone
    # Leave an episode once everything outstanding at its start is acked.
    state = ccs.ca_state
    if state == CA_OPEN:
        snd.undo.forget_stamp()
    elif not before(snd.snd_una, snd.high_seq):
        if state == CA_CWR and snd.snd_una != snd.high_seq:
            # CWR is held until something above high_seq is acked, so that the CWR bit
            # has reached the receiver.
            end_cwnd_reduction(snd, now)
            snd.set_ca_state(CA_OPEN)
        elif state == CA_RECOVERY:
            if try_undo_recovery(snd, tsecr):
                return 0, REXMIT_NONE
            end_cwnd_reduction(snd, now)
    state = ccs.ca_state
    if state == CA_RECOVERY:
        if una_advanced and try_undo_partial(snd, tsecr, prior_una):
            return 0, REXMIT_NONE
        if try_undo_dsack(snd):
            try_keep_open(snd)
            return 0, REXMIT_NONE
        mark_lost(snd, now, una_advanced)
        return max(0, snd.rtx.lost_out - lost_before), REXMIT_LOST
    if state == CA_LOSS:
        rexmit = process_loss(snd, flag, tsecr)
        if snd.sack_ok:
            mark_lost(snd, now, una_advanced)
        if ccs.ca_state != CA_OPEN:
            return max(0, snd.rtx.lost_out - lost_before), rexmit
    # Open, Disorder, CWR (or a loss episode just undone or recovered).
    if ccs.ca_state <= CA_DISORDER:
        try_undo_dsack(snd)
    mark_lost(snd, now, una_advanced)
    if not snd.rtx.lost_out:  # tcp_time_to_recover: no loss proven
        try_to_open(snd, now, bool(flag & FLAG_ECE))
        return 0, REXMIT_NONE
    enter_recovery(snd, now, bool(flag & FLAG_ECE))
    return max(0, snd.rtx.lost_out - lost_before), REXMIT_LOST


def try_undo_partial(snd: Sender, tsecr: int | None, prior_una: int) -> bool:
    """A partial ACK in recovery acknowledged an original (tcp_try_undo_partial): the
    path reorders more than thought. With retransmissions still out, only stop marking
    and resending; else undo (TcpExtTCPPartialUndo)."""
    if snd.undo.marker is None or not packet_delayed(snd, tsecr):
        return False
    check_sack_reordering(snd, prior_una)
    if snd.rtx.retrans_out:
        return True
    clear_stamp_if_clean(snd)
    undo_cwnd_reduction(snd, True)
    snd.host.counters.inc(Mib.TcpExtTCPPartialUndo)
    try_keep_open(snd)
    return True


def process_loss(snd: Sender, flag: int, tsecr: int | None) -> int:
    """An ACK in CA_Loss (tcp_process_loss): undo a spurious RTO, run F-RTO (RFC 5682
    3.1, the SACK-enhanced version; ``tcp_frto``), leave once everything sent before the
    RTO is acked. Returns what to send (REXMIT_*)."""
    u = snd.undo
    recovered = not before(snd.snd_una, snd.high_seq)
    una_advanced = bool(flag & FLAG_SND_UNA_ADVANCED)
    if (una_advanced or (snd.fastopen_child and snd.owner.state == State.SYN_RECV)) \
            and try_undo_loss(snd, tsecr, False):
        return REXMIT_NONE
    if u.frto:
        # Step 3b: never-retransmitted data (S)ACKed: not all was lost, the RTO was
        # spurious.
        if flag & FLAG_ORIG_SACK_ACKED and try_undo_loss(snd, tsecr, True):
            return REXMIT_NONE
        if after(snd.snd_nxt, snd.high_seq):
            if flag & (FLAG_DATA_SACKED | FLAG_DUPACK):
                u.frto = False  # step 3a: the loss was real
        elif una_advanced and not recovered:
            snd.high_seq = snd.snd_nxt
            # Step 2b: send new data (once cwnd grew for this ACK), else fall back to
            # the conventional recovery.
            unsent = seq_diff(snd.write_seq, snd.snd_nxt) > 0 or (
                snd.fin_queued and not snd.fin_sent)
            if unsent and after(seq_add(snd.snd_una, snd.snd_wnd), snd.snd_nxt):
                return REXMIT_NEW
            u.frto = False
    if recovered:
        try_undo_recovery(snd, tsecr)  # step 2a, and the first part of 3a
        return REXMIT_NONE
    return REXMIT_LOST


def try_to_open(snd: Sender, now: float, ece: bool) -> None:
    """No loss proven (tcp_try_to_open): an ECN echo enters CWR, else Open or Disorder."""
    clear_stamp_if_clean(snd)
    if ece and snd.ccs.ca_state < CA_CWR:
        enter_cwr(snd, now)
    if snd.ccs.ca_state != CA_CWR:
        try_keep_open(snd)


def end_cwnd_reduction(snd: Sender, now: float) -> None:
    """tcp_end_cwnd_reduction: cwnd = ssthresh after CWR or a recovery not undone."""
    ccs = snd.ccs
    if ccs.snd_ssthresh < TCP_INFINITE_SSTHRESH and (
            ccs.ca_state == CA_CWR or snd.undo.marker is not None):
        ccs.snd_cwnd = ccs.snd_ssthresh
        ccs.snd_cwnd_cnt = 0
    snd.cc.cwnd_event(ccs, now, CwndEvent.COMPLETE_CWR)


# ---------------------------------------------------------------------- undo

def any_retrans_done(snd: Sender) -> bool:
    """tcp_any_retrans_done: a retransmission in flight, or the head was ever resent."""
    rtx = snd.rtx
    return bool(rtx.retrans_out) or (bool(rtx.records) and rtx.records[0].ever_retrans)


def clear_stamp_if_clean(snd: Sender) -> None:
    """No retransmission of the episode is left: forget its stamp (tcp_try_to_open)."""
    if not any_retrans_done(snd):
        snd.undo.forget_stamp()


def packet_delayed(snd: Sender, tsecr: int | None) -> bool:
    """tcp_packet_delayed: the ACK echoes a TSval older than the first retransmission;
    with nothing retransmitted since the stamp was forgotten, Linux 6.18 counts the ACK
    as delayed too, unless SACK is off and recovery has reached high_seq
    (tcp_is_non_sack_preventing_reopen forgot a stamp with retransmissions done)."""
    return snd.undo.packet_delayed(tsecr, snd.sack_ok or before(snd.snd_una, snd.high_seq))


def may_undo(snd: Sender, tsecr: int | None) -> bool:
    """tcp_may_undo."""
    return snd.undo.may_undo(tsecr, snd.sack_ok or before(snd.snd_una, snd.high_seq))


def undo_cwnd_reduction(snd: Sender, unmark_loss: bool) -> None:
    """tcp_undo_cwnd_reduction: cwnd back through the congestion control's undo_cwnd,
    ssthresh back to prior_ssthresh if that is higher (and no CWR for it); with
    ``unmark_loss`` nothing stays marked lost. RACK looks at the queue again."""
    if unmark_loss:
        snd.rtx.unmark_all_lost()
    ccs = snd.ccs
    if ccs.prior_ssthresh:
        ccs.snd_cwnd = snd.cc.undo_cwnd(ccs)
        if ccs.prior_ssthresh > ccs.snd_ssthresh:
            ccs.snd_ssthresh = ccs.prior_ssthresh
            snd.ecn_flags &= ~ecn.TCP_ECN_QUEUE_CWR  # tcp_ecn_withdraw_cwr
    snd.undo.end()
    snd.rack_advanced = True


def try_keep_open(snd: Sender) -> None:
    """tcp_try_keep_open: Open, or Disorder while something is SACKed, lost or resent;
    a change of state starts a new window (high_seq)."""
    rtx = snd.rtx
    state = CA_DISORDER if rtx.sacked_out or rtx.lost_out or any_retrans_done(snd) \
        else CA_OPEN
    if snd.ccs.ca_state != state:
        snd.set_ca_state(state)
        snd.high_seq = snd.snd_nxt


def non_sack_preventing_reopen(snd: Sender) -> bool:
    """tcp_is_non_sack_preventing_reopen: without SACK the episode's state is held until
    something above high_seq is acked, lest its duplicate ACKs start another fast
    retransmit (RFC 6582 3.2 step 4)."""
    if snd.sack_ok or snd.snd_una != snd.high_seq:
        return False
    clear_stamp_if_clean(snd)
    return True


def try_undo_recovery(snd: Sender, tsecr: int | None) -> bool:
    """The episode's data is all acknowledged (tcp_try_undo_recovery): undo if it was
    spurious (TcpExtTCPFullUndo; TcpExtTCPLossUndo after an RTO), then Open, unless the
    state is held (True)."""
    if may_undo(snd, tsecr):
        undo_cwnd_reduction(snd, False)
        snd.host.counters.inc(Mib.TcpExtTCPLossUndo if snd.ccs.ca_state == CA_LOSS
                              else Mib.TcpExtTCPFullUndo)
    if non_sack_preventing_reopen(snd):
        return True
    snd.set_ca_state(CA_OPEN)
    return False


def try_undo_dsack(snd: Sender) -> bool:
    """Every retransmission was D-SACKed (tcp_try_undo_dsack): TcpExtTCPDSACKUndo."""
    if not snd.undo.all_dsacked():
        return False
    undo_cwnd_reduction(snd, False)
    snd.host.counters.inc(Mib.TcpExtTCPDSACKUndo)
    return True


def try_undo_loss(snd: Sender, tsecr: int | None, frto_undo: bool) -> bool:
    """The RTO was spurious (tcp_try_undo_loss): by F-RTO, by D-SACK or by Eifel.
    Nothing stays lost; back to Open (TcpExtTCPLossUndo, and TcpExtTCPSpuriousRTOs when
    F-RTO proved it)."""
    if not (frto_undo or may_undo(snd, tsecr)):
        return False
    undo_cwnd_reduction(snd, True)
    c = snd.host.counters
    c.inc(Mib.TcpExtTCPLossUndo)
    if frto_undo:
        c.inc(Mib.TcpExtTCPSpuriousRTOs)
    snd.retransmits = 0
    if non_sack_preventing_reopen(snd):
        return True
    if frto_undo or snd.sack_ok:
        snd.set_ca_state(CA_OPEN)
    return True


def check_dsack(snd: Sender, start: int, end: int) -> int:
    """A D-SACK block arrived (tcp_check_dsack, tcp_dsack_seen): count its duplicate
    segments (TcpExtTCPDSACKRecvSegs, tcpi_dsack_dups); a block wider than any window,
    or reporting more duplicates than were ever retransmitted, is dubious
    (TcpExtTCPDSACKIgnoredDubious). Each duplicate of the episode counts against its
    retransmissions: by segments below SND.UNA (the queue forgot them), by record inside
    the queue (tcp_sacktag_one). Returns the duplicate segments, 0 if the block does
    not count; they count as delivered (tcpi_delivered, and cwnd's growth)."""
    c = snd.host.counters
    length = seq_diff(end, start)
    if length <= 0 or length > snd.max_window:
        c.inc(Mib.TcpExtTCPDSACKIgnoredDubious)
        return 0
    dup_segs = -(-length // snd.mss) if length > snd.mss else 1
    snd.dsack_dups += dup_segs
    if snd.dsack_dups > snd.total_retrans:
        c.inc(Mib.TcpExtTCPDSACKIgnoredDubious)
        return 0
    c.inc(Mib.TcpExtTCPDSACKRecvSegs, dup_segs)
    if before_eq(end, snd.snd_una):
        snd.undo.dsacked(end, dup_segs)
        return dup_segs
    for rec in snd.rtx.records:
        if not before(rec.start, end):
            break
        if rec.ever_retrans and not before(rec.start, start):
            snd.undo.dsacked(rec.end, rec.pcount)
    return dup_segs


def cong_control(snd: Sender, now: float, acked: int, sacked: int, newly_lost: int,
                 una_advanced: bool) -> None:
    """tcp_cong_control: reduce cwnd with PRR in recovery, grow it otherwise, for the
    packets this ACK delivered: ``acked`` cumulatively, ``sacked`` newly SACKed."""
    ccs = snd.ccs
    delivered = acked + sacked
    if ccs.ca_state in (CA_RECOVERY, CA_CWR):
        cwnd_reduction(snd, delivered, newly_lost, una_advanced)
    elif acked or (delivered and snd.reordering > snd.config.tcp_reordering):
        ccs.packets_out = snd.rtx.packets_out
        ccs.is_cwnd_limited = snd.is_cwnd_limited()
        snd.cc.cong_avoid(ccs, now, snd.snd_una, delivered)
    snd.update_pacing_rate()


def init_cwnd_reduction(snd: Sender) -> None:
    """What recovery and CWR share (tcp_init_cwnd_reduction): ssthresh from the congestion
    control, PRR's counters from zero, the episode ends above snd_nxt, and an ECN peer
    hears of it (CWR on the next new data)."""
    ccs = snd.ccs
    ccs.prior_cwnd = ccs.snd_cwnd
    ccs.snd_cwnd_cnt = 0
    ccs.snd_ssthresh = snd.cc.ssthresh(ccs)
    snd.prr_delivered = 0
    snd.prr_out = 0
    snd.high_seq = snd.snd_nxt
    snd.tlp_high_seq = None
    snd.ecn_queue_cwr()


def enter_cwr(snd: Sender, now: float) -> None:
    """Congestion Window Reduced after an ECN echo (tcp_enter_cwr, RFC 3168 6.1.2): the
    response to a loss, once per window, with nothing to retransmit and nothing to undo
    (congestion is proven); CWR goes out on the next new data segment."""
    ccs = snd.ccs
    ccs.prior_ssthresh = 0
    if ccs.ca_state < CA_CWR:
        snd.undo.end()
        init_cwnd_reduction(snd)
        snd.set_ca_state(CA_CWR)
    log.debug("cwr", snd=snd.name, cwnd=ccs.snd_cwnd, ssthresh=ccs.snd_ssthresh,
              t=round(now, 6))


def enter_recovery(snd: Sender, now: float, ece: bool = False) -> None:
    """Fast recovery starts (tcp_enter_recovery, RFC 5681 3.2 / RFC 6675 5): a new undo
    episode; the reduction itself unless CWR already made it (then, as after an ECN
    echo, it is not undone)."""
    ccs = snd.ccs
    snd.host.counters.inc(
        Mib.TcpExtTCPSackRecovery if snd.sack_ok else Mib.TcpExtTCPRenoRecovery)
    clear_stamp_if_clean(snd)  # the clock starts with our fast retransmit
    ccs.prior_ssthresh = 0
    snd.init_undo()
    if ccs.ca_state not in (CA_CWR, CA_RECOVERY):
        if not ece:
            ccs.prior_ssthresh = snd.current_ssthresh()
        init_cwnd_reduction(snd)
    snd.set_ca_state(CA_RECOVERY)
    log.debug("recovery", snd=snd.name, cwnd=ccs.snd_cwnd,
              ssthresh=ccs.snd_ssthresh, t=round(now, 6))


def cwnd_reduction(snd: Sender, delivered: int, newly_lost: int, una_advanced: bool) -> None:
    """Proportional Rate Reduction (RFC 6937 3.1, Linux tcp_cwnd_reduction): in
    recovery, send about ssthresh/prior_cwnd packets per packet delivered, and
    slow-start back up to ssthresh once the pipe has drained below it."""
    ccs = snd.ccs
    if delivered <= 0 or not ccs.prior_cwnd:
        return
    snd.prr_delivered += delivered
    in_flight = snd.rtx.in_flight()
    delta = ccs.snd_ssthresh - in_flight
    if delta < 0:
        dividend = ccs.snd_ssthresh * snd.prr_delivered + ccs.prior_cwnd - 1
        sndcnt = dividend // ccs.prior_cwnd - snd.prr_out
    else:
        sndcnt = max(snd.prr_delivered - snd.prr_out, delivered)
        if una_advanced and not newly_lost:
            sndcnt += 1
        sndcnt = min(delta, sndcnt)
    sndcnt = max(sndcnt, 0 if snd.prr_out else 1)  # force the fast retransmit
    ccs.snd_cwnd = in_flight + sndcnt


def xmit_retransmit_queue(snd: Sender, now: float) -> None:
    """Retransmit records marked lost while the congestion window allows
    (tcp_xmit_retransmit_queue)."""
    records = snd.rtx.records
    i = 0
    while i < len(records):  # the tail a retransmission splits off comes next
        rec = records[i]
        i += 1
        if snd.rtx.in_flight() >= snd.ccs.snd_cwnd or snd.pacing_check(now):
            break
        if rec.lost and not rec.retrans and not rec.sacked:
            if rec.start != snd.snd_una and \
                    not before(rec.start, seq_add(snd.snd_una, snd.snd_wnd)):
                break  # __tcp_retransmit_skb: beyond the peer's window (-EAGAIN)
            # As many segments of the record as cwnd allows, in one packet.
            segs = min(snd.ccs.snd_cwnd - snd.rtx.in_flight(), snd.tso_segs(snd.mss))
            snd.retransmit(now, rec, segs)
            snd.host.counters.inc(
                Mib.TcpExtTCPFastRetrans if snd.ccs.ca_state == CA_RECOVERY
                else Mib.TcpExtTCPLossRetransmit if snd.ccs.ca_state == CA_LOSS
                else Mib.TcpExtTCPSlowStartRetrans)
    if snd.t_rto is None and snd.rtx.packets_out:
        snd.arm_rto(now)


def simple_retransmit(snd: Sender, now: float) -> None:
    """tcp_simple_retransmit: the MSS fell (path MTU discovery, a lost MTU probe): every
    segment longer than it is lost; loss state without a cwnd reduction (the units
    changed, not the data in flight), and the queue goes out at once in new-MSS pieces.
    A Fast Open SYN with data in SYN_SENT is lost whole, the SYN as well: it goes again
    alone, the data waits for the peer's window (Linux's mss of -1 here)."""
    mss = -1 if snd.fastopen_syn_data and snd.owner.state == State.SYN_SENT \
        else snd.current_mss()
    rtx = snd.rtx
    for rec in rtx.records:
        size = seq_diff(rec.end, rec.start) - rec.syn - rec.fin
        if not rec.done and not rec.sacked and (
                mss < 0 or (size > 0 and -(-size // rec.pcount) > mss)):
            rtx.mark_lost(rec)
    if rtx.lost_out:
        non_congestion_loss_retransmit(snd, now)


def non_congestion_loss_retransmit(snd: Sender, now: float) -> None:
    """tcp_non_congestion_loss_retransmit: what is marked lost was lost for another reason
    than congestion (a smaller path MTU, a Fast Open SYN's data the server did not take):
    loss state without a cwnd reduction, and the lost records go out at once."""
    ccs = snd.ccs
    if ccs.ca_state != CA_LOSS:
        snd.high_seq = snd.snd_nxt
        ccs.snd_ssthresh = snd.current_ssthresh()
        ccs.prior_ssthresh = 0
        snd.undo.end()
        snd.set_ca_state(CA_LOSS)
    xmit_retransmit_queue(snd, now)
