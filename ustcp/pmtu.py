"""The path MTU each destination has shown (RFC 1191, RFC 8201): Linux's per-destination
route exceptions (``__ip_rt_update_pmtu``, ``rt6_update_exception_stamp_rt``) as one
bounded table, pure and sans-IO.

Only an ICMP "fragmentation needed" or "packet too big" that TCP has matched to one of its
connections (its quoted sequence number in the window) teaches a value, and only a lower
one. IPv4 values below ``min_pmtu`` become ``min_pmtu`` (RFC 1191 allows no less than 68;
Linux floors at 552 so that a forged ICMP cannot shrink segments to nothing); IPv6 values
below 1280 are refused by the caller (RFC 8200 5). A learned value expires after
``mtu_expires`` seconds, and the path is tried at the link's MTU again (RFC 1191 6.3).
The engine runs the expiry timer; the connections to an expired destination resync their
MSS.
"""

from __future__ import annotations

from typing import Final

from .config import StackConfig

IPV6_MIN_MTU: Final = 1280  # RFC 8200 5
PMTU_ENTRIES_MAX: Final = 4096  # destinations remembered; the oldest learned is forgotten first


class PathMtuCache:
    """Learned path MTUs by destination address (4 or 16 bytes), below ``link_mtu``."""

    __slots__ = ("_entries", "config", "link_mtu")

    def __init__(self, config: StackConfig, link_mtu: int) -> None:
        self.config = config
        self.link_mtu = link_mtu
        # dst -> (mtu, expires); insertion order is expiry order (each update re-inserts)
        self._entries: dict[bytes, tuple[int, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, dst: bytes) -> int:
        entry = self._entries.get(dst)
        return entry[0] if entry is not None else self.link_mtu

    def update(self, now: float, dst: bytes, mtu: int) -> int:
        """Learn ``mtu`` towards ``dst`` (__ip_rt_update_pmtu); returns the path MTU now."""
        old = self.get(dst)
        if len(dst) == 4 and mtu < self.config.min_pmtu:
            mtu = min(old, self.config.min_pmtu)  # the floor, never above what we had
        mtu = max(mtu, IPV6_MIN_MTU if len(dst) == 16 else 68)
        if mtu > old:
            return old  # only lowers: a larger value is found again by expiry or probing
        self._entries.pop(dst, None)
        self._entries[dst] = (mtu, now + self.config.mtu_expires)
        if len(self._entries) > PMTU_ENTRIES_MAX:
            del self._entries[next(iter(self._entries))]
        return mtu

    @property
    def deadline(self) -> float | None:
        """When the oldest learned value expires."""
        for _, expires in self._entries.values():
            return expires
        return None

    def expire(self, now: float) -> list[bytes]:
        """Forget the values whose time is up; the destinations forgotten."""
        gone = []
        while self._entries:
            dst, (_, expires) = next(iter(self._entries.items()))
            if expires > now:
                break
            del self._entries[dst]
            gone.append(dst)
        return gone
