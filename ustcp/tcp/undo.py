"""Undo of spurious cwnd reductions: the state Linux keeps for it in tcp_sock
(undo_marker, undo_retrans, retrans_stamp as tcp_packet_delayed reads it, frto).

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

This module is the episode's state, :class:`Undo`, whose methods alone write the marker,
the count and the stamp (``frto`` is a flag: ``Sender.enter_loss`` sets it, F-RTO's steps
clear it); the decisions
(tcp_try_undo_recovery, _dsack, _loss, _partial, tcp_undo_cwnd_reduction,
tcp_check_dsack) are functions over the sender in :mod:`ustcp.tcp.recovery`, next to the
state machine that calls them.

Undoing gives back the cwnd before the cut (the congestion control's ``undo_cwnd``:
max(cwnd, prior_cwnd) for Reno and CUBIC) and ssthresh from ``prior_ssthresh``, and
withdraws a queued ECN CWR. ``prior_cwnd`` and ``prior_ssthresh`` are the congestion
state's (``CcState``), which the algorithms read.
"""

from __future__ import annotations

from .seq import after, before


class Undo:
    """One connection's undo episode (tcp_sock's undo_marker, undo_retrans, the Eifel
    role of retrans_stamp, frto)."""

    __slots__ = ("frto", "marker", "retrans", "retrans_tsval")

    def __init__(self) -> None:
        # SND.UNA when the episode began; None: nothing to undo (undo_marker == 0).
        self.marker: int | None = None
        # Retransmissions of the episode not yet D-SACKed; -1: none sent yet, so that 0
        # always means "every one was a duplicate" (undo_retrans).
        self.retrans = 0
        # The TSval of the episode's first retransmission (retrans_stamp as
        # tcp_packet_delayed reads it); None: no retransmission since it was forgotten.
        self.retrans_tsval: int | None = None
        self.frto = False  # F-RTO runs after this RTO (tp->frto)

    def start(self, snd_una: int, retrans_in_flight: int) -> None:
        """A reduction begins (tcp_init_undo): remember where, and count the
        retransmissions already in flight, which may come back D-SACKed."""
        self.marker = snd_una
        self.retrans = retrans_in_flight or -1

    def end(self) -> None:
        """Nothing of this episode may be undone any more (undo_marker = 0)."""
        self.marker = None

    def on_retransmit(self, tsval: int, pcount: int) -> None:
        """A record was sent again (tcp_retransmit_skb): one more that a D-SACK must
        account for; the first one stamps the episode with its TSval."""
        if self.retrans_tsval is None:
            self.retrans_tsval = tsval
        self.retrans = max(self.retrans, 0) + pcount

    def forget_stamp(self) -> None:
        """No retransmission of the episode is left to prove anything (retrans_stamp = 0)."""
        self.retrans_tsval = None

    def dsacked(self, end: int, segs: int) -> None:
        """``segs`` retransmitted segments ending at ``end`` were D-SACKed: if they are
        the episode's, that many fewer are unaccounted for (tcp_sacktag_one,
        tcp_check_dsack)."""
        if self.marker is not None and self.retrans > 0 and after(end, self.marker):
            self.retrans = max(0, self.retrans - segs)

    def all_dsacked(self) -> bool:
        """Every retransmission of the episode came back D-SACKed (tcp_try_undo_dsack)."""
        return self.marker is not None and not self.retrans

    def packet_delayed(self, tsecr: int | None, unstamped: bool) -> bool:
        """tcp_packet_delayed (RFC 3522): the ACK echoes a TSval older than the first
        retransmission, so it acknowledges an original. ``unstamped`` is the answer when
        nothing was retransmitted since the stamp was forgotten."""
        if self.retrans_tsval is None:
            return unstamped
        return bool(tsecr) and tsecr is not None and before(tsecr, self.retrans_tsval)

    def may_undo(self, tsecr: int | None, unstamped: bool) -> bool:
        """tcp_may_undo: an episode, and every retransmission D-SACKed or an original
        acknowledged."""
        return self.marker is not None and (not self.retrans
                                            or self.packet_delayed(tsecr, unstamped))
