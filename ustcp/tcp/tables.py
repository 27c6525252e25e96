"""Tables that give their storage back after a burst.

A CPython dict never shrinks when entries are deleted: it keeps the slots it grew to until
the next insertion that resizes it. After 10,000 connections have come and gone, the
engine's connection table still holds 288 KB of empty slots, the SYN queue 144 KB, and
they would for the life of the daemon. :class:`Shrinker` rebuilds a table, at the size
its entries need, once deletions have left it under ``1/SHRINK_RATIO`` of its peak: the
copy costs at most an eighth of the deletions that led to it, so O(1) per deletion
amortized. Tables that never held :data:`SHRINK_MIN` entries are left alone.
"""

from __future__ import annotations

from typing import Final, TypeVar

K = TypeVar("K")
V = TypeVar("V")

SHRINK_MIN: Final = 1024  # entries at the peak: a smaller table is not worth a rebuild
SHRINK_RATIO: Final = 8


class Shrinker:
    """The peak of one table since it was last rebuilt, and the rule to rebuild it."""

    __slots__ = ("peak",)

    def __init__(self) -> None:
        self.peak = 0

    def after_delete(self, table: dict[K, V], deleted: int = 1) -> dict[K, V]:
        """``table``, or a rebuilt copy of it, after ``deleted`` entries went: the caller
        stores what it gets back. Its size before them is a peak it reached (tables are
        only watched where they lose entries)."""
        n = len(table)
        peak = max(self.peak, n + deleted)
        if peak >= SHRINK_MIN and n * SHRINK_RATIO < peak:
            self.peak = n
            return dict(table)
        self.peak = peak
        return table
