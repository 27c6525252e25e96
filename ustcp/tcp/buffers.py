"""Send and receive buffers without per-byte Python work.

The send buffer holds the bytes from SND.UNA onward as a queue of immutable chunks, so a
segment of up to 64 KB is a memoryview slice of one chunk (no copy) or one join across
chunks. The receive buffer keeps in-order data as chunks for the application and
out-of-order data as sorted, non-overlapping ranges (RFC 9293 3.10.7.4, "segment text";
Linux tcp_data_queue_ofo), from which SACK blocks are derived (RFC 2018 section 4).
"""

from __future__ import annotations

from collections import deque

from .seq import after, seq_add, seq_diff

_COALESCE = 16384  # small writes are gathered into one chunk up to this size


class SendBuffer:
    """Bytes not yet acknowledged: [SND.UNA, SND.UNA + len)."""

    __slots__ = ("_chunks", "_head", "_len", "_tail")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._head = 0  # bytes of _chunks[0] already acknowledged
        self._tail = bytearray()  # small writes, frozen into a chunk before slicing
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def append(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if not n:
            return
        if n < _COALESCE:
            self._tail += data
            if len(self._tail) >= _COALESCE:
                self._freeze()
        else:
            self._freeze()
            self._chunks.append(bytes(data))
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
        n += self._head
        self._freeze()
        while self._chunks and n >= len(self._chunks[0]):
            n -= len(self._chunks.popleft())
        self._head = n


class OfoBlock:
    """One contiguous out-of-order range [start, end) held as a list of pieces."""

    __slots__ = ("chunks", "end", "start")

    def __init__(self, start: int, end: int, chunks: list[bytes | memoryview]) -> None:
        self.start = start
        self.end = end
        self.chunks = chunks


class ReceiveBuffer:
    """In-order bytes for the application plus an out-of-order queue keyed by sequence."""

    __slots__ = ("_chunks", "_len", "ofo", "ofo_bytes", "recent")

    def __init__(self) -> None:
        self._chunks: deque[bytes | memoryview] = deque()
        self._len = 0
        self.ofo: list[OfoBlock] = []  # sorted, disjoint, non-adjacent
        self.ofo_bytes = 0
        self.recent: list[OfoBlock] = []  # most recently extended first (RFC 2018 4)

    def __len__(self) -> int:
        return self._len

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

    def ofo_insert(self, rcv_nxt: int, seq: int,
                   data: bytes | memoryview) -> tuple[int, int] | None:
        """Queue [seq, seq+len) beyond RCV.NXT, keeping data already queued where they
        overlap (Linux tcp_data_queue_ofo). Returns the range as a D-SACK block (RFC 2883)
        when every byte of it was already queued, else None."""
        s = seq_diff(seq, rcv_nxt)
        e = s + len(data)
        cursor = s
        pieces: list[tuple[int, int]] = []
        for blk in self.ofo:
            bs, be = seq_diff(blk.start, rcv_nxt), seq_diff(blk.end, rcv_nxt)
            if be <= cursor:
                continue
            if bs >= e:
                break
            if bs > cursor:
                pieces.append((cursor, bs))
            cursor = max(cursor, be)
            if cursor >= e:
                break
        if cursor < e:
            pieces.append((cursor, e))
        if not pieces:
            return seq, seq_add(seq, len(data))
        view = memoryview(data)
        newest: OfoBlock | None = None
        for ps, pe in pieces:
            blk = OfoBlock(seq_add(rcv_nxt, ps), seq_add(rcv_nxt, pe), [view[ps - s:pe - s]])
            self.ofo_bytes += pe - ps
            self.ofo.append(blk)
            newest = newest or blk
        self.ofo.sort(key=lambda b: seq_diff(b.start, rcv_nxt))
        self._coalesce(newest)
        return None

    def _coalesce(self, newest: OfoBlock | None) -> None:
        merged: list[OfoBlock] = []
        absorbed: dict[int, OfoBlock] = {}
        for blk in self.ofo:
            if merged and merged[-1].end == blk.start:
                merged[-1].chunks.extend(blk.chunks)
                merged[-1].end = blk.end
                absorbed[id(blk)] = merged[-1]
            else:
                merged.append(blk)
        self.ofo = merged
        recent: list[OfoBlock] = []
        for blk in ([newest] if newest else []) + self.recent:
            survivor = absorbed.get(id(blk), blk)
            if all(survivor is not r for r in recent):
                recent.append(survivor)
        self.recent = recent

    def ofo_pop_ready(self, rcv_nxt: int) -> list[bytes | memoryview]:
        """Remove the queued data that RCV.NXT has reached, trimmed to start at RCV.NXT."""
        out: list[bytes | memoryview] = []
        while self.ofo and not after(self.ofo[0].start, rcv_nxt):
            blk = self.ofo.pop(0)
            self.ofo_bytes -= seq_diff(blk.end, blk.start)
            self.recent = [b for b in self.recent if b is not blk]
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
        return out

    def ofo_purge(self) -> int:
        """Drop the whole out-of-order queue (memory pressure, Linux tcp_prune_ofo_queue)."""
        n = self.ofo_bytes
        self.ofo.clear()
        self.recent.clear()
        self.ofo_bytes = 0
        return n

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` SACK blocks, the most recently updated first (RFC 2018 4)."""
        blocks = [(b.start, b.end) for b in self.recent]
        blocks += [(b.start, b.end) for b in self.ofo if b not in self.recent]
        return blocks[:limit]
