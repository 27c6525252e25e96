"""32-bit sequence number arithmetic (RFC 9293 3.4, RFC 1982 serial numbers).

Sequence numbers live modulo 2**32; "a before b" means the signed 32-bit difference a - b is
negative, as Linux's before()/after() compute it. Every comparison of sequence numbers in the
engine goes through these functions so the wrap is handled in one place.
"""

from __future__ import annotations

from typing import Final

MASK: Final = 0xFFFFFFFF
HALF: Final = 0x80000000


def seq_add(a: int, n: int) -> int:
    return (a + n) & MASK


def seq_diff(a: int, b: int) -> int:
    """a - b as a signed 32-bit value (how far a is after b)."""
    d = (a - b) & MASK
    return d - 0x100000000 if d & HALF else d


def before(a: int, b: int) -> bool:
    """a < b in sequence space (Linux before())."""
    return ((a - b) & MASK) >= HALF


def after(a: int, b: int) -> bool:
    """a > b in sequence space (Linux after())."""
    return ((b - a) & MASK) >= HALF


def before_eq(a: int, b: int) -> bool:
    return not after(a, b)


def after_eq(a: int, b: int) -> bool:
    return not before(a, b)


def between(low: int, x: int, high: int) -> bool:
    """low <= x <= high in sequence space (Linux between())."""
    return ((high - low) & MASK) >= ((x - low) & MASK)
