"""Loss recovery: the SACK scoreboard, RACK-TLP, fast recovery with PRR, NewReno without
SACK, and the RTO's loss state.

Functions on a :class:`~ustcp.tcp.connection.Connection`, the way Linux keeps
tcp_recovery.c and the recovery half of tcp_input.c apart from the rest of the socket:

- :func:`sacktag` marks SACKed records (RFC 2018, D-SACK per RFC 2883) and notices
  reordering (tcp_sacktag_write_queue, tcp_check_sack_reordering);
- :func:`rack_detect_loss` is RFC 8985's time-based loss detection, with the reorder
  timer (:func:`rack_reo_timeout`); :func:`schedule_loss_probe` and :func:`send_loss_probe`
  are its tail loss probe;
- :func:`fastretrans_alert` is the recovery state machine (tcp_fastretrans_alert), run
  for dubious ACKs only: it enters and leaves CA_Recovery; :func:`cong_control` then sets
  cwnd with PRR (:func:`cwnd_reduction`, RFC 6937) or grows it through the congestion
  control, and :func:`xmit_retransmit_queue` resends what is marked lost;
- without SACK, duplicate ACKs count as SACKed segments (:func:`add_reno_sack`), which gives
  limited transmit (RFC 3042) and NewReno's partial ACKs (RFC 6582);
- :func:`enter_loss` is what an RTO does to the scoreboard and cwnd (tcp_enter_loss).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from ..mib import Mib
from ..wire.tcp import TcpSegment
from . import mtu_probe
from .congestion.base import (
    CA_CWR,
    CA_DISORDER,
    CA_LOSS,
    CA_OPEN,
    CA_RECOVERY,
    TCP_INFINITE_SSTHRESH,
    CwndEvent,
)
from .rto import TCP_RTO_MIN
from .seq import after, after_eq, before, before_eq, seq_add, seq_diff
from .timers import XmitTimer

if TYPE_CHECKING:
    from .connection import Connection, TxRecord

log = structlog.get_logger("ustcp.tcp")


def schedule_loss_probe(conn: Connection, now: float, *, advancing_rto: bool) -> bool:
    """Arm the tail loss probe (RFC 8985 7.2, tcp_schedule_loss_probe): PTO = 2*SRTT,
    plus a delayed-ACK allowance when one packet is in flight, never after the RTO."""
    cfg = conn.config
    if conn.tlp_high_seq is not None or cfg.tcp_early_retrans not in (3, 4) \
            or not conn.packets_out or not conn.sack_ok \
            or conn.ccs.ca_state not in (CA_OPEN, CA_CWR) or not conn.rtt.has_sample:
        return False
    srtt = conn.rtt.srtt_us / 1e6
    pto = 2 * srtt + (TCP_RTO_MIN if conn.packets_out == 1 else 0.002)
    rto_left = conn.rto_value() if advancing_rto else conn.rto_deadline(now) - now
    if rto_left > 0:
        pto = min(pto, rto_left)
    conn.reset_xmit_timer(XmitTimer.LOSS_PROBE, now + pto)
    return True


def enter_loss(conn: Connection, now: float) -> None:
    """RTO recovery (tcp_enter_loss): everything not SACKed is lost, cwnd = 1."""
    ccs = conn.ccs
    if ccs.ca_state <= CA_DISORDER or not before(conn.snd_una, conn.high_seq) or (
            ccs.ca_state == CA_LOSS and not conn.retransmits):
        ccs.prior_ssthresh = ccs.snd_ssthresh
        ccs.prior_cwnd = ccs.snd_cwnd
        ccs.snd_ssthresh = conn.cc.ssthresh(ccs)
        conn.cc.cwnd_event(ccs, now, CwndEvent.LOSS)
    for rec in conn.rtx:
        if rec.retrans:
            rec.retrans = False
            conn.retrans_out -= rec.pcount
        if not rec.sacked and not rec.lost:
            rec.lost = True
            conn.lost_out += rec.pcount
    ccs.snd_cwnd = conn.in_flight() + 1
    ccs.snd_cwnd_cnt = 0
    conn.high_seq = conn.snd_nxt
    set_ca_state(conn, CA_LOSS)


def set_ca_state(conn: Connection, new: int) -> None:
    if conn.ccs.ca_state != new:
        conn.cc.set_state(conn.ccs, new)
        conn.ccs.ca_state = new


def process_tlp_ack(conn: Connection, now: float, ack: int, acked: int, sacked: int,
                     seg: TcpSegment) -> None:
    """Did the loss probe repair a loss (tcp_process_tlp_ack)? Then reduce cwnd once."""
    assert conn.tlp_high_seq is not None
    if before(ack, conn.tlp_high_seq):
        return
    dsack = bool(seg.options.sack_blocks) and before_eq(seg.options.sack_blocks[0][1], ack)
    if not conn.tlp_retrans or dsack:
        conn.tlp_high_seq = None
    elif after(ack, conn.tlp_high_seq):
        conn.tlp_high_seq = None
        ccs = conn.ccs
        ccs.prior_cwnd = ccs.snd_cwnd
        ccs.snd_ssthresh = conn.cc.ssthresh(ccs)
        ccs.snd_cwnd = min(ccs.snd_cwnd, ccs.snd_ssthresh)
        conn.cc.cwnd_event(ccs, now, CwndEvent.COMPLETE_CWR)
        conn.host.counters.inc(Mib.TcpExtTCPLossProbeRecovery)
    elif not acked and not sacked:
        conn.tlp_high_seq = None


def send_loss_probe(conn: Connection, now: float) -> None:
    """The PTO fired (RFC 8985 7.3, tcp_send_loss_probe): send one new segment if the
    windows allow, else retransmit the last one; then the RTO takes over."""
    if not conn.packets_out:
        return
    before_nxt = conn.snd_nxt
    if seq_diff(conn.write_seq, conn.snd_nxt) > 0:
        cwnd = conn.ccs.snd_cwnd
        conn.ccs.snd_cwnd = conn.in_flight() + 1
        conn.push_ignoring_nagle(now)
        conn.ccs.snd_cwnd = max(cwnd, conn.ccs.snd_cwnd - 1)
    if conn.snd_nxt != before_nxt:
        conn.tlp_retrans = False
    else:
        last = conn.rtx[-1]
        if last.pcount > 1:
            conn.split(last, seq_diff(last.end, last.start) - (1 if last.fin else 0)
                        - conn.mss * (last.pcount - 1))
            last = conn.rtx[-1]
        if last.sacked:
            conn.arm_rto(now)
            return
        conn.retransmit(now, last)
        conn.tlp_retrans = True
    conn.tlp_high_seq = conn.snd_nxt
    conn.host.counters.inc(Mib.TcpExtTCPLossProbes)
    conn.arm_rto(now)


def add_reno_sack(conn: Connection) -> None:
    """Without SACK, each duplicate ACK stands for one segment that left the network
    (Linux tcp_add_reno_sack): it lowers the packets in flight, which is what lets
    limited transmit (RFC 3042) send new data on the first two dupacks."""
    conn.sacked_out += 1
    limit_reno_sacked(conn)


def remove_reno_sacks(conn: Connection, acked: int) -> None:
    """One ACK fills a hole; the rest of what it acks eats duplicate ACKs
    (tcp_remove_reno_sacks)."""
    if acked > 0:
        conn.sacked_out = 0 if acked - 1 >= conn.sacked_out else conn.sacked_out - (acked - 1)
    limit_reno_sacked(conn)


def limit_reno_sacked(conn: Connection) -> None:
    holes = min(max(conn.lost_out, 1), conn.packets_out)
    if conn.sacked_out + holes > conn.packets_out:
        conn.sacked_out = max(0, conn.packets_out - holes)


def sacktag(conn: Connection, now: float, blocks: tuple[tuple[int, int], ...], ack: int) -> int:
    """Mark SACKed records (tcp_sacktag_write_queue). D-SACK blocks (RFC 2883 4: first
    block below the ACK or inside the second block) are counted and not tagged."""
    newly = 0
    c = conn.host.counters
    reord: int | None = None
    dsack_first = bool(blocks) and (before_eq(blocks[0][1], ack) or (
        len(blocks) > 1 and not before(blocks[0][0], blocks[1][0])
        and not after(blocks[0][1], blocks[1][1])))
    if dsack_first:
        c.inc(Mib.TcpExtTCPDSACKRecv)
        blocks = blocks[1:]
    # Linux walks the blocks in sequence order (tcp_sacktag_write_queue).
    for left, right in sorted(blocks, key=lambda b: seq_diff(b[0], conn.snd_una)):
        if not after(right, left):
            continue
        if after(right, conn.snd_nxt) or before(left, seq_add(conn.snd_una, -conn.max_window)):
            c.inc(Mib.TcpExtTCPSACKDiscard)
            continue
        for rec in list(conn.rtx):
            if rec.sacked or before_eq(rec.end, left):
                continue
            if after_eq(rec.start, right):
                break
            if before(rec.start, left):
                if not before(seq_add(rec.start, conn.mss), rec.end):
                    continue
                conn.split(rec, (seq_diff(left, rec.start) // conn.mss) * conn.mss
                            or conn.mss)
                continue
            if after(rec.end, right):
                cut = (seq_diff(right, rec.start) // conn.mss) * conn.mss
                if cut <= 0:
                    continue
                conn.split(rec, cut)
            if not rec.ever_retrans and conn.sacked_out and before(
                    rec.start, conn.highest_sack):
                # A hole below the highest SACK filled by an original: reordering.
                reord = rec.start if reord is None or before(rec.start, reord) else reord
            rec.sacked = True
            conn.sacked_out += rec.pcount
            newly += rec.pcount
            if not conn.sacked_out - rec.pcount or after(rec.end, conn.highest_sack):
                conn.highest_sack = rec.end
            rack_advance(conn, now, rec)
            if rec.lost:
                rec.lost = False
                conn.lost_out -= rec.pcount
            if rec.retrans:
                rec.retrans = False
                conn.retrans_out -= rec.pcount
    conn.delivered += newly
    if reord is not None:
        check_sack_reordering(conn, reord)
    return newly


def check_sack_reordering(conn: Connection, low_seq: int) -> None:
    """Data below the highest SACK arrived late: the path reorders. Raise the
    reordering degree to the distance seen (tcp_check_sack_reordering)."""
    fack = conn.highest_sack if conn.sacked_out else conn.snd_una
    if not before(low_seq, fack):
        return
    metric = seq_diff(fack, low_seq)
    if metric > conn.reordering * conn.mss:
        conn.reordering = min(-(-metric // conn.mss), conn.config.tcp_max_reordering)
    conn.reord_seen += 1
    conn.host.counters.inc(Mib.TcpExtTCPSACKReorder)


def rack_advance(conn: Connection, now: float, rec: TxRecord) -> None:
    """A record was delivered: remember the most recently sent one and its RTT
    (RFC 8985 6.2 step 2, tcp_rack_advance). A retransmitted record's RTT is
    ambiguous unless it is at least the minimum RTT."""
    rtt_us = int((now - rec.xmit) * 1e6)
    if rec.ever_retrans and rtt_us < conn.rtt.min_rtt_us:
        return
    conn.rack_advanced = True
    conn.rack_rtt_us = rtt_us
    if rec.xmit > conn.rack_mstamp or (rec.xmit == conn.rack_mstamp
                                       and after(rec.end, conn.rack_end_seq)):
        conn.rack_mstamp = rec.xmit
        conn.rack_end_seq = rec.end


def rack_reo_wnd(conn: Connection) -> float:
    """The reordering window (RFC 8985 6.2 step 4, tcp_rack_reo_wnd): none while in
    recovery or once `reordering` packets are SACKed, unless reordering was seen."""
    if not conn.reord_seen and (conn.ccs.ca_state >= CA_RECOVERY
                                or conn.sacked_out >= conn.reordering):
        return 0.0
    return min(conn.rtt.min_rtt_us / 4, conn.rtt.srtt_us) / 1e6


def rack_prune(conn: Connection) -> None:
    """Drop the oldest entries of the send-time queue that no longer take part in loss
    detection: acknowledged, SACKed, or superseded by a retransmission (RFC 8985's
    time-ordered list, Linux tcp_rack_detect_loss's tsorted_sent_queue walk)."""
    ts = conn.tsorted
    while ts and (ts[0][1].done or ts[0][1].sacked or ts[0][0] != ts[0][1].xmit):
        ts.popleft()


def rack_detect_loss(conn: Connection, now: float) -> bool:
    """Mark lost every record sent before the most recently delivered one whose time
    is up (RFC 8985 6.2 step 5, tcp_rack_detect_loss); arm the reorder timer for the
    rest."""
    if not conn.rack_advanced:
        return False
    conn.rack_advanced = False
    reo_wnd = rack_reo_wnd(conn)
    rack_rtt = conn.rack_rtt_us / 1e6
    marked = False
    wait = 0.0
    rack_prune(conn)
    ts = conn.tsorted
    for xmit, rec in ts:  # send order; nothing below changes ts
        if rec.done or rec.sacked or xmit != rec.xmit:
            continue
        if rec.lost and not rec.retrans:
            continue
        if xmit > conn.rack_mstamp or (xmit == conn.rack_mstamp
                                       and not after(conn.rack_end_seq, rec.end)):
            break
        remaining = rack_rtt + reo_wnd - (now - xmit)
        if remaining <= 1e-9:
            mark_record_lost(conn, rec)
            marked = True
        else:
            wait = max(wait, remaining)
    if wait > 0:
        conn.reset_xmit_timer(XmitTimer.REO_TIMEOUT, now + wait + 0.002)  # + TCP_TIMEOUT_MIN
    return marked


def rack_reo_timeout(conn: Connection, now: float) -> None:
    """The reorder timer fired (tcp_rack_reo_timeout): detect, recover, retransmit."""
    conn.rack_advanced = True
    prior_in_flight = conn.in_flight()
    rack_detect_loss(conn, now)
    if conn.in_flight() != prior_in_flight:
        if conn.ccs.ca_state != CA_RECOVERY:
            enter_recovery(conn, now)
            cwnd_reduction(conn, 1, 0, False)
        xmit_retransmit_queue(conn, now)
    if conn.t_rto is None and conn.packets_out:
        conn.arm_rto(now)


def mark_lost(conn: Connection, now: float, snd_una_advanced: bool) -> bool:
    """Loss detection (tcp_identify_packet_loss). With SACK: a record is lost once
    `reordering` packets above it were SACKed (RFC 6675 IsLost). Without SACK (NewReno,
    tcp_newreno_mark_lost): the head after `reordering` duplicate ACKs, and again on
    each partial ACK during recovery (RFC 6582). Returns True if any was marked."""
    if not conn.rtx:
        return False
    if conn.sack_ok and conn.config.tcp_recovery & 1:
        return rack_detect_loss(conn, now)
    if conn.sack_ok:
        marked = False
        sacked_above = 0
        for rec in reversed(conn.rtx):
            if rec.sacked:
                sacked_above += rec.pcount
            elif sacked_above >= conn.reordering and not rec.lost:
                mark_record_lost(conn, rec)
                marked = True
        return marked
    state = conn.ccs.ca_state
    head = conn.rtx[0]
    if head.lost or not ((state < CA_RECOVERY and conn.sacked_out >= conn.reordering)
                         or (state == CA_RECOVERY and snd_una_advanced)):
        return False
    if head.pcount > 1:
        conn.split(head, conn.mss)
    mark_record_lost(conn, head)
    return True


def mark_record_lost(conn: Connection, rec: TxRecord) -> None:
    """tcp_mark_skb_lost: a lost retransmission becomes retransmittable again."""
    if not rec.lost:
        rec.lost = True
        conn.lost_out += rec.pcount
    if rec.retrans:
        rec.retrans = False
        conn.retrans_out -= rec.pcount


def fastretrans_alert(conn: Connection, now: float, prior_una: int) -> int:
    """The loss-recovery state machine (tcp_fastretrans_alert) for a dubious ACK: leaves
    recovery once everything outstanding at its start is acked, detects losses (RACK,
    RFC 6675 or NewReno, RFC 6582) and enters recovery when one is proven. Returns the
    packets newly marked lost."""
    if mtu_probe.on_dubious_ack(conn, now):
        return 0  # the MTU probe was lost: no cwnd reduction (RFC 4821 7.6.2)
    ccs = conn.ccs
    state = ccs.ca_state
    # Leave a recovery episode once everything outstanding at its start is acked.
    if state == CA_RECOVERY and not before(conn.snd_una, conn.high_seq):
        if ccs.snd_ssthresh < TCP_INFINITE_SSTHRESH:
            ccs.snd_cwnd = ccs.snd_ssthresh  # tcp_end_cwnd_reduction
            ccs.snd_cwnd_cnt = 0
        set_ca_state(conn, CA_OPEN)
        state = CA_OPEN
    elif (state == CA_LOSS and not before(conn.snd_una, conn.high_seq)) or (
            state == CA_CWR and after(conn.snd_una, conn.high_seq)):
        set_ca_state(conn, CA_OPEN)
        state = CA_OPEN
    lost_before = conn.lost_out
    if state != CA_LOSS or conn.sack_ok:
        mark_lost(conn, now, after(conn.snd_una, prior_una))
    if conn.lost_out and state in (CA_OPEN, CA_DISORDER, CA_CWR):
        enter_recovery(conn, now)  # tcp_time_to_recover: the loss is proven
    elif state == CA_OPEN and conn.sacked_out:
        set_ca_state(conn, CA_DISORDER)
    elif state == CA_DISORDER and not conn.sacked_out:
        set_ca_state(conn, CA_OPEN)
    return max(0, conn.lost_out - lost_before)


def cong_control(conn: Connection, now: float, acked: int, sacked: int, newly_lost: int,
                 una_advanced: bool) -> None:
    """tcp_cong_control: reduce cwnd with PRR in recovery, grow it otherwise, for the
    packets this ACK delivered: ``acked`` cumulatively, ``sacked`` newly SACKed."""
    ccs = conn.ccs
    delivered = acked + sacked
    if ccs.ca_state in (CA_RECOVERY, CA_CWR):
        cwnd_reduction(conn, delivered, newly_lost, una_advanced)
    elif acked or (delivered and conn.reordering > conn.config.tcp_reordering):
        ccs.packets_out = conn.packets_out
        ccs.is_cwnd_limited = conn.is_cwnd_limited()
        conn.cc.cong_avoid(ccs, now, conn.snd_una, delivered)


def enter_recovery(conn: Connection, now: float) -> None:
    """Fast recovery starts (tcp_enter_recovery, RFC 5681 3.2 / RFC 6675 5)."""
    ccs = conn.ccs
    ccs.prior_cwnd = ccs.snd_cwnd
    ccs.prior_ssthresh = ccs.snd_ssthresh
    ccs.snd_ssthresh = conn.cc.ssthresh(ccs)
    conn.prior_cwnd = ccs.snd_cwnd
    conn.prr_delivered = 0
    conn.prr_out = 0
    conn.high_seq = conn.snd_nxt
    conn.tlp_high_seq = None  # tcp_init_cwnd_reduction
    set_ca_state(conn, CA_RECOVERY)
    conn.host.counters.inc(
        Mib.TcpExtTCPSackRecovery if conn.sack_ok else Mib.TcpExtTCPRenoRecovery)
    log.debug("recovery", conn=conn.name, cwnd=ccs.snd_cwnd,
              ssthresh=ccs.snd_ssthresh, t=round(now, 6))


def cwnd_reduction(conn: Connection, delivered: int, newly_lost: int, una_advanced: bool) -> None:
    """Proportional Rate Reduction (RFC 6937 3.1, Linux tcp_cwnd_reduction): in
    recovery, send about ssthresh/prior_cwnd packets per packet delivered, and
    slow-start back up to ssthresh once the pipe has drained below it."""
    ccs = conn.ccs
    if delivered <= 0 or not conn.prior_cwnd:
        return
    conn.prr_delivered += delivered
    in_flight = conn.in_flight()
    delta = ccs.snd_ssthresh - in_flight
    if delta < 0:
        dividend = ccs.snd_ssthresh * conn.prr_delivered + conn.prior_cwnd - 1
        sndcnt = dividend // conn.prior_cwnd - conn.prr_out
    else:
        sndcnt = max(conn.prr_delivered - conn.prr_out, delivered)
        if una_advanced and not newly_lost:
            sndcnt += 1
        sndcnt = min(delta, sndcnt)
    sndcnt = max(sndcnt, 0 if conn.prr_out else 1)  # force the fast retransmit
    ccs.snd_cwnd = in_flight + sndcnt


def xmit_retransmit_queue(conn: Connection, now: float) -> None:
    """Retransmit records marked lost while the congestion window allows
    (tcp_xmit_retransmit_queue)."""
    for rec in list(conn.rtx):
        if conn.in_flight() >= conn.ccs.snd_cwnd:
            break
        if rec.lost and not rec.retrans and not rec.sacked:
            conn.retransmit(now, rec)
            conn.host.counters.inc(
                Mib.TcpExtTCPFastRetrans if conn.ccs.ca_state == CA_RECOVERY
                else Mib.TcpExtTCPLossRetransmit if conn.ccs.ca_state == CA_LOSS
                else Mib.TcpExtTCPSlowStartRetrans)
    if conn.t_rto is None and conn.packets_out:
        conn.arm_rto(now)
