"""Pluggable congestion control: pick an algorithm by its Linux name
(sysctl net.ipv4.tcp_congestion_control / the TCP_CONGESTION socket option)."""

from __future__ import annotations

from .base import CongestionControl
from .cubic import Cubic
from .reno import Reno

_REGISTRY: dict[str, type[CongestionControl]] = {"reno": Reno, "cubic": Cubic}
AVAILABLE = ("reno", "cubic")  # net.ipv4.tcp_available_congestion_control


def make_congestion_control(name: str) -> CongestionControl:
    """A fresh per-connection instance of the algorithm called ``name``."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown congestion control {name!r}; available: {' '.join(AVAILABLE)}"
        ) from None
    return cls()
