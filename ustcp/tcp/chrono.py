"""tcp_info's chronographs (Linux tcp_chrono_start / tcp_chrono_stop,
tcp_get_info_chrono_stats): how long the sender has had data to send (tcpi_busy_time), and of
that how long the peer's window (tcpi_rwnd_limited) or the send buffer (tcpi_sndbuf_limited)
held it back.

One clock runs at a time, the most telling condition winning: BUSY < RWND_LIMITED <
SNDBUF_LIMITED. A start of a higher kind takes over; a stop of the running kind falls back to
BUSY while anything is queued or in flight, and to nothing once both queues are empty. The
sender starts and stops them where Linux does (``Sender.write``, ``push``, ``check_space``,
``ack.clean_rtx``).
"""

from __future__ import annotations

from typing import Final

CHRONO_UNSPEC: Final = 0
CHRONO_BUSY: Final = 1
CHRONO_RWND_LIMITED: Final = 2
CHRONO_SNDBUF_LIMITED: Final = 3


class Chrono:
    """The running kind, since when, and the seconds each kind has run before."""

    __slots__ = ("kind", "since", "stat")

    def __init__(self) -> None:
        self.kind = CHRONO_UNSPEC
        self.since = 0.0
        self.stat = [0.0, 0.0, 0.0]  # BUSY, RWND_LIMITED, SNDBUF_LIMITED

    def _set(self, now: float, kind: int) -> None:
        """tcp_chrono_set: the running kind is charged its time; ``kind`` runs from now."""
        if self.kind != CHRONO_UNSPEC:
            self.stat[self.kind - 1] += now - self.since
        self.since = now
        self.kind = kind

    def start(self, now: float, kind: int) -> None:
        if kind > self.kind:
            self._set(now, kind)

    def stop(self, now: float, kind: int, queues_empty: bool) -> None:
        if queues_empty:
            self._set(now, CHRONO_UNSPEC)
        elif kind == self.kind:
            self._set(now, CHRONO_BUSY)

    def info(self, now: float) -> dict[str, int]:
        """The tcp_info fields, in microseconds: busy time is all three kinds together."""
        us = [int((spent + (now - self.since if self.kind == i + 1 else 0.0)) * 1e6)
              for i, spent in enumerate(self.stat)]
        return {"tcpi_busy_time": sum(us), "tcpi_rwnd_limited": us[1],
                "tcpi_sndbuf_limited": us[2]}
