"""IPv4 and IPv6 reassembly as Linux bounds it (net/ipv4/inet_fragment.c, ip_fragment.c,
net/ipv6/reassembly.c), pure and sans-IO.

- A queue per datagram: ``(src, dst, protocol, id)`` for IPv4, ``(src, dst, id)`` for IPv6.
- Overlaps (RFC 5722, which Linux applies to IPv4 as well since the FragmentSmack fixes):
  an exact duplicate of a fragment already held is dropped alone; any other overlap
  discards the whole datagram (``ReasmOverlaps`` over IPv4, and ``ReasmFails``).
- Memory: every fragment is charged its length plus :data:`FRAG_TRUESIZE_OVERHEAD` (the skb
  around it); while the total is above ``ipfrag_high_thresh`` (4 MB) new fragments are
  refused (``ReasmFails``) until queues complete or time out, as ``inet_frag_find`` does.
- Time: a queue not complete ``ipfrag_time`` (30 s) after its first fragment is dropped
  (``ReasmTimeout``, ``ReasmFails``); if its first fragment had come, the caller owes the
  sender an ICMP "fragment reassembly time exceeded" (``ip_expire``, ``ip6_frag_expire``),
  so :meth:`Reassembler.expire` returns those queues' first fragments.
- A datagram longer than 65535 bytes of payload is refused (``ReasmFails``).

Counting is left to the caller through the outcome each call returns, so that one class
serves both versions' counters.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from .config import StackConfig

FRAG_TRUESIZE_OVERHEAD: Final = 256  # bytes charged per fragment beyond its data (skb truesize)
MAX_DATAGRAM: Final = 65535


class Outcome(Enum):
    QUEUED = "queued"  # held, the datagram is not complete yet
    DONE = "done"  # the datagram is complete (ReasmOKs)
    DUPLICATE = "duplicate"  # an exact copy of a held fragment: dropped alone
    OVERLAP = "overlap"  # the datagram discarded (ReasmOverlaps, ReasmFails)
    TOO_BIG = "too_big"  # past 65535 bytes: the datagram discarded (ReasmFails)
    NO_MEMORY = "no_memory"  # over ipfrag_high_thresh: this fragment refused (ReasmFails)
    BAD = "bad"  # inconsistent with the datagram's known end (ReasmFails)


@dataclass(slots=True)
class _Queue:
    created: float
    first: bytes | None = None  # the offset-0 fragment's packet, for the time-exceeded quote
    end: int | None = None  # the datagram's length once the last fragment came
    pieces: list[tuple[int, int, bytes]] = field(default_factory=list)  # sorted (start, end)
    meat: int = 0
    charge: int = 0


class Reassembler:
    """The reassembly queues of one IP version."""

    __slots__ = ("_queues", "config", "mem")

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._queues: dict[Hashable, _Queue] = {}  # insertion order is expiry order
        self.mem = 0

    def __len__(self) -> int:
        return len(self._queues)

    def add(self, now: float, key: Hashable, offset: int, data: bytes, more: bool,
            packet: bytes) -> tuple[Outcome, bytes]:
        """One fragment: ``offset`` in bytes, ``data`` the fragment's payload, ``more`` the
        MF / M flag, ``packet`` the whole fragment (kept if it is the first). Returns the
        outcome and, when DONE, the reassembled payload."""
        q = self._queues.get(key)
        if q is None:
            if self.mem > self.config.ipfrag_high_thresh:
                return Outcome.NO_MEMORY, b""
            q = self._queues[key] = _Queue(now)
        start, end = offset, offset + len(data)
        if end > MAX_DATAGRAM:
            self._kill(key)
            return Outcome.TOO_BIG, b""
        if not more:
            if (q.end is not None and q.end != end) or any(e > end for _, e, _ in q.pieces):
                self._kill(key)
                return Outcome.BAD, b""
            q.end = end
        elif (q.end is not None and end > q.end) or not data:
            self._kill(key)
            return Outcome.BAD, b""
        for s, e, _ in q.pieces:
            if s == start and e == end:
                return Outcome.DUPLICATE, b""
            if s < end and start < e:
                self._kill(key)
                return Outcome.OVERLAP, b""
        q.pieces.append((start, end, data))
        q.pieces.sort(key=lambda p: p[0])
        q.meat += len(data)
        charge = len(data) + FRAG_TRUESIZE_OVERHEAD
        q.charge += charge
        self.mem += charge
        if start == 0:
            q.first = packet
        if q.end is not None and q.meat == q.end:
            self._kill(key)
            return Outcome.DONE, b"".join(d for _, _, d in q.pieces)
        return Outcome.QUEUED, b""

    def _kill(self, key: Hashable) -> None:
        q = self._queues.pop(key)
        self.mem -= q.charge

    @property
    def deadline(self) -> float | None:
        for q in self._queues.values():
            return q.created + self.config.ipfrag_time
        return None

    def expire(self, now: float) -> list[bytes | None]:
        """Drop the queues older than ipfrag_time; for each, its first fragment (None when
        it never came: no ICMP is owed)."""
        expired = []
        limit = now - self.config.ipfrag_time
        while self._queues:
            key, q = next(iter(self._queues.items()))
            if q.created > limit:
                break
            self._kill(key)
            expired.append(q.first)
        return expired
