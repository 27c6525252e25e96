"""Send and receive buffers without per-byte Python work.

The send buffer holds the bytes from SND.UNA onward as a queue of immutable chunks, so a
segment of up to 64 KB is a memoryview slice of one chunk (no copy) or one join across
chunks. It also keeps where Linux's skbs would begin and end over those bytes, because Linux
charges each skb's overhead to the send buffer (sk_wmem_queued; see :class:`SendBuffer`).
The receive buffer keeps in-order data as chunks for the application and out-of-order data
as sorted, non-overlapping ranges (RFC 9293 3.10.7.4, "segment text"; Linux
tcp_data_queue_ofo), from which SACK blocks are derived (RFC 2018 section 4).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from typing import TYPE_CHECKING, Final, NamedTuple, cast

from ..mib import Mib
from .seq import after, seq_add, seq_diff

if TYPE_CHECKING:
    from ..mib import Counters

_COALESCE: Final = 16384  # small writes are gathered into one chunk up to this size
TCP_NUM_SACKS: Final = 4  # SACK blocks a receiver remembers (Linux tp->selective_acks)
# What holding one out-of-order piece costs besides its bytes: a memoryview or small bytes,
# its deque slot, a share of its range (CPython); the analogue of the sk_buff overhead in an
# skb's truesize, charged to the receive buffer so that 1-byte pieces cost what they hold.
OFO_PIECE_OVERHEAD: Final = 256
# What one skb of the write or retransmission queue costs besides its bytes: the truesize of
# an empty TCP skb (head, sk_buff, shared info) that tcp_stream_alloc_skb, tso_fragment and
# tcp_fragment charge to sk_wmem_queued. Measured on Linux 6.18 x86_64 with SO_MEMINFO: each
# new skb adds 832 to SK_MEMINFO_WMEM_QUEUED besides the bytes copied into it.
SKB_TRUESIZE: Final = 832


def unchangeable(data: bytes | bytearray | memoryview) -> bytes | memoryview:
    """``data`` as the send path keeps it until it is acknowledged: no copy when nobody
    can change the bytes (bytes, or a contiguous view of bytes, as a flat byte view of our
    own, which the caller's ``release()`` of its view leaves intact: the apps' chunks of a
    constant block), else a copy. Not copying a bulk sender's 256 KB chunks saved one of
    its three copies of every byte (perf, chargen: 19 % of the daemon's samples were that
    copy)."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, memoryview) and isinstance(data.obj, bytes) and data.contiguous:
        return data.cast("B")
    return bytes(data)


class SendBuffer:
    """Bytes not yet acknowledged: [SND.UNA, SND.UNA + len), and the skbs Linux would hold
    them in. Linux charges each skb's truesize to the send buffer (sk_wmem_queued): its
    bytes plus :data:`SKB_TRUESIZE`. A write fills the unsent tail skb up to the size goal
    and starts another only while sk_wmem_queued < sk_sndbuf (tcp_sendmsg_locked); sending
    part of an skb splits it (tso_fragment, tcp_fragment: one more skb); a packet that takes
    bytes of the next skb merges them (tcp_grow_skb: an skb emptied so is freed); an ACK
    frees the skbs it covers whole. Positions here are byte counts since the buffer's first
    byte (``_base`` is where SND.UNA is), so they never wrap."""

    __slots__ = ("_base", "_chunks", "_ends", "_head", "_len", "_tail")

    def __init__(self) -> None:
        self._chunks: deque[bytes | memoryview] = deque()
        self._head = 0  # bytes of _chunks[0] already acknowledged
        self._tail = bytearray()  # small writes, frozen into a chunk before slicing
        self._len = 0
        self._base = 0  # stream position of SND.UNA's byte
        self._ends: deque[int] = deque()  # stream position after each skb, ascending

    def __len__(self) -> int:
        return self._len

    @property
    def wmem_queued(self) -> int:
        """sk_wmem_queued: the bytes held plus each skb's own truesize."""
        return self._len + SKB_TRUESIZE * len(self._ends)

    def tail_room(self, unsent: int, size_goal: int) -> int:
        """How many bytes the unsent tail skb may still take (size_goal less its length),
        0 when there is none; ``unsent`` is the offset of SND.NXT in the buffer."""
        if not self._ends:
            return 0
        start = self._ends[-2] if len(self._ends) > 1 else self._base
        if start < self._base + unsent:
            return 0  # the tail skb has been sent (in part): a write starts a new one
        return max(0, size_goal - (self._ends[-1] - start))

    def write(self, data: bytes | bytearray | memoryview, new_skb: bool) -> None:
        """Append a write's bytes: into a new skb, or onto the tail skb."""
        self.append(data)
        end = self._base + self._len
        if new_skb or not self._ends:
            self._ends.append(end)
        else:
            self._ends[-1] = end

    def sent(self, offset: int, length: int) -> None:
        """[offset, offset + length) leaves as one packet: one skb, merged from the skbs it
        spans (tcp_grow_skb), split from the rest of the last (tso_fragment)."""
        start = self._base + offset
        end = start + length
        ends = self._ends
        i = bisect_right(ends, start)  # the first skb ending after start
        while i < len(ends) and ends[i] < end:
            del ends[i]  # an skb emptied into the packet's: freed
        if i < len(ends) and ends[i] > end:
            ends.insert(i, end)  # the rest of the last skb is one more skb

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes outside any skb's accounting (the SYN's data of a Fast Open child)."""
        n = len(data)
        if not n:
            return
        if n < _COALESCE:
            self._tail += data
            if len(self._tail) >= _COALESCE:
                self._freeze()
        else:
            self._freeze()
            self._chunks.append(unchangeable(data))
        self._len += n

    def _freeze(self) -> None:
        if self._tail:
            self._chunks.append(bytes(self._tail))
            self._tail = bytearray()

    def peek(self, offset: int, length: int) -> bytes | memoryview:
        """``length`` bytes starting ``offset`` bytes after SND.UNA."""
        if offset + length > self._len or length <= 0:
            raise ValueError("peek beyond the send buffer")
        self._freeze()
        pos = offset + self._head
        for chunk in self._chunks:
            size = len(chunk)
            if pos < size:
                if pos + length <= size:
                    return memoryview(chunk)[pos:pos + length]
                break
            pos -= size
        return self._gather(offset, length)

    def _gather(self, offset: int, length: int) -> bytes:
        parts: list[memoryview] = []
        pos = offset + self._head
        remaining = length
        for chunk in self._chunks:
            size = len(chunk)
            if pos >= size:
                pos -= size
                continue
            take = min(size - pos, remaining)
            parts.append(memoryview(chunk)[pos:pos + take])
            remaining -= take
            pos = 0
            if not remaining:
                break
        return b"".join(parts)

    def consume(self, n: int) -> None:
        """Drop ``n`` acknowledged bytes from the front."""
        if n > self._len:
            raise ValueError("acknowledging more than the send buffer holds")
        self._len -= n
        self._base += n
        while self._ends and self._ends[0] <= self._base:
            self._ends.popleft()  # an skb acknowledged whole is freed
        n += self._head
        self._freeze()
        while self._chunks and n >= len(self._chunks[0]):
            n -= len(self._chunks.popleft())
        self._head = n


class OfoDup(NamedTuple):
    """Bytes of an out-of-order segment that were already queued, as Linux's
    tcp_data_queue_ofo reports them for D-SACK (RFC 2883)."""

    start: int
    end: int
    replace: bool  # Linux starts the D-SACK block with it (tcp_dsack_set), else extends it
    dropped: bool  # Linux drops a whole skb for it (TcpExtTCPOFOMerge)


class OfoBlock:
    """One contiguous out-of-order range [start, end) held as a deque of pieces in order."""

    __slots__ = ("chunks", "end", "start")

    def __init__(self, start: int, end: int, chunks: deque[bytes | memoryview]) -> None:
        self.start = start
        self.end = end
        self.chunks = chunks


def _hold(piece: memoryview) -> bytes | memoryview:
    """A piece of a segment to keep: a copy when it is less than half the buffer it views,
    so that a few bytes queued never pin a whole frame (Linux charges an skb's truesize,
    the buffer it holds, and collapses small skbs under pressure for the same reason)."""
    if piece.nbytes * 2 < memoryview(piece.obj).nbytes:
        return bytes(piece)
    return piece


class ReceiveBuffer:
    """In-order bytes for the application plus an out-of-order queue keyed by sequence.

    The out-of-order queue (Linux tp->out_of_order_queue, an rbtree) is a list of disjoint,
    non-adjacent ranges sorted by their distance from RCV.NXT (an order RCV.NXT's advance
    never changes), found by bisection; a segment beyond the last range is appended without
    a search (Linux's ooo_last_skb fast path). Each piece held is charged its bytes plus
    :data:`OFO_PIECE_OVERHEAD` (``ofo_truesize``, as Linux charges skb->truesize to
    sk_rmem_alloc), and :meth:`ofo_schedule` prunes the queue from the top when the charge
    would pass the receive buffer, so the number of ranges is bounded by SO_RCVBUF.
    """

    __slots__ = ("_chunks", "_len", "ofo", "ofo_bytes", "ofo_pieces", "recent")

    def __init__(self) -> None:
        self._chunks: deque[bytes | memoryview] = deque()
        self._len = 0
        self.ofo: list[OfoBlock] = []  # sorted from RCV.NXT, disjoint, non-adjacent
        self.ofo_bytes = 0
        self.ofo_pieces = 0
        # At most TCP_NUM_SACKS ranges, the most recently extended first (RFC 2018 4;
        # Linux tp->selective_acks).
        self.recent: list[OfoBlock] = []

    def __len__(self) -> int:
        return self._len

    @property
    def ofo_truesize(self) -> int:
        """Memory the out-of-order queue is charged (its skbs' truesize in Linux)."""
        return self.ofo_bytes + self.ofo_pieces * OFO_PIECE_OVERHEAD

    def push(self, data: bytes | memoryview) -> None:
        if data:
            self._chunks.append(data)
            self._len += len(data)

    def pull(self, max_bytes: int) -> bytes:
        parts: list[bytes | memoryview] = []
        remaining = max_bytes
        while remaining and self._chunks:
            chunk = self._chunks[0]
            if len(chunk) <= remaining:
                parts.append(self._chunks.popleft())
                remaining -= len(chunk)
            else:
                view = memoryview(chunk)
                parts.append(view[:remaining])
                self._chunks[0] = view[remaining:]
                remaining = 0
        self._len -= max_bytes - remaining
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return b"".join(parts)

    def discard(self) -> int:
        """Drop all unread in-order data (the application closed); returns how much."""
        n = self._len
        self._chunks.clear()
        self._len = 0
        return n

    def ofo_schedule(self, rcv_nxt: int, seq: int, length: int, rcvbuf: int,
                     counters: Counters) -> bool:
        """Whether ``length`` bytes at ``seq`` may join the out-of-order queue (Linux
        tcp_try_rmem_schedule): everything held is charged against ``rcvbuf``; when the new
        piece would pass it, the queue is pruned from the top (:meth:`ofo_prune`). False
        means drop the segment (the caller counts TcpExtTCPOFODrop)."""
        need = length + OFO_PIECE_OVERHEAD
        if self._len + self.ofo_truesize + need <= rcvbuf:
            return True
        counters.inc(Mib.TcpExtPruneCalled)
        if self.ofo_prune(rcv_nxt, seq, rcvbuf, need):
            counters.inc(Mib.TcpExtOfoPruned)
        if self._len + self.ofo_truesize + need <= rcvbuf:
            return True
        counters.inc(Mib.TcpExtRcvPruned)
        return False

    def ofo_prune(self, rcv_nxt: int, seq: int, rcvbuf: int, need: int) -> bool:
        """Drop queued pieces from the highest sequence down (Linux tcp_prune_ofo_queue),
        an eighth of ``rcvbuf`` at a time, until ``need`` more fits; never a piece that
        starts below ``seq`` (a segment that would land last is the one to drop). Resets
        the SACK blocks as Linux does (tcp_sack_reset). Returns whether anything went."""
        ofo = self.ofo
        s = seq_diff(seq, rcv_nxt)
        goal = rcvbuf >> 3
        pruned = False
        while ofo:
            blk = ofo[-1]
            size = len(blk.chunks[-1])
            if s > seq_diff(blk.end, rcv_nxt) - size:
                break
            blk.chunks.pop()
            blk.end = seq_add(blk.end, -size)
            self.ofo_bytes -= size
            self.ofo_pieces -= 1
            if not blk.chunks:
                ofo.pop()
            pruned = True
            goal -= size + OFO_PIECE_OVERHEAD
            if goal <= 0 or not ofo:
                if self._len + self.ofo_truesize + need <= rcvbuf:
                    break
                goal = rcvbuf >> 3
        if pruned:
            self.recent.clear()
        return pruned

    def ofo_insert(self, rcv_nxt: int, seq: int,
                   data: bytes | memoryview) -> list[OfoDup]:
        """Queue [seq, seq+len) beyond RCV.NXT, keeping data already queued where they
        overlap (Linux tcp_data_queue_ofo). Returns the parts that were already queued,
        in sequence order, as tcp_data_queue_ofo reports them for D-SACK (RFC 2883; see
        :class:`OfoDup`). O(log n) to find the place, plus the ranges the segment joins
        (each joined once, the smaller into the larger)."""
        ofo = self.ofo
        s = seq_diff(seq, rcv_nxt)
        e = s + len(data)
        last_end = seq_diff(ofo[-1].end, rcv_nxt) if ofo else 0
        if s >= last_end:
            # At or beyond the end of the last range: Linux's ooo_last_skb fast path.
            piece = _hold(memoryview(data))
            self.ofo_bytes += e - s
            self.ofo_pieces += 1
            if ofo and s == last_end:
                blk = ofo[-1]
                blk.chunks.append(piece)
                blk.end = seq_add(rcv_nxt, e)
            else:
                blk = OfoBlock(seq, seq_add(rcv_nxt, e), deque((piece,)))
                ofo.append(blk)
            if not self.recent or self.recent[0] is not blk:
                self._sack_first(blk, [])
            return []
        # The first range that ends at or after s, then every range that starts at or
        # before e: these overlap or touch the segment and become one range with it.
        i = bisect_left(ofo, s, key=lambda b: seq_diff(b.end, rcv_nxt))
        j = i
        while j < len(ofo) and seq_diff(ofo[j].start, rcv_nxt) <= e:
            j += 1
        view = memoryview(data)
        parts: list[OfoBlock | bytes | memoryview] = []
        dups: list[OfoDup] = []
        cursor = s
        for k in range(i, j):
            blk = ofo[k]
            bs = seq_diff(blk.start, rcv_nxt)
            be = seq_diff(blk.end, rcv_nxt)
            if bs > cursor and cursor < e:
                parts.append(_hold(view[cursor - s:min(bs, e) - s]))
            parts.append(blk)
            if bs < e and be > s:
                dups.append(OfoDup(seq_add(rcv_nxt, max(s, bs)), seq_add(rcv_nxt, min(e, be)),
                                   not dups and (bs < s or e <= be),
                                   (bs <= s and e <= be) or (s <= bs and be <= e)))
            cursor = max(cursor, be)
        if cursor < e:
            parts.append(_hold(view[cursor - s:]))
        added = len(parts) - (j - i)
        if not added:
            # Every byte was queued: the range holding them is the latest SACK (Linux's
            # tcp_sack_new_ofo_skb for the dropped segment).
            self._sack_first(ofo[i], [])
            return dups
        start = min(s, seq_diff(ofo[i].start, rcv_nxt)) if i < j else s
        self.ofo_pieces += added
        self.ofo_bytes += e - s - sum(
            min(e, seq_diff(b.end, rcv_nxt)) - max(s, seq_diff(b.start, rcv_nxt))
            for b in ofo[i:j])
        merged = _join(parts)
        merged.start = seq_add(rcv_nxt, start)
        merged.end = seq_add(rcv_nxt, max(e, cursor))
        absorbed = [b for b in ofo[i:j] if b is not merged]
        ofo[i:j] = [merged]
        self._sack_first(merged, absorbed)
        return dups

    def _sack_first(self, blk: OfoBlock, absorbed: list[OfoBlock]) -> None:
        """SACK order (Linux tcp_sack_new_ofo_skb): the range just extended first, the
        ranges it absorbed gone, at most TCP_NUM_SACKS kept."""
        rest = [b for b in self.recent if b is not blk and all(b is not a for a in absorbed)]
        self.recent = [blk, *rest[:TCP_NUM_SACKS - 1]]

    def ofo_pop_ready(self, rcv_nxt: int) -> list[bytes | memoryview]:
        """Remove the queued data that RCV.NXT has reached, trimmed to start at RCV.NXT."""
        out: list[bytes | memoryview] = []
        ofo = self.ofo
        n = 0
        while n < len(ofo) and not after(ofo[n].start, rcv_nxt):
            blk = ofo[n]
            n += 1
            self.ofo_bytes -= seq_diff(blk.end, blk.start)
            self.ofo_pieces -= len(blk.chunks)
            if not after(blk.end, rcv_nxt):
                continue
            skip = seq_diff(rcv_nxt, blk.start)
            for chunk in blk.chunks:
                if skip >= len(chunk):
                    skip -= len(chunk)
                    continue
                out.append(memoryview(chunk)[skip:] if skip else chunk)
                skip = 0
            rcv_nxt = blk.end
        if n:
            popped = ofo[:n]
            del ofo[:n]
            self.recent = [b for b in self.recent if all(b is not p for p in popped)]
        return out

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` SACK blocks: the most recently extended ranges first (RFC 2018 4),
        then the lowest ranges not among them."""
        recent = self.recent
        blocks = [(b.start, b.end) for b in recent[:limit]]
        for b in self.ofo:
            if len(blocks) >= limit:
                break
            if all(b is not r for r in recent):
                blocks.append((b.start, b.end))
        return blocks


def _join(parts: list[OfoBlock | bytes | memoryview]) -> OfoBlock:
    """One range from ranges and pieces in sequence order: the pieces of the others move
    into the largest range's deque (so a piece moves O(log n) times at most)."""
    best = -1
    for k, part in enumerate(parts):
        if isinstance(part, OfoBlock) and (best < 0 or len(part.chunks) > len(
                cast(OfoBlock, parts[best]).chunks)):
            best = k
    base = cast(OfoBlock, parts[best]) if best >= 0 else OfoBlock(0, 0, deque())
    chunks = base.chunks
    for part in reversed(parts[:best] if best >= 0 else []):
        if isinstance(part, OfoBlock):
            chunks.extendleft(reversed(part.chunks))
        else:
            chunks.appendleft(part)
    for part in parts[best + 1:]:
        if isinstance(part, OfoBlock):
            chunks.extend(part.chunks)
        else:
            chunks.append(part)
    return base
