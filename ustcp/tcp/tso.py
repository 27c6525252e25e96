"""How big each transmitted packet may be: Linux's TSO sizing, as pure functions.

Linux hands the device packets of several MSS (TSO/GSO, always on for TCP since 4.x) and
sizes them so that one packet is about a millisecond of the flow's pacing rate
(``tcp_tso_autosize``), at least ``tcp_min_tso_segs`` segments, and never more than half
the congestion window (``tcp_cwnd_test``). The pacing rate itself is twice (slow start)
or 1.2 times (congestion avoidance) the current rate cwnd * mss / srtt
(``tcp_update_pacing_rate``). The engine sizes what it sends the same way whether or not
the link can take GSO packets: without GSO it cuts each packet into MSS segments itself
(``wire.tcp.gso_segments``), as Linux's software GSO would.

A packet of more than one segment carries PSH on its last segment (Linux 6.18: measured on
this machine's kernel, every multi-segment TSO packet it sends has PSH, e.g. the google
``fast_recovery/prr-ss-30pkt-lost1_4`` exchange); a single-segment packet has PSH only when
it ends a write (``tcp_push``).
"""

from __future__ import annotations

from typing import Final

from ..config import StackConfig
from .pacing import PACING_UNLIMITED

GSO_LEGACY_MAX_SIZE: Final = 65536  # sk_gso_max_size of a device without a GSO limit of its own
GSO_MAX_SEGS: Final = 65535
TCP_MSS_DEFAULT: Final = 536
SK_PACING_SHIFT: Final = 10  # sk_pacing_shift: a TSO packet holds about 1/1024 s of the rate


def pacing_rate(config: StackConfig, mss: int, cwnd: int, ssthresh: int, packets_out: int,
                srtt8_us: int) -> int:
    """sk_pacing_rate in bytes per second (tcp_update_pacing_rate); ``srtt8_us`` is
    Linux's srtt_us (eight times the smoothed RTT in microseconds), 0 before a sample."""
    rate = mss * ((1_000_000 // 100) << 3)
    rate *= config.tcp_pacing_ss_ratio if cwnd < ssthresh // 2 else config.tcp_pacing_ca_ratio
    rate *= max(cwnd, packets_out)
    if srtt8_us:
        rate //= srtt8_us
    return min(rate, PACING_UNLIMITED)  # ~0UL before the first RTT sample


def tso_segs(config: StackConfig, mss: int, rate: int, min_rtt_us: int,
             gso_max_size: int) -> int:
    """Segments one packet may hold (tcp_tso_segs, tcp_tso_autosize): the bytes the pacing
    rate sends in 1/1024 s, plus more for a short path (gso_max_size >> (min_rtt_us >>
    tcp_tso_rtt_log)), capped at the device's GSO size, at least tcp_min_tso_segs."""
    gso = gso_max_size or GSO_LEGACY_MAX_SIZE
    size = rate >> SK_PACING_SHIFT
    if min_rtt_us:  # tcp_min_rtt() is ~0U before a sample: no bonus then
        shift = min_rtt_us >> config.tcp_tso_rtt_log
        if shift < 32:
            size += gso >> shift
    size = min(size, gso)
    return min(max(size // max(mss, 1), config.tcp_min_tso_segs), GSO_MAX_SEGS)


def size_goal(mss: int, max_window: int, gso_max_size: int) -> int:
    """Bytes one skb of a write may hold (tcp_xmit_size_goal): the device's GSO size, but no
    more than half the largest window the peer has offered (tcp_bound_to_half_wnd), in whole
    MSS, at least one. Measured on Linux 6.18 with MSS 1000: a peer window of 50000 makes
    skbs of 25000 bytes, 65535 of 32000, 20000 of 10000."""
    goal = gso_max_size or GSO_LEGACY_MAX_SIZE
    cutoff = max_window >> 1 if max_window > TCP_MSS_DEFAULT else max_window
    if cutoff and goal > cutoff:
        goal = cutoff
    return max(goal // mss * mss, mss)


def cwnd_quota(cwnd: int, in_flight: int) -> int:
    """Segments the congestion window lets one packet carry (tcp_cwnd_test): what is left
    of cwnd, but no more than half of it, so that one burst never fills the window."""
    if in_flight >= cwnd:
        return 0
    return min(max(cwnd >> 1, 1), cwnd - in_flight)
