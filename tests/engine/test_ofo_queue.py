"""The out-of-order queue under a hostile peer (issue 13, defect 1).

One-byte segments with a one-byte hole before each make every segment a new out-of-order
range. The queue used to re-sort and re-scan every range per segment, so 1,000 such
segments stalled the daemon for 12 s of CPU and 2,000 for 104 s; now each costs O(log n)
and the ranges are bounded by the memory charged to the receive buffer (Linux
tcp_data_queue_ofo, tcp_try_rmem_schedule, tcp_prune_ofo_queue).
"""

from __future__ import annotations

import hashlib
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustcp.config import StackConfig
from ustcp.mib import Counters
from ustcp.tcp.buffers import OFO_PIECE_OVERHEAD, ReceiveBuffer
from ustcp.tcp.connection import Connection

from .harness import A_IP, B_IP, Net
from .util import one_byte, open_pair, transfer

CPU_BUDGET = 20.0  # s for 100,000 holes, wide for a loaded CI; the old queue spent 104 s on 2,000


def inject_holes(net: Net, client: Connection, data: bytes, offsets: list[int],
                 budget: float) -> float:
    """Deliver data[off] for every offset to the server; CPU seconds it took. Fails as soon
    as the budget is spent, so the quadratic queue fails in seconds instead of hours."""
    start = time.process_time()
    for n, off in enumerate(offsets):
        net.b.on_segment(net.now, A_IP, B_IP, one_byte(client, net.now, off, data[off:off + 1]))
        if n % 1000 == 999:
            net.b.take_output()
            spent = time.process_time() - start
            if spent > budget:
                pytest.fail(f"{n + 1} holes took {spent:.1f} s of CPU")
    net.b.take_output()
    return time.process_time() - start


def test_100000_one_byte_holes_take_linear_cpu_and_stay_bounded() -> None:
    net = Net()
    _, client, server = open_pair(net)
    data = random.Random(5).randbytes(200_000)
    spent = inject_holes(net, client, data, list(range(1, 200_000, 2)), CPU_BUDGET)
    assert spent < CPU_BUDGET
    buf = server.rcv.rcv_buf
    assert buf.ofo_truesize <= server.rcv.rcvbuf
    assert len(buf.ofo) == server.rcv.rcvbuf // (1 + OFO_PIECE_OVERHEAD)  # 510 at 128 KB
    c = net.b.counters
    assert c["TcpExtTCPOFOQueue"] == len(buf.ofo)
    assert c["TcpExtTCPOFODrop"] > 0  # the rest: in the window, no memory for them
    assert c["TcpExtOfoPruned"] == 0  # each new one would land last: dropping it is cheaper
    assert transfer(net, client, server, data) == data


@pytest.mark.parametrize("order", ["descending", "random"])
def test_queue_is_pruned_from_the_top_and_data_stays_intact(order: str) -> None:
    """Holes that arrive below the queued ones prune it from the highest sequence down:
    the queue stops growing, OfoPruned is counted, and once the holes are filled the
    application gets every byte in order."""
    net = Net()
    _, client, server = open_pair(net)
    data = random.Random(6).randbytes(24_000)
    offsets = list(range(1, 24_000, 2))
    if order == "descending":
        offsets.reverse()
    else:
        random.Random(7).shuffle(offsets)
    buf = server.rcv.rcv_buf
    peak = []
    for part in range(3):
        inject_holes(net, client, data, offsets[part * 4_000:(part + 1) * 4_000], CPU_BUDGET)
        assert buf.ofo_truesize <= server.rcv.rcvbuf
        peak.append(len(buf.ofo))
    assert max(peak) <= server.rcv.rcvbuf // (1 + OFO_PIECE_OVERHEAD)
    c = net.b.counters
    assert c["TcpExtOfoPruned"] > 0 and c["TcpExtPruneCalled"] >= c["TcpExtOfoPruned"]
    assert len(buf.recent) <= 4
    received = transfer(net, client, server, data)
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(data).hexdigest()
    assert not buf.ofo and buf.ofo_bytes == 0 and buf.ofo_truesize == 0


def test_sack_blocks_put_the_latest_range_first_and_fill_from_the_lowest() -> None:
    buf = ReceiveBuffer()
    rcv_nxt = 0xFFFFFF00  # the ranges wrap past 2**32
    for off in (10, 30, 50, 70, 90, 110):
        assert buf.ofo_insert(rcv_nxt, (rcv_nxt + off) & 0xFFFFFFFF, b"ab") == []

    def rel(blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [((s - rcv_nxt) & 0xFFFFFFFF, (e - rcv_nxt) & 0xFFFFFFFF) for s, e in blocks]
    assert rel(buf.sack_blocks(4)) == [(110, 112), (90, 92), (70, 72), (50, 52)]
    # A segment joining 30 and 50 makes one range, now the latest.
    # Its bytes at 31 and 50 were queued: the D-SACK parts (the first sets the block).
    assert [((d.start - rcv_nxt) & 0xFFFFFFFF, (d.end - rcv_nxt) & 0xFFFFFFFF, d.replace)
            for d in buf.ofo_insert(rcv_nxt, (rcv_nxt + 31) & 0xFFFFFFFF, b"x" * 20)] == [
        (31, 32, True), (50, 51, False)]
    assert rel(buf.sack_blocks(4)) == [(30, 52), (110, 112), (90, 92), (70, 72)]
    # Every byte already there: a D-SACK block, nothing queued twice.
    assert [d[:2] for d in buf.ofo_insert(rcv_nxt, (rcv_nxt + 40) & 0xFFFFFFFF, b"y" * 5)] == [
        ((rcv_nxt + 40) & 0xFFFFFFFF, (rcv_nxt + 45) & 0xFFFFFFFF)]
    assert buf.ofo_bytes == 4 * 2 + 22
    # RCV.NXT reaches the first range: it leaves, the rest of the order stays.
    ready = buf.ofo_pop_ready((rcv_nxt + 10) & 0xFFFFFFFF)
    assert b"".join(ready) == b"ab"
    assert rel(buf.sack_blocks(3)) == [(30, 52), (110, 112), (90, 92)]


def test_a_small_piece_does_not_pin_its_frame() -> None:
    buf = ReceiveBuffer()
    frame = bytes(1500)
    buf.ofo_insert(0, 100, memoryview(frame)[1400:1401])
    (piece,) = buf.ofo[0].chunks
    assert isinstance(piece, bytes) and len(piece) == 1


def test_prune_keeps_what_lies_below_the_incoming_segment() -> None:
    """tcp_prune_ofo_queue stops at a piece that starts below the incoming segment."""
    config = StackConfig(tcp_rmem=(4096, 8192, 8192))
    buf = ReceiveBuffer()
    c = Counters()
    n = 0
    while buf.ofo_schedule(0, 10 + 2 * n, 1, config.tcp_rmem[1], c):
        buf.ofo_insert(0, 10 + 2 * n, b"z")
        n += 1
    assert n == 8192 // (1 + OFO_PIECE_OVERHEAD)
    assert c["TcpExtOfoPruned"] == 0 and c["TcpExtRcvPruned"] == 1
    # One below them all: the top eighth of the buffer goes, and it fits.
    assert buf.ofo_schedule(0, 5, 1, 8192, c)
    assert c["TcpExtOfoPruned"] == 1
    assert len(buf.ofo) == n - -(-(8192 >> 3) // (1 + OFO_PIECE_OVERHEAD))
    assert buf.ofo[-1].start == 10 + 2 * (len(buf.ofo) - 1)  # the lowest ones kept


STREAM = bytes(random.Random(9).randbytes(4096))


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 600), st.integers(1, 80)), max_size=60),
       base=st.sampled_from((0, 0xFFFFFF00, 0x7FFFFFF0)))
def test_ofo_queue_matches_a_byte_map(ops: list[tuple[int, int]], base: int) -> None:
    """Segments of one stream at random offsets (overlapping, adjacent, duplicate, some
    reaching RCV.NXT) against a map of which bytes are held: the ranges, their counts,
    the duplicate parts reported for D-SACK and the bytes delivered all agree with it."""
    buf = ReceiveBuffer()
    held: set[int] = set()
    rcv_nxt = 0
    delivered = bytearray()
    for off, size in ops:
        start, end = max(off, rcv_nxt), off + size
        if start >= end:
            continue
        if start > rcv_nxt:
            dup = all(i in held for i in range(start, end))
            dsack = buf.ofo_insert((base + rcv_nxt) & 0xFFFFFFFF, (base + start) & 0xFFFFFFFF,
                                   STREAM[start:end])
            assert (len(dsack) == 1 and dsack[0][:2] == ((base + start) & 0xFFFFFFFF, (
                base + end) & 0xFFFFFFFF)) == dup
            # the duplicate parts are exactly the bytes that were held
            assert {i for d in dsack for i in range((d.start - base) & 0xFFFFFFFF,
                                                    (d.end - base) & 0xFFFFFFFF)} == {
                i for i in range(start, end) if i in held}
            held.update(range(start, end))
        else:  # in order: deliver it and whatever it joins
            delivered += STREAM[start:end]
            rcv_nxt = end
            for chunk in buf.ofo_pop_ready((base + rcv_nxt) & 0xFFFFFFFF):
                delivered += chunk
                rcv_nxt += len(chunk)
            held = {i for i in held if i >= rcv_nxt}
        ranges = []
        for i in sorted(held):
            if ranges and ranges[-1][1] == i:
                ranges[-1][1] = i + 1
            else:
                ranges.append([i, i + 1])
        got = [[(b.start - base) & 0xFFFFFFFF, (b.end - base) & 0xFFFFFFFF] for b in buf.ofo]
        assert got == ranges
        assert buf.ofo_bytes == len(held)
        assert b"".join(b"".join(blk.chunks) for blk in buf.ofo) == b"".join(
            STREAM[s:e] for s, e in ranges)
        assert len(buf.sack_blocks(4)) == min(4, len(ranges))
    assert bytes(delivered) == STREAM[:rcv_nxt]
