"""The send and receive buffers against plain byte models, across the sequence wrap: the
send buffer serves any window of what was written and not acknowledged; the receive
buffer's out-of-order ranges deliver every byte once, in order, whatever order the pieces
came in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ustcp.tcp.buffers import SKB_TRUESIZE, OfoDup, ReceiveBuffer, SendBuffer, unchangeable
from ustcp.tcp.seq import seq_add, seq_diff

DATA = bytes(range(256)) * 40  # 10,240 distinct-enough bytes


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["append", "consume", "peek"]),
                              st.integers(0, 3000), st.integers(0, 3000)), max_size=40))
def test_send_buffer_is_the_bytes_written_and_not_acknowledged(
        ops: list[tuple[str, int, int]]) -> None:
    buf = SendBuffer()
    model = b""
    written = 0
    for op, a, b in ops:
        if op == "append":
            chunk = DATA[written % len(DATA):][:a]
            buf.append(chunk)
            model += chunk
            written += len(chunk)
        elif op == "consume":
            n = min(a, len(model))
            buf.consume(n)
            model = model[n:]
        else:
            offset = min(a, len(model))
            length = min(b, len(model) - offset)
            if length:  # the sender never peeks nothing (a bare FIN or ACK)
                assert bytes(buf.peek(offset, length)) == model[offset:offset + length]
        assert len(buf) == len(model)


@settings(max_examples=200, deadline=None)
@given(rcv_nxt=st.sampled_from([0, 0xFFFFFFFF - 3000]),
       cuts=st.lists(st.integers(1, 5999), min_size=1, max_size=12, unique=True),
       order=st.randoms(use_true_random=False))
def test_out_of_order_pieces_come_out_once_and_in_order(rcv_nxt: int, cuts: list[int],
                                                        order: object) -> None:
    data = DATA[:6000]
    bounds = [0, *sorted(cuts), len(data)]
    pieces = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    order.shuffle(pieces)  # type: ignore[attr-defined]
    buf = ReceiveBuffer()
    nxt = rcv_nxt
    got = b""
    for start, end in pieces:
        seq = seq_add(rcv_nxt, start)
        if seq_diff(seq, nxt) > 0:
            assert buf.ofo_insert(nxt, seq, data[start:end]) == []
            for left, right in buf.sack_blocks(4):
                assert seq_diff(right, left) > 0 and seq_diff(left, nxt) > 0
            continue
        skip = seq_diff(nxt, seq)
        if skip >= end - start:
            continue
        buf.push(data[start + skip:end])
        nxt = seq_add(nxt, end - start - skip)
        for chunk in buf.ofo_pop_ready(nxt):
            buf.push(chunk)
            nxt = seq_add(nxt, len(chunk))
        got += buf.pull(1 << 20)
    assert got == data and nxt == seq_add(rcv_nxt, len(data))
    assert not buf.ofo and buf.ofo_bytes == 0 and len(buf) == 0


def test_a_piece_already_queued_is_a_dsack() -> None:
    buf = ReceiveBuffer()
    assert buf.ofo_insert(100, 200, DATA[:50]) == []
    # every byte was there: Linux sets the D-SACK block and drops the segment
    assert buf.ofo_insert(100, 210, DATA[10:30]) == [OfoDup(210, 230, True, True)]
    assert buf.ofo_bytes == 50 and buf.sack_blocks(4) == [(200, 250)]


def test_the_parts_of_queued_ranges_a_segment_overlaps_are_duplicates() -> None:
    """As tcp_data_queue_ofo: starting inside a range sets the block; a range the
    segment covers whole is dropped (TCPOFOMerge); the others extend the block."""
    buf = ReceiveBuffer()
    buf.ofo_insert(100, 200, DATA[:50])  # [200, 250)
    buf.ofo_insert(100, 300, DATA[:50])  # [300, 350)
    assert buf.ofo_insert(100, 240, DATA[:100]) == [
        OfoDup(240, 250, True, False), OfoDup(300, 340, False, False)]
    buf.ofo_insert(100, 400, DATA[:10])  # [400, 410)
    assert buf.ofo_insert(100, 390, DATA[:30]) == [OfoDup(400, 410, False, True)]
    assert buf.ofo_bytes == 150 + 30


def test_send_buffer_charges_each_skb_as_linux_does() -> None:
    """sk_wmem_queued: bytes plus SKB_TRUESIZE per skb; a send splits an skb (one more) or
    merges the skbs it spans; an ACK frees the skbs it covers whole."""
    buf = SendBuffer()
    buf.write(bytes(25_000), new_skb=True)
    assert buf.wmem_queued == 25_000 + SKB_TRUESIZE
    assert buf.tail_room(0, 25_000) == 0  # full
    buf.sent(0, 5_000)  # tso_fragment: [0, 5000) and [5000, 25000)
    assert buf.wmem_queued == 25_000 + 2 * SKB_TRUESIZE
    assert buf.tail_room(5_000, 30_000) == 10_000  # the unsent rest is an skb to top up
    assert buf.tail_room(6_000, 30_000) == 0  # a tail skb sent in part takes no more
    buf.write(bytes(25_000), new_skb=True)
    assert buf.tail_room(5_000, 30_000) == 5_000  # the new tail is unsent
    buf.sent(5_000, 25_000)  # takes [5000, 25000) and 5000 of the next skb
    assert buf.wmem_queued == 50_000 + 3 * SKB_TRUESIZE  # split off, merged: as many skbs
    buf.consume(4_000)  # partly acknowledged: trimmed, not freed
    assert buf.wmem_queued == 46_000 + 3 * SKB_TRUESIZE
    buf.consume(26_000)  # the first two skbs whole
    assert buf.wmem_queued == 20_000 + SKB_TRUESIZE
    buf.sent(0, 20_000)  # the rest leaves as it is: no split
    assert buf.wmem_queued == 20_000 + SKB_TRUESIZE


def test_a_write_the_app_can_change_is_copied_and_a_view_of_bytes_is_not() -> None:
    block = bytes(range(256)) * 1024
    mutable = bytearray(b"m" * 65536)
    buf = SendBuffer()
    with memoryview(block)[1024:66560] as view:  # the apps' chunks: not copied, and the
        buf.write(view, new_skb=True)  # caller may release its view once send returned
    buf.write(mutable, new_skb=True)
    buf.write(memoryview(mutable)[:4096], new_skb=True)  # a view of a bytearray: copied
    mutable[:] = b"x" * len(mutable)  # the app reuses its buffer after send() returned
    first = buf.peek(0, 65536)
    assert isinstance(first, memoryview) and first.obj is block  # no copy was made
    assert bytes(first) == block[1024:66560]
    assert bytes(buf.peek(65536, 65536 + 4096)) == b"m" * (65536 + 4096)


def test_a_view_of_bytes_in_another_format_is_kept_as_bytes_not_copied() -> None:
    block = bytes(range(256)) * 16
    words = memoryview(block).cast("H")  # what an app may hand to send_all
    kept = unchangeable(words)
    assert isinstance(kept, memoryview) and kept.obj is block
    assert kept.format == "B" and kept.ndim == 1 and bytes(kept) == block
