"""NewReno congestion avoidance (RFC 5681), as Linux's "reno" (net/ipv4/tcp_cong.c).

Slow start doubles cwnd each RTT; above ssthresh cwnd grows by one packet per RTT; a loss
halves it. Fast retransmit / fast recovery themselves live in the engine, which asks this
module only for the new ssthresh.
"""

from __future__ import annotations

from .base import (
    CcState,
    CongestionControl,
    tcp_cong_avoid_ai,
    tcp_in_slow_start,
    tcp_slow_start,
)


def tcp_reno_cong_avoid(s: CcState, acked: int) -> None:
    """Linux tcp_reno_cong_avoid: slow start below ssthresh, then +1 packet per cwnd ACKed."""
    if not s.is_cwnd_limited:  # tcp_is_cwnd_limited: the app, not cwnd, limited the flight
        return
    if tcp_in_slow_start(s):
        acked = tcp_slow_start(s, acked)
        if not acked:
            return
    tcp_cong_avoid_ai(s, s.snd_cwnd, acked)


def tcp_reno_ssthresh(s: CcState) -> int:
    """Linux tcp_reno_ssthresh: half the window, at least 2 (RFC 5681 3.1, equation 4,
    with cwnd standing in for FlightSize)."""
    return max(s.snd_cwnd >> 1, 2)


def tcp_reno_undo_cwnd(s: CcState) -> int:
    """Linux tcp_reno_undo_cwnd: back to the cwnd before the reduction (RFC 3522 Eifel)."""
    return max(s.snd_cwnd, s.prior_cwnd)


class Reno(CongestionControl):
    """Linux "reno": the RFC 5681 algorithm with no state of its own."""

    name = "reno"

    def ssthresh(self, s: CcState) -> int:
        return tcp_reno_ssthresh(s)

    def cong_avoid(self, s: CcState, now: float, ack: int, acked: int) -> None:
        tcp_reno_cong_avoid(s, acked)

    def undo_cwnd(self, s: CcState) -> int:
        return tcp_reno_undo_cwnd(s)
