"""Congestion control (ustcp/tcp/congestion): Reno and CUBIC with HyStart, driven by
simulated rounds of ACKs on virtual time."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustcp.tcp.congestion import AVAILABLE, make_congestion_control
from ustcp.tcp.congestion.base import (
    CA_LOSS,
    CA_RECOVERY,
    TCP_INFINITE_SSTHRESH,
    CcState,
    CongestionControl,
    CwndEvent,
    tcp_cong_avoid_ai,
    tcp_slow_start,
)
from ustcp.tcp.congestion.cubic import (
    CUBIC_C,
    HYSTART_ACK_TRAIN,
    HYSTART_DELAY,
    Cubic,
)
from ustcp.tcp.congestion.reno import Reno

MSS = 1000
BETA = 0.7


def new_state(cc: CongestionControl, cwnd: int = 10, now: float = 0.0) -> CcState:
    s = CcState(mss=MSS, snd_cwnd=cwnd, snd_una=1000, snd_nxt=1000)
    s.is_cwnd_limited = True
    cc.init(s, now)
    return s


def ack_round(cc: CongestionControl, s: CcState, now: float, rtt: float,
              acked_per_ack: int = 1, rtt_us: int | None = None) -> float:
    """One flight: cwnd packets sent at `now`, their ACKs spread evenly over one RTT, each
    ACK acknowledging `acked_per_ack` packets. Returns the time of the last ACK."""
    n = s.snd_cwnd
    s.snd_nxt = s.snd_una + n * MSS
    acks = n // acked_per_ack
    for i in range(1, acks + 1):
        t = now + rtt * i / acks
        s.snd_una += acked_per_ack * MSS
        cc.pkts_acked(s, t, acked_per_ack, int(rtt * 1e6) if rtt_us is None else rtt_us)
        cc.cong_avoid(s, t, s.snd_una, acked_per_ack)
    return now + rtt


def enter_ca_after_loss(cc: CongestionControl, s: CcState, cwnd: int) -> None:
    """A loss at `cwnd`, then recovery ends with cwnd = ssthresh (tcp_end_cwnd_reduction)."""
    s.snd_cwnd = cwnd
    s.snd_ssthresh = cc.ssthresh(s)
    s.snd_cwnd = s.snd_ssthresh
    s.snd_cwnd_cnt = 0


# --- registry -------------------------------------------------------------------------


def test_registry() -> None:
    assert AVAILABLE == ("reno", "cubic")
    assert isinstance(make_congestion_control("reno"), Reno)
    assert isinstance(make_congestion_control("cubic"), Cubic)
    a, b = make_congestion_control("cubic"), make_congestion_control("cubic")
    assert a is not b  # per-connection state
    with pytest.raises(ValueError, match="bbr"):
        make_congestion_control("bbr")


# --- shared helpers (tcp_cong.c) ------------------------------------------------------


def test_slow_start_stops_at_ssthresh_and_returns_leftover() -> None:
    s = CcState(mss=MSS, snd_cwnd=10, snd_ssthresh=12)
    assert tcp_slow_start(s, 5) == 3
    assert s.snd_cwnd == 12


def test_slow_start_respects_clamp() -> None:
    s = CcState(mss=MSS, snd_cwnd=10, snd_cwnd_clamp=11)
    tcp_slow_start(s, 5)
    assert s.snd_cwnd == 11


def test_cong_avoid_ai_counts_acks() -> None:
    s = CcState(mss=MSS, snd_cwnd=10)
    tcp_cong_avoid_ai(s, 10, 9)
    assert (s.snd_cwnd, s.snd_cwnd_cnt) == (10, 9)
    tcp_cong_avoid_ai(s, 10, 1)
    assert (s.snd_cwnd, s.snd_cwnd_cnt) == (11, 0)
    tcp_cong_avoid_ai(s, 5, 12)  # several increments at once
    assert (s.snd_cwnd, s.snd_cwnd_cnt) == (13, 2)


def test_cong_avoid_ai_applies_stale_credit_gently() -> None:
    # Credit gathered while w was larger gives a single +1 when w shrinks below it.
    s = CcState(mss=MSS, snd_cwnd=10, snd_cwnd_cnt=50)
    tcp_cong_avoid_ai(s, 10, 0)
    assert (s.snd_cwnd, s.snd_cwnd_cnt) == (11, 0)


# --- Reno -----------------------------------------------------------------------------


@pytest.mark.parametrize("per_ack", [1, 2])  # every packet ACKed, or delayed ACKs
def test_reno_slow_start_doubles_per_rtt(per_ack: int) -> None:
    cc = Reno()
    s = new_state(cc)
    now = 0.0
    seen = [s.snd_cwnd]
    for _ in range(3):
        now = ack_round(cc, s, now, 0.1, per_ack)
        seen.append(s.snd_cwnd)
    assert seen == [10, 20, 40, 80]


def test_reno_ssthresh_halves() -> None:
    cc = Reno()
    s = new_state(cc, cwnd=100)
    assert cc.ssthresh(s) == 50
    s.snd_cwnd = 51
    assert cc.ssthresh(s) == 25
    s.snd_cwnd = 3
    assert cc.ssthresh(s) == 2  # never below 2


def test_reno_congestion_avoidance_one_packet_per_rtt() -> None:
    cc = Reno()
    s = new_state(cc)
    enter_ca_after_loss(cc, s, 40)
    assert s.snd_cwnd == 20
    now = 0.0
    seen = []
    for _ in range(5):
        now = ack_round(cc, s, now, 0.1)
        seen.append(s.snd_cwnd)
    assert seen == [21, 22, 23, 24, 25]


def test_reno_slow_start_hands_leftover_to_avoidance() -> None:
    cc = Reno()
    s = new_state(cc, cwnd=10)
    s.snd_ssthresh = 12
    cc.cong_avoid(s, 0.0, 0, 5)
    assert (s.snd_cwnd, s.snd_cwnd_cnt) == (12, 3)


@pytest.mark.parametrize("name", AVAILABLE)
def test_no_growth_when_not_cwnd_limited(name: str) -> None:
    cc = make_congestion_control(name)
    s = new_state(cc)
    s.is_cwnd_limited = False
    ack_round(cc, s, 0.0, 0.1)
    assert s.snd_cwnd == 10
    enter_ca_after_loss(cc, s, 100)
    before = s.snd_cwnd
    for r in range(20):
        ack_round(cc, s, 1.0 + r * 0.1, 0.1)
    assert s.snd_cwnd == before


@pytest.mark.parametrize("name", AVAILABLE)
def test_undo_restores_prior_cwnd(name: str) -> None:
    cc = make_congestion_control(name)
    s = new_state(cc, cwnd=50)
    s.prior_cwnd = 80
    assert cc.undo_cwnd(s) == 80
    s.prior_cwnd = 30
    assert cc.undo_cwnd(s) == 50


@given(cwnd=st.integers(1, 1 << 20), ssthresh=st.integers(2, TCP_INFINITE_SSTHRESH),
       acked=st.integers(0, 1000), cnt=st.integers(0, 1 << 20))
def test_reno_growth_is_bounded(cwnd: int, ssthresh: int, acked: int, cnt: int) -> None:
    cc = Reno()
    s = CcState(mss=MSS, snd_cwnd=cwnd, snd_ssthresh=ssthresh, snd_cwnd_cnt=cnt)
    s.is_cwnd_limited = True
    cc.cong_avoid(s, 0.0, 0, acked)
    # Never shrinks; never more than +acked (slow start), +1 for stale credit.
    assert cwnd <= s.snd_cwnd <= cwnd + acked + 1
    if cwnd < ssthresh:
        assert s.snd_cwnd <= max(ssthresh, cwnd) + acked


# --- CUBIC: multiplicative decrease and fast convergence -------------------------------


def test_cubic_ssthresh_is_beta_times_cwnd() -> None:
    cc = Cubic()
    s = new_state(cc, cwnd=100)
    assert cc.ssthresh(s) == 70  # 100 * 717 / 1024
    assert cc.last_max_cwnd == 100
    assert cc.epoch_start is None
    s.snd_cwnd = 2
    assert cc.ssthresh(s) == 2


def test_cubic_fast_convergence_lowers_wmax() -> None:
    cc = Cubic()
    s = new_state(cc)
    enter_ca_after_loss(cc, s, 100)
    assert cc.last_max_cwnd == 100
    # The next loss comes before the window got back to W_max: release some bandwidth.
    s.snd_cwnd = 80
    assert cc.ssthresh(s) == 56
    assert cc.last_max_cwnd == 68  # 80 * (1 + 0.7) / 2
    # A loss above W_max just records the new maximum.
    s.snd_cwnd = 90
    cc.ssthresh(s)
    assert cc.last_max_cwnd == 90


def test_cubic_without_fast_convergence_keeps_wmax() -> None:
    cc = Cubic(fast_convergence=False)
    s = new_state(cc)
    enter_ca_after_loss(cc, s, 100)
    s.snd_cwnd = 80
    cc.ssthresh(s)
    assert cc.last_max_cwnd == 80


# --- CUBIC: the window function -------------------------------------------------------


def cubic_after_loss(*, rtt: float, wmax: int, **kwargs: bool) -> tuple[Cubic, CcState]:
    cc = Cubic(hystart=False, **kwargs)
    s = new_state(cc)
    cc.pkts_acked(s, 0.0, 1, int(rtt * 1e6))  # delay_min = rtt
    enter_ca_after_loss(cc, s, wmax)
    return cc, s


def test_cubic_follows_the_cubic_curve() -> None:
    rtt, wmax = 0.1, 100
    cc, s = cubic_after_loss(rtt=rtt, wmax=wmax)
    assert s.snd_cwnd == 70
    k = (wmax * (1 - BETA) / CUBIC_C) ** (1 / 3)  # RFC 9438 eq. 2, ~4.2 s
    t0 = now = 1.0
    for _ in range(100):  # 10 s: concave, plateau, convex
        now = ack_round(cc, s, now, rtt)
        t = now - t0
        w = CUBIC_C * (t - k) ** 3 + wmax
        assert abs(s.snd_cwnd - w) <= max(2.0, 0.03 * w), (t, s.snd_cwnd, w)
    assert cc.bic_K == pytest.approx(k)
    assert s.snd_cwnd > 150  # well into the convex region


def test_cubic_plateau_near_wmax() -> None:
    cc, s = cubic_after_loss(rtt=0.1, wmax=100)
    k = (100 * (1 - BETA) / CUBIC_C) ** (1 / 3)
    now = 1.0
    while now < 1.0 + k - 0.5:
        now = ack_round(cc, s, now, 0.1)
    near = s.snd_cwnd
    for _ in range(10):  # one second around K
        now = ack_round(cc, s, now, 0.1)
    assert 97 <= near <= 100
    assert s.snd_cwnd - near <= 2


def test_cubic_reno_friendly_region() -> None:
    # Small W_max and a 10 ms RTT: the cubic curve would add ~6 packets in 2 s, while
    # Reno with beta 0.7 adds alpha = 3(1-beta)/(1+beta) ~ 0.53 packet per RTT.
    rounds, rtt = 200, 0.01
    alpha = 3 * (1 - BETA) / (1 + BETA)
    results = {}
    for friendly in (True, False):
        cc, s = cubic_after_loss(rtt=rtt, wmax=20, tcp_friendliness=friendly)
        start = s.snd_cwnd
        now = 1.0
        for _ in range(rounds):
            now = ack_round(cc, s, now, rtt)
        results[friendly] = s.snd_cwnd
    assert start == 14
    assert abs(results[True] - (start + alpha * rounds)) <= 8
    assert results[False] <= 21


def test_cubic_without_wmax_grows_at_least_5_percent_per_rtt() -> None:
    # Slow start ended without a loss (W_max unknown): cnt is capped at 20.
    cc = Cubic(hystart=False)
    s = new_state(cc, cwnd=100)
    s.snd_ssthresh = 100
    ack_round(cc, s, 1.0, 0.1)
    assert 104 <= s.snd_cwnd <= 106


def test_cubic_aims_one_rtt_ahead() -> None:
    # RFC 9438 4.2: the target is W_cubic(t + RTT); Linux adds delay_min to t.
    rtt, wmax = 1.0, 100
    cc, s = cubic_after_loss(rtt=rtt, wmax=wmax)
    cc.cong_avoid(s, 1.0, s.snd_una, 1)  # starts the epoch: t = 0 + RTT
    k = (wmax * (1 - BETA) / CUBIC_C) ** (1 / 3)
    target = wmax - int(CUBIC_C * (k - rtt) ** 3)  # 87, where W(0) would be 70
    assert cc.cnt == 70 // (target - 70)


def test_cubic_growth_at_most_one_per_two_acked() -> None:
    # Far above the curve's current value (here: 30 s of idle the engine did not report),
    # W(t) runs away, but cwnd grows by at most 1 per 2 packets ACKed: 1.5x per RTT.
    cc, s = cubic_after_loss(rtt=0.1, wmax=100)
    now = 1.0
    for _ in range(20):
        now = ack_round(cc, s, now, 0.1)
    before = s.snd_cwnd
    ack_round(cc, s, now + 30.0, 0.1)
    assert abs(s.snd_cwnd - before * 3 // 2) <= 1


def test_cubic_delay_samples_ignored_right_after_a_cut() -> None:
    cc, s = cubic_after_loss(rtt=0.1, wmax=100)
    ack_round(cc, s, 1.0, 0.1)  # starts the epoch at ~1.0
    cc.pkts_acked(s, 1.5, 1, 20_000)
    assert cc.delay_min == 100_000
    cc.pkts_acked(s, 2.5, 1, 20_000)
    assert cc.delay_min == 20_000
    cc.pkts_acked(s, 2.6, 1, -1)  # no sample
    assert cc.delay_min == 20_000


def test_cubic_idle_shifts_the_epoch() -> None:
    """RFC 9438 5.8 / Linux cubictcp_cwnd_event: after an idle period cwnd resumes on the
    curve where it left off. Without the shift t jumps by the idle time and cwnd by 1.5x."""
    grown = {}
    for notify in (True, False):
        cc, s = cubic_after_loss(rtt=0.1, wmax=100)
        now = 1.0
        for _ in range(20):
            now = ack_round(cc, s, now, 0.1)
        s.lsndtime = now
        epoch = cc.epoch_start
        assert epoch is not None
        before = s.snd_cwnd
        now += 30.0  # application idle for 30 s
        if notify:
            cc.cwnd_event(s, now, CwndEvent.TX_START)
            assert cc.epoch_start == epoch + 30_000  # jiffies
        ack_round(cc, s, now, 0.1)
        grown[notify] = s.snd_cwnd - before
    assert grown[True] <= 2
    assert grown[False] >= 30


def test_cubic_idle_shift_never_moves_epoch_past_now() -> None:
    cc, s = cubic_after_loss(rtt=0.1, wmax=100)
    s.lsndtime = 0.5  # last send before the epoch began
    ack_round(cc, s, 1.0, 0.1)
    cc.cwnd_event(s, 3.0, CwndEvent.TX_START)
    assert cc.epoch_start == 3000


def test_cubic_tx_start_without_epoch_and_other_events_do_nothing() -> None:
    cc = Cubic()
    s = new_state(cc)
    for ev in CwndEvent:
        cc.cwnd_event(s, 10.0, ev)
    assert cc.epoch_start is None


def test_cubic_rto_resets_state() -> None:
    cc, s = cubic_after_loss(rtt=0.1, wmax=100)
    ack_round(cc, s, 1.0, 0.1)
    cc.set_state(s, CA_RECOVERY)
    in_recovery = (cc.last_max_cwnd, cc.epoch_start)
    assert in_recovery[0] == 100 and in_recovery[1] is not None
    cc.set_state(s, CA_LOSS)
    after_rto = (cc.last_max_cwnd, cc.epoch_start, cc.delay_min, cc.end_seq)
    assert after_rto == (0, None, 0, s.snd_nxt)


# --- CUBIC: HyStart -------------------------------------------------------------------


def slow_start(cc: Cubic, s: CcState, rtt_of_round: Callable[[int], int],
               spacing: float, max_cwnd: int = 2000) -> float:
    """Slow start on a path whose RTT in round r is rtt_of_round(r) microseconds, ACKs
    `spacing` seconds apart, until it ends or cwnd reaches max_cwnd. Returns the time."""
    now, r = 0.0, 0
    while s.snd_cwnd < s.snd_ssthresh and s.snd_cwnd < max_cwnd:
        rtt_us = rtt_of_round(r)
        n = s.snd_cwnd
        s.snd_nxt = s.snd_una + n * MSS
        start = now + rtt_us / 1e6
        for i in range(n):
            t = start + i * spacing
            s.snd_una += MSS
            cc.pkts_acked(s, t, 1, rtt_us)
            cc.cong_avoid(s, t, s.snd_una, 1)
            if cc.found:
                break
        now = start + n * spacing
        r += 1
    return now


def test_hystart_delay_exits_slow_start_when_rtt_rises() -> None:
    cc = Cubic(hystart_detect=HYSTART_DELAY)
    s = new_state(cc)
    # 100 ms until cwnd reaches 80 (round 3), then a queue adds 20 ms > 100/8 ms.
    slow_start(cc, s, lambda r: 100_000 if r < 3 else 120_000, spacing=0.005)
    assert cc.found
    assert s.snd_ssthresh == s.snd_cwnd
    assert 80 < s.snd_cwnd < 100  # HYSTART_MIN_SAMPLES into the round


def test_hystart_delay_stays_in_slow_start_when_rtt_is_stable() -> None:
    cc = Cubic(hystart_detect=HYSTART_DELAY)
    s = new_state(cc)
    # Jitter of up to 10 ms is below the 12.5 ms threshold.
    slow_start(cc, s, lambda r: 100_000 + (r % 3) * 5_000, spacing=0.005)
    assert not cc.found
    assert s.snd_ssthresh == TCP_INFINITE_SSTHRESH
    assert s.snd_cwnd >= 2000


@pytest.mark.parametrize(("base_us", "rise_us", "exits"), [
    (20_000, 5_000, True),  # threshold clamped up to 4 ms
    (20_000, 3_000, False),
    (200_000, 17_000, True),  # threshold clamped down to 16 ms
    (200_000, 15_000, False),
    (80_000, 11_000, True),  # 80/8 = 10 ms
    (80_000, 9_000, False),
])
def test_hystart_delay_threshold_clamped_4_to_16_ms(base_us: int, rise_us: int,
                                                    exits: bool) -> None:
    cc = Cubic(hystart_detect=HYSTART_DELAY)
    s = new_state(cc)
    slow_start(cc, s, lambda r: base_us if r < 3 else base_us + rise_us, spacing=0.005)
    assert cc.found is exits
    assert (s.snd_ssthresh == s.snd_cwnd) is exits


def test_hystart_needs_hystart_low_window() -> None:
    cc = Cubic(hystart_detect=HYSTART_DELAY)
    s = new_state(cc, cwnd=10)
    s.is_cwnd_limited = False  # hold cwnd still
    t = 0.0
    for rtt in [100_000] * 20 + [150_000] * 20:
        t += 0.01
        cc.pkts_acked(s, t, 1, rtt)
    assert s.snd_ssthresh == TCP_INFINITE_SSTHRESH
    s.snd_cwnd = 16
    for _ in range(9):
        t += 0.01
        cc.pkts_acked(s, t, 1, 150_000)
    assert cc.found
    assert s.snd_ssthresh == 16


def test_hystart_ack_train_exits_when_train_exceeds_half_min_rtt() -> None:
    cc = Cubic(hystart_detect=HYSTART_ACK_TRAIN)
    s = new_state(cc)
    # ACKs 1 ms apart: the rounds of 10 and 20 ACKs are shorter than delay_min/2 = 25 ms;
    # the round of 40 ACKs passes it at its 27th ACK (26 ms after the first), when cwnd
    # is 40 + 26.
    slow_start(cc, s, lambda r: 50_000, spacing=0.001)
    assert cc.found
    assert s.snd_ssthresh == s.snd_cwnd == 66


def test_hystart_ack_train_ignores_spread_out_acks() -> None:
    cc = Cubic(hystart_detect=HYSTART_ACK_TRAIN)
    s = new_state(cc)
    slow_start(cc, s, lambda r: 50_000, spacing=0.003, max_cwnd=1000)
    assert not cc.found
    assert s.snd_cwnd >= 1000


def test_hystart_off() -> None:
    cc = Cubic(hystart=False)
    s = new_state(cc)
    slow_start(cc, s, lambda r: 100_000 if r < 3 else 200_000, spacing=0.001,
               max_cwnd=500)
    assert not cc.found
    assert s.snd_ssthresh == TCP_INFINITE_SSTHRESH


def test_hystart_after_exit_cubic_takes_over() -> None:
    cc = Cubic()
    s = new_state(cc)
    now = slow_start(cc, s, lambda r: 100_000 if r < 3 else 120_000, spacing=0.005)
    assert cc.found
    exit_cwnd = s.snd_cwnd
    ack_round(cc, s, now, 0.12)
    # No W_max yet: between +1 (Reno) and +5% per RTT, not slow start's doubling.
    assert exit_cwnd < s.snd_cwnd <= exit_cwnd * 105 // 100 + 1
