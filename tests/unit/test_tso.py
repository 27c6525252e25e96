"""Linux's packet sizing (tcp/tso.py): pacing rate, tcp_tso_autosize, tcp_cwnd_test."""

from __future__ import annotations

from ustcp.config import StackConfig
from ustcp.tcp.tso import GSO_LEGACY_MAX_SIZE, cwnd_quota, pacing_rate, tso_segs

CFG = StackConfig()


def test_pacing_rate_is_twice_the_rate_in_slow_start_and_1_2_times_after() -> None:
    # 10 segments of 1000 B per 100 ms = 100 kB/s; srtt_us is kept times eight.
    assert pacing_rate(CFG, 1000, 10, 1 << 31, 0, 100_000 << 3) == 200_000
    assert pacing_rate(CFG, 1000, 10, 12, 0, 100_000 << 3) == 120_000  # cwnd >= ssthresh/2
    assert pacing_rate(CFG, 1000, 10, 12, 20, 100_000 << 3) == 240_000  # packets_out counts
    assert pacing_rate(CFG, 1000, 10, 1 << 31, 0, 0) == 160 * 10**9  # no RTT: not divided


def test_tso_segs_is_a_millisecond_of_the_rate_and_at_least_the_minimum() -> None:
    slow = pacing_rate(CFG, 1000, 10, 1 << 31, 0, 100_000 << 3)  # 200 kB/s: 195 B per ms
    assert tso_segs(CFG, 1000, slow, 100_000, 0) == CFG.tcp_min_tso_segs == 2
    fast = 50_000_000  # 48,828 B per 1/1024 s
    assert tso_segs(CFG, 1000, fast, 100_000, 0) == 48
    # A short path adds gso_max_size >> (min_rtt_us >> 9): 50 µs gives the whole 64 KB.
    assert tso_segs(CFG, 1000, slow, 50, 0) == GSO_LEGACY_MAX_SIZE // 1000
    assert tso_segs(CFG, 1000, slow, 50, 16384) == 16  # the device's own GSO limit
    assert tso_segs(CFG, 1000, fast, 0, 0) == 48  # no RTT sample: no bonus


def test_one_packet_never_takes_more_than_half_the_window() -> None:
    assert cwnd_quota(10, 0) == 5
    assert cwnd_quota(10, 7) == 3
    assert cwnd_quota(10, 10) == 0
    assert cwnd_quota(1, 0) == 1
    assert cwnd_quota(2, 0) == 1
