"""The retransmission queue and SACK scoreboard on its own: the counters always equal the
sums over the marked records, whatever sequence of sends, SACKs, losses, retransmissions
and ACKs it sees, across the sequence-number wrap."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from ustcp.tcp.rtxqueue import RtxQueue, TxRecord
from ustcp.tcp.seq import after, seq_add, seq_diff

MSS = 1000


def check(q: RtxQueue) -> None:
    recs = list(q.records)
    assert q.packets_out == sum(r.pcount for r in recs)
    assert q.sacked_out == sum(r.pcount for r in recs if r.sacked)
    assert q.lost_out == sum(r.pcount for r in recs if r.lost)
    assert q.retrans_out == sum(r.pcount for r in recs if r.retrans)
    for a, b in itertools.pairwise(recs):
        assert a.end == b.start  # contiguous, in sequence order
    for r in recs:
        assert not (r.sacked and (r.lost or r.retrans))
        assert r.pcount == max(1, -(-seq_diff(r.end, r.start) // MSS))
    if q.sacked_out:
        assert q.highest_sack == max((r.end for r in recs if r.sacked),
                                     key=lambda e: seq_diff(e, recs[0].start))
    # A retransmission of a record not marked lost (a loss probe) counts twice, as in
    # Linux: the original may still be in the network.
    assert 0 <= q.in_flight() <= q.packets_out + q.retrans_out


def filled(start: int, sizes: list[int], now: float = 0.0) -> RtxQueue:
    q = RtxQueue()
    seq = start
    for size in sizes:
        end = seq_add(seq, size)
        q.add(TxRecord(seq, end, max(1, -(-size // MSS)), now))
        seq = end
    return q


def test_add_and_in_flight() -> None:
    q = filled(0, [1000, 3000, 500])
    assert (q.packets_out, q.in_flight(), len(q.tsorted)) == (5, 5, 3)
    check(q)


def test_sack_range_splits_at_the_right_edge_and_sets_highest_sack() -> None:
    q = filled(0, [3000, 1000])
    tagged: list[TxRecord] = []
    assert q.sack_range(0, 2000, MSS, tagged) is None
    assert [(r.start, r.end) for r in tagged] == [(0, 2000)]
    assert [(r.start, r.end, r.sacked) for r in q.records] == [
        (0, 2000, True), (2000, 3000, False), (3000, 4000, False)]
    assert (q.sacked_out, q.highest_sack, q.in_flight()) == (2, 2000, 2)
    check(q)


def test_sack_below_highest_sack_reports_reordering() -> None:
    q = filled(0, [1000] * 4)
    q.sack_range(2000, 4000, MSS, [])
    assert q.highest_sack == 4000
    assert q.sack_range(1000, 2000, MSS, []) == 1000  # an original filled a hole late
    q.mark_retransmitted(q.records[0], 1.0)
    assert q.sack_range(0, 1000, MSS, []) is None  # a retransmission: no evidence
    check(q)


def test_sacked_record_stops_being_lost_or_in_retransmission() -> None:
    q = filled(0, [1000] * 3)
    q.mark_lost(q.records[1])
    q.mark_retransmitted(q.records[1], 1.0)
    assert (q.lost_out, q.retrans_out, q.in_flight()) == (1, 1, 3)
    q.sack_range(1000, 2000, MSS, [])
    assert (q.sacked_out, q.lost_out, q.retrans_out, q.in_flight()) == (1, 0, 0, 2)
    check(q)


def test_mark_lost_of_a_retransmission_makes_it_retransmittable() -> None:
    q = filled(0, [1000])
    rec = q.records[0]
    q.mark_lost(rec)
    q.mark_retransmitted(rec, 1.0)
    q.mark_lost(rec)
    assert (rec.lost, rec.retrans, rec.ever_retrans) == (True, False, True)
    assert (q.lost_out, q.retrans_out) == (1, 0)
    check(q)


def test_mark_all_lost_keeps_sacked_records() -> None:
    q = filled(0, [1000] * 4)
    q.sack_range(1000, 2000, MSS, [])
    q.mark_retransmitted(q.records[0], 1.0)
    q.mark_all_lost()
    assert [(r.sacked, r.lost, r.retrans) for r in q.records] == [
        (False, True, False), (True, False, False), (False, True, False),
        (False, True, False)]
    assert (q.lost_out, q.retrans_out, q.in_flight()) == (3, 0, 0)
    check(q)


def test_trim_and_pop_head_drop_the_marks() -> None:
    q = filled(0, [3000, 1000])
    q.mark_lost(q.records[0])
    q.mark_retransmitted(q.records[0], 1.0)
    assert q.trim_head(q.records[0], 1500, MSS) == 1  # 1500 bytes left: 2 packets
    assert (q.records[0].start, q.records[0].pcount, q.lost_out, q.retrans_out) == (
        1500, 2, 2, 2)
    rec = q.pop_head()
    assert rec.done and (q.packets_out, q.lost_out, q.retrans_out) == (1, 0, 0)
    check(q)


def test_split_keeps_marks_on_both_halves() -> None:
    q = filled(0, [4000])
    q.mark_lost(q.records[0])
    q.mark_retransmitted(q.records[0], 1.0)
    tail = q.split(q.records[0], 1000, MSS)
    assert (tail.start, tail.end, tail.pcount, tail.lost, tail.retrans) == (
        1000, 4000, 3, True, True)
    assert (q.packets_out, q.lost_out, q.retrans_out) == (4, 4, 4)
    check(q)


def test_prune_tsorted_drops_acked_sacked_and_superseded_entries() -> None:
    q = filled(0, [1000] * 3)
    q.mark_retransmitted(q.records[0], 1.0)  # its first entry is superseded
    q.sack_range(1000, 2000, MSS, [])
    q.prune_tsorted()
    assert [(t, r.start) for t, r in q.tsorted] == [(0.0, 2000), (1.0, 0)]
    q.pop_head()
    q.pop_head()
    q.pop_head()
    q.prune_tsorted()
    assert not q.tsorted and not q.records


def test_reno_sacks_leave_one_hole() -> None:
    q = filled(0, [1000] * 3)
    for _ in range(5):
        q.add_reno_sack()
    assert q.sacked_out == 2  # never every packet: the head is the hole
    q.remove_reno_sacks(2)  # one packet fills the hole, one eats a dupack
    assert q.sacked_out == 1
    q.remove_reno_sacks(5)
    assert q.sacked_out == 0


_ops = st.lists(st.tuples(st.sampled_from(["sack", "lost", "retrans", "ack", "all_lost",
                                           "split", "send"]),
                          st.integers(0, 12_000), st.integers(1, 4000)),
                max_size=40)


@settings(max_examples=300, deadline=None)
@given(start=st.sampled_from([0, 0xFFFFFFFF - 5000, 0xFFFFF000]), ops=_ops)
def test_counters_equal_the_sums_over_the_marks(start: int, ops: list[tuple[str, int, int]]
                                                ) -> None:
    q = filled(start, [1000, 2500, 1000, 4000, 700])
    nxt = seq_add(start, 9200)
    una = start
    for t, (op, off, length) in enumerate(ops):
        recs = list(q.records)
        pick = recs[off % len(recs)] if recs else None
        if op == "sack" and recs:
            left = seq_add(una, off)
            q.sack_range(left, seq_add(left, length), MSS, [])
        elif op == "lost" and pick is not None and not pick.sacked:
            q.mark_lost(pick)
        elif op == "retrans" and pick is not None and not pick.sacked:
            q.mark_retransmitted(pick, float(t))
        elif op == "all_lost":
            q.mark_all_lost()
        elif op == "split" and pick is not None and pick.pcount > 1:
            q.split(pick, MSS, MSS)
        elif op == "send":
            end = seq_add(nxt, length)
            q.add(TxRecord(nxt, end, max(1, -(-length // MSS)), float(t)))
            nxt = end
        elif op == "ack" and recs:
            ack = seq_add(una, off % (seq_diff(nxt, una) + 1))
            while q.records and not after(q.records[0].end, ack):
                q.pop_head()
            if q.records and after(ack, q.records[0].start):
                q.trim_head(q.records[0], ack, MSS)
            una = ack
        check(q)
        q.prune_tsorted()
        assert not q.tsorted or not q.tsorted[0][1].done
