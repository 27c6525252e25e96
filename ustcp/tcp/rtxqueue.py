"""The retransmission queue and its SACK scoreboard (Linux's tcp_rtx_queue with the
TCP_SKB_CB(skb)->sacked bits, and the counters tcp_sock keeps over them).

:class:`RtxQueue` alone writes a record's marks (``sacked``, ``lost``, ``retrans``) and the
counters over them, so that ``packets_out``, ``sacked_out``, ``lost_out`` and
``retrans_out`` always equal the sums of ``pcount`` over the records so marked, and
``highest_sack`` (Linux's tcp_highest_sack, what FACK called ``fackets``) is the end of the
highest SACKed record. The policy (which record is lost, when to retransmit) lives in
:mod:`ustcp.tcp.recovery`; this module only keeps the books.

The queue also keeps the records in send order (``tsorted``, Linux's tsorted_sent_queue,
RFC 8985's time-ordered list): each transmission appends ``(time, record)``, and an entry
whose time is no longer its record's ``xmit`` is superseded by a later retransmission.
"""

from __future__ import annotations

from collections import deque

from .seq import after, after_eq, before, before_eq, seq_add, seq_diff


class TxRecord:
    """One transmitted segment in the retransmission queue (Linux: an skb in the rtx queue
    with its TCP_SKB_CB sacked bits). Its marks are written by :class:`RtxQueue` only."""

    __slots__ = (
        "done",
        "end",
        "ever_retrans",
        "fin",
        "first_xmit",
        "lost",
        "pcount",
        "retrans",
        "sacked",
        "start",
        "syn",
        "xmit",
    )

    def __init__(self, start: int, end: int, pcount: int, now: float, *, syn: bool = False,
                 fin: bool = False) -> None:
        self.start = start
        self.end = end
        self.pcount = pcount
        self.xmit = now
        self.first_xmit = now
        self.syn = syn
        self.fin = fin
        self.sacked = False
        self.lost = False
        self.retrans = False  # retransmitted and not yet acknowledged or SACKed
        self.ever_retrans = False  # Karn's rule: no RTT sample from this record
        self.done = False  # acknowledged and gone from the retransmission queue


class RtxQueue:
    """Records sent and not yet cumulatively acknowledged, oldest first, with the
    scoreboard's counters (in packets, as Linux's tcp_sock)."""

    __slots__ = ("highest_sack", "lost_out", "packets_out", "records", "retrans_out",
                 "sacked_out", "tsorted")

    def __init__(self) -> None:
        self.records: deque[TxRecord] = deque()
        self.tsorted: deque[tuple[float, TxRecord]] = deque()  # records by send time
        self.packets_out = 0
        self.sacked_out = 0
        self.lost_out = 0
        self.retrans_out = 0
        self.highest_sack = 0  # end of the highest SACKed record

    def in_flight(self) -> int:
        """Packets in flight (tcp_packets_in_flight, RFC 6675 "pipe")."""
        return self.packets_out - (self.sacked_out + self.lost_out) + self.retrans_out

    def fack(self, snd_una: int) -> int:
        """The forward-most acknowledged sequence: the highest SACK, else SND.UNA."""
        return self.highest_sack if self.sacked_out else snd_una

    # ------------------------------------------------------------------ transmissions

    def add(self, rec: TxRecord, *, timed: bool = True) -> None:
        """A new record was sent (tcp_event_new_data_sent); ``timed`` puts it on the
        send-time list (a SYN is not: RACK never runs before the handshake)."""
        self.records.append(rec)
        if timed:
            self.tsorted.append((rec.xmit, rec))
        self.packets_out += rec.pcount

    def mark_retransmitted(self, rec: TxRecord, now: float) -> None:
        """``rec`` was sent again (the bookkeeping of tcp_retransmit_skb)."""
        if not rec.retrans:
            rec.retrans = True
            self.retrans_out += rec.pcount
        rec.ever_retrans = True
        rec.xmit = now
        self.tsorted.append((now, rec))

    def split(self, rec: TxRecord, first_len: int, mss: int) -> TxRecord:
        """Split a record after ``first_len`` bytes (tcp_fragment); the tail keeps the
        marks and is returned."""
        mid = seq_add(rec.start, first_len)
        tail_len = seq_diff(rec.end, mid) - (1 if rec.fin else 0)
        tail = TxRecord(mid, rec.end, max(1, -(-tail_len // mss)), rec.xmit, fin=rec.fin)
        tail.first_xmit = rec.first_xmit
        tail.sacked, tail.lost, tail.ever_retrans = rec.sacked, rec.lost, rec.ever_retrans
        old = rec.pcount
        rec.end, rec.fin, rec.pcount = mid, False, max(1, -(-first_len // mss))
        delta = rec.pcount + tail.pcount - old
        self.packets_out += delta
        if rec.sacked:
            self.sacked_out += delta
        if rec.lost:
            self.lost_out += delta
        if rec.retrans:
            self.retrans_out += delta
            tail.retrans = True
        records = self.records
        records.insert(records.index(rec) + 1, tail)
        # The tail was sent when the head was: it joins the send-time order right after
        # it (tcp_fragment's tcp_tsorted_anchor), or RACK could never mark it lost.
        ts = self.tsorted
        for pos in range(len(ts) - 1, -1, -1):
            if ts[pos][1] is rec:
                ts.insert(pos + 1, (ts[pos][0], tail))
                break
        return tail

    # ------------------------------------------------------------------ acknowledgment

    def pop_head(self) -> TxRecord:
        """The head is cumulatively acknowledged (tcp_clean_rtx_queue): drop it and its
        marks."""
        rec = self.records.popleft()
        rec.done = True
        pcount = rec.pcount
        self.packets_out -= pcount
        if rec.sacked:
            self.sacked_out -= pcount
        if rec.lost:
            self.lost_out -= pcount
        if rec.retrans:
            self.retrans_out -= pcount
        return rec

    def trim_head(self, rec: TxRecord, ack: int, mss: int) -> int:
        """The head is partly acknowledged up to ``ack`` (tcp_trim_head); returns the
        packets it lost."""
        remaining = seq_diff(rec.end, ack) - (1 if rec.fin else 0)
        new_pcount = max(1, -(-remaining // mss))
        delta = rec.pcount - new_pcount
        self.packets_out -= delta
        if rec.sacked:
            self.sacked_out -= delta
        if rec.lost:
            self.lost_out -= delta
        if rec.retrans:
            self.retrans_out -= delta
        rec.start = ack
        rec.pcount = new_pcount
        return delta

    def prune_tsorted(self) -> None:
        """Drop the oldest entries of the send-time list that no longer take part in loss
        detection: acknowledged, SACKed, or superseded by a retransmission."""
        ts = self.tsorted
        while ts and (ts[0][1].done or ts[0][1].sacked or ts[0][0] != ts[0][1].xmit):
            ts.popleft()

    # ------------------------------------------------------------------ SACK

    def sack_range(self, left: int, right: int, mss: int,
                   tagged: list[TxRecord]) -> int | None:
        """Tag the records inside the SACK block [left, right) (the walk of
        tcp_sacktag_walk), splitting a record that straddles the right edge at an MSS
        boundary (tcp_match_skb_to_sack); a record straddling the left edge is split and
        left for a later block or ACK. Appends the newly SACKed records to ``tagged`` and
        returns the lowest start of an original transmission SACKed below the highest
        SACK (a hole filled late: reordering, tcp_check_sack_reordering), if any."""
        reord: int | None = None
        records = self.records
        i = 0
        while i < len(records):  # by index: a split's tail is looked at next
            rec = records[i]
            i += 1
            if rec.sacked or before_eq(rec.end, left):
                continue
            if after_eq(rec.start, right):
                break
            if before(rec.start, left):
                if not before(seq_add(rec.start, mss), rec.end):
                    continue
                self.split(rec, (seq_diff(left, rec.start) // mss) * mss or mss, mss)
                continue
            if after(rec.end, right):
                cut = (seq_diff(right, rec.start) // mss) * mss
                if cut <= 0:
                    continue
                self.split(rec, cut, mss)
            if not rec.ever_retrans and self.sacked_out and before(rec.start,
                                                                   self.highest_sack):
                reord = rec.start if reord is None or before(rec.start, reord) else reord
            self.mark_sacked(rec)
            tagged.append(rec)
        return reord

    def mark_sacked(self, rec: TxRecord) -> None:
        """tcp_sacktag_one: the record reached the receiver; it is neither lost nor a
        retransmission in flight any more."""
        rec.sacked = True
        pcount = rec.pcount
        self.sacked_out += pcount
        if self.sacked_out == pcount or after(rec.end, self.highest_sack):
            self.highest_sack = rec.end
        if rec.lost:
            rec.lost = False
            self.lost_out -= pcount
        if rec.retrans:
            rec.retrans = False
            self.retrans_out -= pcount

    # ------------------------------------------------------------------ loss

    def mark_lost(self, rec: TxRecord) -> None:
        """tcp_mark_skb_lost: a lost retransmission becomes retransmittable again."""
        if not rec.lost:
            rec.lost = True
            self.lost_out += rec.pcount
        if rec.retrans:
            rec.retrans = False
            self.retrans_out -= rec.pcount

    def mark_all_lost(self) -> None:
        """The RTO's scoreboard (tcp_enter_loss, tcp_timeout_mark_lost): every record not
        SACKed is lost, and no retransmission is in flight any more."""
        for rec in self.records:
            if rec.retrans:
                rec.retrans = False
                self.retrans_out -= rec.pcount
            if not rec.sacked and not rec.lost:
                rec.lost = True
                self.lost_out += rec.pcount

    def unmark_all_lost(self) -> None:
        """A reduction proved spurious (tcp_undo_cwnd_reduction with unmark_loss):
        nothing is lost any more."""
        for rec in self.records:
            rec.lost = False
        self.lost_out = 0

    # ------------------------------------------------------------------ without SACK

    def add_reno_sack(self) -> None:
        """Without SACK, each duplicate ACK stands for one segment that left the network
        (tcp_add_reno_sack)."""
        self.sacked_out += 1
        self._limit_reno_sacked()

    def remove_reno_sacks(self, acked: int) -> None:
        """One ACK fills a hole; the rest of what it acks eats duplicate ACKs
        (tcp_remove_reno_sacks)."""
        if acked > 0:
            self.sacked_out = 0 if acked - 1 >= self.sacked_out \
                else self.sacked_out - (acked - 1)
        self._limit_reno_sacked()

    def _limit_reno_sacked(self) -> None:
        """tcp_limit_reno_sacked: at least one hole (or every lost packet) stays unSACKed."""
        holes = min(max(self.lost_out, 1), self.packets_out)
        if self.sacked_out + holes > self.packets_out:
            self.sacked_out = max(0, self.packets_out - holes)
