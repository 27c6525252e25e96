"""Undo of spurious cwnd reductions (the undo half of Linux's tcp_input.c: tcp_init_undo,
tcp_may_undo, tcp_try_undo_*, tcp_undo_cwnd_reduction, tcp_check_dsack).

A loss episode (fast recovery, or the loss state after an RTO) cuts cwnd and ssthresh on
a guess: the data was lost. Two kinds of evidence can prove the guess wrong afterwards:

- **D-SACK** (RFC 2883, RFC 3708): the receiver reports every retransmission of the
  episode as a duplicate, so the originals had arrived. :class:`Undo` counts the
  retransmissions still unaccounted for (``undo_retrans``, Linux's field); each D-SACKed
  one takes one off, and at zero the reduction is undone (``TcpExtTCPDSACKUndo``);
- **timestamps** (Eifel detection, RFC 3522): an ACK echoes a TSval older than the
  episode's first retransmission, so it acknowledges an original transmission
  (``packet_delayed``): ``TcpExtTCPFullUndo`` at the end of recovery,
  ``TcpExtTCPPartialUndo`` on a partial ACK in it, ``TcpExtTCPLossUndo`` after an RTO.

F-RTO (RFC 5682, ``tcp_frto``) is the third: after an RTO, new data instead of further
retransmissions, and an ACK of never-retransmitted data proves the timeout spurious
(``TcpExtTCPSpuriousRTOs``); its steps are ``recovery.process_loss``.

Undoing gives back the cwnd before the cut (the congestion control's ``undo_cwnd``:
max(cwnd, prior_cwnd) for Reno and CUBIC) and ssthresh from ``prior_ssthresh``, and
withdraws a queued ECN CWR. :class:`Undo` owns the episode's state; ``prior_cwnd`` and
``prior_ssthresh`` are the congestion state's (``CcState``), which the algorithms read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..mib import Mib
from . import ecn
from .congestion.base import CA_DISORDER, CA_LOSS, CA_OPEN
from .seq import after, before, before_eq

if TYPE_CHECKING:
    from .sender import Sender


class Undo:
    """One connection's undo state (tcp_sock's undo_marker, undo_retrans, the Eifel
    role of retrans_stamp, frto)."""

    __slots__ = ("frto", "marker", "retrans", "retrans_tsval")

    def __init__(self) -> None:
        # SND.UNA when the episode began; None: nothing to undo (undo_marker == 0).
        self.marker: int | None = None
        # Retransmissions of the episode not yet D-SACKed; -1: none sent yet, so that 0
        # always means "all were duplicates" (undo_retrans).
        self.retrans = 0
        # The TSval of the episode's first retransmission (retrans_stamp as
        # tcp_packet_delayed reads it); None: no retransmission since it was cleared.
        self.retrans_tsval: int | None = None
        self.frto = False  # F-RTO is running after this RTO (tp->frto)


def init_undo(snd: Sender) -> None:
    """A reduction begins (tcp_init_undo): remember where, and count the retransmissions
    already in flight, a loss probe's included, which may come back D-SACKed."""
    u = snd.undo
    u.marker = snd.snd_una
    u.retrans = snd.rtx.retrans_out + (1 if snd.tlp_high_seq is not None
                                       and snd.tlp_retrans else 0)
    if not u.retrans:
        u.retrans = -1


def on_retransmit(snd: Sender, now: float, pcount: int) -> None:
    """A record was sent again (tcp_retransmit_skb's bookkeeping): one more that a
    D-SACK must account for, and the first one stamps the episode for Eifel."""
    u = snd.undo
    if u.retrans_tsval is None:
        u.retrans_tsval = snd.rcv.ts_now(now)
    u.retrans = max(u.retrans, 0) + pcount


def any_retrans_done(snd: Sender) -> bool:
    """tcp_any_retrans_done: a retransmission in flight, or the head was ever resent."""
    rtx = snd.rtx
    return bool(rtx.retrans_out) or (bool(rtx.records) and rtx.records[0].ever_retrans)


def clear_stamp_if_clean(snd: Sender) -> None:
    """No retransmission of the episode is left: forget its stamp (tcp_try_to_open)."""
    if not any_retrans_done(snd):
        snd.undo.retrans_tsval = None


def packet_delayed(snd: Sender, tsecr: int | None) -> bool:
    """tcp_packet_delayed (RFC 3522): the ACK echoes a TSval older than the first
    retransmission, so what it acknowledges is an original; or nothing was retransmitted
    yet (with SACK: Linux 6.18 counts that as delayed too)."""
    stamp = snd.undo.retrans_tsval
    if stamp is not None:
        return bool(tsecr) and tsecr is not None and before(tsecr, stamp)
    # Without SACK, leaving recovery at high_seq clears the stamp with retransmissions
    # done (tcp_is_non_sack_preventing_reopen): no proof then.
    return snd.sack_ok or before(snd.snd_una, snd.high_seq)


def may_undo(snd: Sender, tsecr: int | None) -> bool:
    """tcp_may_undo: an episode to undo, and every retransmission D-SACKed or an
    original acknowledged."""
    u = snd.undo
    return u.marker is not None and (not u.retrans or packet_delayed(snd, tsecr))


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
    snd.undo.marker = None
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


def try_undo_recovery(snd: Sender, tsecr: int | None) -> None:
    """The episode's data is all acknowledged (tcp_try_undo_recovery): undo if it was
    spurious (TcpExtTCPFullUndo; TcpExtTCPLossUndo after an RTO), then Open."""
    if may_undo(snd, tsecr):
        undo_cwnd_reduction(snd, False)
        snd.host.counters.inc(Mib.TcpExtTCPLossUndo if snd.ccs.ca_state == CA_LOSS
                              else Mib.TcpExtTCPFullUndo)
    snd.set_ca_state(CA_OPEN)


def try_undo_dsack(snd: Sender) -> bool:
    """Every retransmission was D-SACKed (tcp_try_undo_dsack): TcpExtTCPDSACKUndo."""
    u = snd.undo
    if u.marker is not None and not u.retrans:
        undo_cwnd_reduction(snd, False)
        snd.host.counters.inc(Mib.TcpExtTCPDSACKUndo)
        return True
    return False


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
    if frto_undo or snd.sack_ok:
        snd.set_ca_state(CA_OPEN)
    return True


def dsack_seen(snd: Sender, start: int, end: int, prior_una: int) -> bool:
    """A D-SACK block arrived (tcp_check_dsack, tcp_dsack_seen): count its duplicate
    segments (TcpExtTCPDSACKRecvSegs, tcpi_dsack_dups); a block wider than any window
    or reporting more duplicates than were ever retransmitted is dubious
    (TcpExtTCPDSACKIgnoredDubious). One below SND.UNA is for data the queue no longer
    holds: it is counted against the episode's retransmissions here; one inside the
    queue is counted per record (:func:`dsack_record`). True if the block counts."""
    c = snd.host.counters
    length = (end - start) & 0xFFFFFFFF
    if not after(end, start) or length > snd.max_window:
        c.inc(Mib.TcpExtTCPDSACKIgnoredDubious)
        return False
    dup_segs = -(-length // snd.mss) if length > snd.mss else 1
    snd.dsack_dups += dup_segs
    if snd.dsack_dups > snd.total_retrans:
        c.inc(Mib.TcpExtTCPDSACKIgnoredDubious)
        return False
    c.inc(Mib.TcpExtTCPDSACKRecvSegs, dup_segs)
    u = snd.undo
    if u.marker is not None and u.retrans > 0 and before_eq(end, prior_una) \
            and after(end, u.marker):
        u.retrans = max(0, u.retrans - dup_segs)
    return True


def dsack_record(snd: Sender, rec_end: int, pcount: int) -> None:
    """A D-SACK covers a retransmitted record still in the queue (tcp_sacktag_one with
    dup_sack): one fewer retransmission of the episode unaccounted for."""
    u = snd.undo
    if u.marker is not None and u.retrans > 0 and after(rec_end, u.marker):
        u.retrans = max(0, u.retrans - pcount)
