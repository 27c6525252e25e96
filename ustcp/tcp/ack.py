"""ACK processing (Linux tcp_ack and its helpers in tcp_input.c): what an acceptable ACK
does to the sender's half of a connection.

:func:`process_ack` validates the acknowledgment number (RFC 5961 5.2), takes TS.Recent
(RFC 7323 4.3), applies the window update rule (RFC 9293 3.10.7.4), tags SACK blocks,
removes acknowledged data from the retransmission queue with an RTT sample (Karn's rule,
RFC 6298), feeds the congestion control and the loss-recovery state machine
(:mod:`ustcp.tcp.recovery`), restarts the retransmission timer and moves the close-path
states on once our FIN is acknowledged. Functions take the :class:`Connection`, as the
recovery module's do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..mib import Mib
from ..wire.tcp import FIN, SYN, TcpSegment
from . import mtu_probe, recovery
from .congestion.base import CA_OPEN
from .seq import after, before, seq_add, seq_diff
from .states import State
from .timers import XmitTimer

if TYPE_CHECKING:
    from .connection import Connection


def process_ack(conn: Connection, now: float, seg: TcpSegment) -> bool:
    """tcp_ack: returns False when the segment is to be dropped."""
    ack = seg.ack
    prior_una = conn.snd_una
    prior_packets = conn.packets_out
    if after(ack, conn.snd_nxt):
        conn.host.counters.inc(Mib.UstcpDropAckUnsent)
        return False  # Linux drops it without an ACK (tcp_ack: invalid_ack)
    if before(ack, seq_add(prior_una, -conn.max_window)):
        conn.send_challenge_ack(now)  # RFC 5961 5.2
        return False
    conn.last_ack_recv = now
    # RFC 7323 4.3: TS.Recent from a segment covering RCV.WUP, once the ACK is known
    # to be acceptable (tcp_ack with FLAG_UPDATE_TS_RECENT, tcp_replace_ts_recent).
    opts = seg.options
    if conn.ts_ok and opts.ts_val is not None and not after(seg.seq, conn.rcv_wup):
        conn.ts_recent = opts.ts_val
        conn.ts_recent_stamp = now
    window_update = update_window(conn, seg)
    newly_sacked = 0
    prior_fack = conn.highest_sack if conn.sacked_out else prior_una
    if conn.sack_ok and seg.options.sack_blocks:
        newly_sacked = recovery.sacktag(conn, now, seg.options.sack_blocks, ack)
    acked_pkts = 0
    una_advanced = after(ack, prior_una)
    if una_advanced:
        acked_pkts = clean_rtx(conn, now, ack, seg, prior_fack)
        conn.snd_una = ack
        conn.ccs.snd_una = ack
        mtu_probe.on_ack(conn, now)  # the probe acknowledged: the MSS may rise (RFC 4821)
        conn.backoff = 0
        conn.retransmits = 0
        conn.retrans_stamp = 0.0
        if not conn.sack_ok:
            # Dupacks already stood for delivered segments (tcp_remove_reno_sacks).
            prior_sacked = conn.sacked_out
            recovery.remove_reno_sacks(conn, acked_pkts)
            acked_pkts = max(acked_pkts - prior_sacked, 1)
        conn.probes_out = 0
        conn.host.wake(conn)
    elif not conn.sack_ok and is_dupack(conn, seg, prior_una):
        recovery.add_reno_sack(conn)
        newly_sacked = 1
    if not prior_packets:
        ack_probe(conn, now)  # tcp_ack's no_queue: nothing was in flight
    if conn.tlp_high_seq is not None:
        recovery.process_tlp_ack(conn, now, ack, acked_pkts, newly_sacked, seg)
    newly_lost = 0
    # tcp_ack_is_dubious: a duplicate ACK (no progress, no data, no window update), one
    # with SACK information, or any ACK outside CA_Open goes through the recovery state
    # machine; a clean ACK in CA_Open cannot prove a loss.
    if not (una_advanced or window_update or seg.payload) or seg.options.sack_blocks \
            or conn.ccs.ca_state != CA_OPEN:
        newly_lost = recovery.fastretrans_alert(conn, now, prior_una)
    recovery.cong_control(conn, now, acked_pkts, newly_sacked, newly_lost, una_advanced)
    if conn.lost_out > conn.retrans_out:
        recovery.xmit_retransmit_queue(conn, now)  # tcp_xmit_recovery
    if una_advanced and conn.xmit_timer != XmitTimer.REO_TIMEOUT:
        conn.set_xmit_timer(now)
    state_after_ack(conn, now)
    return True


def ack_probe(conn: Connection, now: float) -> None:
    """An ACK with nothing in flight while data waits (tcp_ack_probe): once the window
    takes the next segment, the persist timer stops and its backoff is forgotten, so
    the data about to leave gets the plain RTO, not the probes' backed-off one; while the
    window stays shut, the next probe is timed from this ACK."""
    unsent = seq_diff(conn.write_seq, conn.snd_nxt)
    if unsent <= 0:
        return
    head_end = seq_add(conn.snd_nxt, min(unsent, conn.mss))
    if not after(head_end, seq_add(conn.snd_una, conn.snd_wnd)):
        conn.backoff = 0
        conn.t_probe0 = None
    elif conn.t_probe0 is not None:
        conn.reset_xmit_timer(XmitTimer.PROBE0, conn.probe0_when(now))


def is_dupack(conn: Connection, seg: TcpSegment, prior_una: int) -> bool:
    """RFC 5681 2: same ACK, no data, no window change, data outstanding."""
    return (seg.ack == prior_una and not seg.payload and not seg.flags & (SYN | FIN)
            and conn.packets_out > 0
            and (seg.window << conn.snd_wscale) == conn.snd_wnd)


def update_window(conn: Connection, seg: TcpSegment) -> bool:
    """RFC 9293 3.10.7.4 window update rule (tcp_ack_update_window); True when the
    segment may update the window (Linux's FLAG_WIN_UPDATE), changed or not."""
    nwin = seg.window << conn.snd_wscale
    if after(seg.ack, conn.snd_una) or after(seg.seq, conn.snd_wl1) or (
            seg.seq == conn.snd_wl1 and (nwin > conn.snd_wnd or not nwin)):
        if nwin != conn.snd_wnd:
            conn.host.wake(conn)
        conn.snd_wnd = nwin
        conn.snd_wl1 = seg.seq
        conn.snd_wl2 = seg.ack
        conn.max_window = max(conn.max_window, nwin)
        return True
    return False


def clean_rtx(conn: Connection, now: float, ack: int, seg: TcpSegment, prior_fack: int) -> int:
    """Drop acknowledged records; sample the RTT (Karn's rule, RFC 6298 3); feed the
    congestion control (tcp_clean_rtx_queue). Returns the packets newly delivered:
    acknowledged now and not already SACKed."""
    acked_pkts = 0
    acked_bytes = 0
    rtt_us = -1
    first_ackt: float | None = None  # earliest send time acked: the RTO's sample
    last_ackt: float | None = None  # latest: the congestion control's (ca_rtt_us)
    reord: int | None = None
    delivered = 0  # acked now and not SACKed before (tcp_newly_delivered)
    while conn.rtx:
        rec = conn.rtx[0]
        if after(rec.end, ack):
            if after(ack, rec.start) and not rec.syn:
                # Partially acknowledged (tcp_trim_head).
                trimmed = seq_diff(ack, rec.start)
                acked_bytes += trimmed
                remaining = seq_diff(rec.end, ack) - (1 if rec.fin else 0)
                new_pcount = max(1, -(-remaining // conn.mss))
                delta = rec.pcount - new_pcount
                acked_pkts += delta
                if not rec.sacked:
                    delivered += delta
                conn.packets_out -= delta
                for flag, attr in ((rec.sacked, "sacked_out"), (rec.lost, "lost_out"),
                                   (rec.retrans, "retrans_out")):
                    if flag:
                        setattr(conn, attr, getattr(conn, attr) - delta)
                rec.start = ack
                rec.pcount = new_pcount
                recovery.rack_advance(conn, now, rec)
                if not rec.ever_retrans:
                    first_ackt = rec.xmit if first_ackt is None else first_ackt
                    last_ackt = rec.xmit
            break
        conn.rtx.popleft()
        rec.done = True
        recovery.rack_advance(conn, now, rec)
        acked_pkts += rec.pcount
        if not rec.sacked:
            delivered += rec.pcount
        conn.packets_out -= rec.pcount
        if rec.sacked:
            conn.sacked_out -= rec.pcount
        if rec.lost:
            conn.lost_out -= rec.pcount
        if rec.retrans:
            conn.retrans_out -= rec.pcount
        span = seq_diff(rec.end, rec.start)
        if rec.fin:
            conn.fin_acked = True
            span -= 1
        if rec.syn:
            span -= 1
        acked_bytes += span
        if not rec.ever_retrans and not rec.sacked:
            if first_ackt is None:
                first_ackt = rec.xmit
            last_ackt = rec.xmit
            if reord is None:
                reord = rec.start
    if conn.sack_ok and reord is not None and before(reord, prior_fack):
        recovery.check_sack_reordering(conn, reord)  # a non-retransmitted hole got filled
    # Keep the send-time queue as short as the retransmission queue: without this, a
    # connection whose ACKs never leave data outstanding (request/response) or that
    # runs without SACK (no RACK) would only ever append to it.
    recovery.rack_prune(conn)
    if acked_bytes:
        conn.snd_buf.consume(acked_bytes)
        conn.bytes_acked += acked_bytes
    conn.delivered += delivered
    conn.ccs.delivered = conn.delivered
    ca_rtt_us = -1
    if first_ackt is not None and last_ackt is not None:
        rtt_us = max(1, int((now - first_ackt) * 1e6))
        ca_rtt_us = max(1, int((now - last_ackt) * 1e6))
    elif conn.ts_ok and seg.options.ts_ecr and acked_pkts:
        # RFC 7323 4.1: RTT from TSecr when every acked segment was retransmitted.
        rtt_ms = seq_diff(conn.ts_now(now), seg.options.ts_ecr)
        if 0 <= rtt_ms < 3_600_000:
            rtt_us = ca_rtt_us = max(1, rtt_ms * 1000)
    if rtt_us > 0:
        conn.rtt.on_sample(rtt_us, snd_una=ack, snd_nxt=conn.snd_nxt)
        conn.ccs.srtt_us = conn.rtt.srtt_us
        conn.ccs.min_rtt_us = conn.rtt.min_rtt_us
    if acked_pkts:
        conn.cc.pkts_acked(conn.ccs, now, acked_pkts, ca_rtt_us)
    conn.ccs.packets_out = conn.packets_out
    return delivered


def state_after_ack(conn: Connection, now: float) -> None:
    """Transitions driven by the ACK of our FIN (RFC 9293 3.10.7.4)."""
    if not conn.fin_acked:
        return
    if conn.state == State.FIN_WAIT1:
        conn.set_state(now, State.FIN_WAIT2)
        conn.t_rto = None
        if conn.orphan:
            conn.arm_linger(now)
    elif conn.state == State.CLOSING:
        conn.enter_time_wait(now)
    elif conn.state == State.LAST_ACK:
        conn.finish(now)
