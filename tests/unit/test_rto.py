"""The RTT estimator and retransmission timeout (ustcp/tcp/rto.py): RFC 6298 in Linux's
integer arithmetic (tcp_rtt_estimator, tcp_set_rto)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustcp.tcp.rto import TCP_RTO_MAX, TCP_RTO_MIN, TCP_TIMEOUT_INIT, RtoEstimator

MS = 1000  # microseconds


def test_before_any_sample() -> None:
    e = RtoEstimator()
    assert not e.has_sample
    assert e.rto == TCP_TIMEOUT_INIT == 1.0
    assert (e.srtt_us, e.rttvar_us, e.min_rtt_us) == (0, 0, 0)
    # The SYN retransmission schedule: 1, 2, 4, ... 64, then capped at 120 s.
    assert [e.backed_off(k) for k in range(9)] == [1, 2, 4, 8, 16, 32, 64, 120, 120]


@pytest.mark.parametrize(("r_ms", "rto"), [
    (500, 1.5),  # RFC 6298 2.2: SRTT + 4 * R/2 = 3R
    (100, 0.3),  # 4 * RTTVAR = 200 ms, exactly TCP_RTO_MIN
    (10, 0.21),  # 4 * RTTVAR = 20 ms < 200 ms: SRTT + 200 ms
])
def test_first_sample(r_ms: int, rto: float) -> None:
    e = RtoEstimator()
    e.on_sample(r_ms * MS)
    assert e.has_sample
    assert e.srtt_us == r_ms * MS  # SRTT = R
    assert e.rttvar_us == r_ms * MS // 2  # RTTVAR = R/2
    assert e.mdev_us == 2 * r_ms * MS
    assert e.rto == pytest.approx(rto)


def test_second_sample_follows_rfc6298_gains() -> None:
    e = RtoEstimator()
    e.on_sample(100 * MS)
    e.on_sample(200 * MS)
    # SRTT = 7/8 * 100 + 1/8 * 200; RTTVAR = 3/4 * 50 + 1/4 * |100 - 200|
    assert e.srtt_us == 112_500
    assert e.rttvar_us == 62_500
    assert e.rto_us == 112_500 + 4 * 62_500


def test_sequence_matches_rfc_formulas_while_rtt_rises() -> None:
    # While samples are >= SRTT, Linux's integers are exactly the RFC's equations.
    samples = [100, 120, 180, 240, 300, 420]
    e = RtoEstimator()
    srtt, rttvar = float(samples[0]), samples[0] / 2
    e.on_sample(samples[0] * MS)
    for r in samples[1:]:
        rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
        srtt = 0.875 * srtt + 0.125 * r
        e.on_sample(r * MS)
        assert e.srtt_us == pytest.approx(srtt * MS, abs=1)
        assert e.rttvar_us == pytest.approx(rttvar * MS, abs=1)
    assert e.rto == pytest.approx((srtt + 4 * rttvar) / 1000, abs=1e-5)


def test_falling_rtt_moves_deviation_with_smaller_gain() -> None:
    # Linux's "Eifel-like" rule: a sample below SRTT updates mdev with gain 1/32, not 1/4.
    e = RtoEstimator()
    e.on_sample(100 * MS)
    e.on_sample(20 * MS)
    assert e.srtt_us == 90_000  # 7/8 * 100 + 1/8 * 20
    # mdev (4 * RTTVAR) = 200 ms + (80 ms - 200/4 ms) / 8; the RFC would give 230 ms.
    assert e.mdev_us == 203_750
    e.on_sample(90 * MS)  # |error| = 0 is below mdev/4: the RFC decay (gain 1/4) applies
    assert e.mdev_us == 203_750 - 203_750 // 4


def test_rto_never_below_min() -> None:
    e = RtoEstimator()
    for _ in range(200):
        e.on_sample(1 * MS)
    assert e.srtt_us == 1 * MS
    assert e.rto == pytest.approx(TCP_RTO_MIN + 0.001)
    assert e.rto >= TCP_RTO_MIN


def test_rto_capped_at_max() -> None:
    e = RtoEstimator()
    e.on_sample(100_000 * MS)  # 100 s
    assert e.rto == TCP_RTO_MAX == 120.0
    assert e.backed_off(3) == 120.0


def test_backoff_doubles_and_caps() -> None:
    e = RtoEstimator()
    e.on_sample(100 * MS)  # RTO 300 ms
    assert [e.backed_off(k) for k in range(4)] == pytest.approx([0.3, 0.6, 1.2, 2.4])
    assert e.backed_off(9) == pytest.approx(120.0)  # 153.6 s capped
    assert e.rto == pytest.approx(0.3)  # backoff is not stored


def test_variance_term_decays_once_per_flight() -> None:
    """A spike raises the RTO at once; it then decays by 1/4 of the excess over the
    flight's largest deviation once per flight (snd_una passing rtt_seq), not per ACK."""
    e = RtoEstimator()
    una, nxt = 1000, 11000
    e.on_sample(100 * MS, snd_una=una, snd_nxt=nxt)
    e.on_sample(900 * MS, snd_una=una + 1000, snd_nxt=nxt)  # spike within the flight
    spiked = e.rto_us
    assert spiked > 900 * MS
    # More ACKs of the same flight: the deviation shrinks but the RTO's term holds.
    for i in range(2, 9):
        e.on_sample(100 * MS, snd_una=una + i * 1000, snd_nxt=nxt)
    held = e.rto_us
    # ACKs of later flights: the term decays toward max(mdev, TCP_RTO_MIN).
    rtos = []
    for flight in range(1, 30):
        base = nxt + (flight - 1) * 10000
        e.on_sample(100 * MS, snd_una=base + 1000, snd_nxt=base + 10000)
        rtos.append(e.rto_us)
    assert rtos[0] < held
    assert all(b <= a for a, b in itertools.pairwise(rtos))
    assert rtos[-1] == pytest.approx(e.srtt_us + 200 * MS, rel=0.02)


def test_same_samples_without_flights_decay_faster() -> None:
    flights, per_sample = RtoEstimator(), RtoEstimator()
    for i, r in enumerate([100, 900, 100, 100, 100, 100]):
        flights.on_sample(r * MS, snd_una=i * 1000, snd_nxt=100_000)  # all one flight
        per_sample.on_sample(r * MS)
    assert per_sample.rto_us < flights.rto_us


def test_negative_sample_ignored_and_min_rtt() -> None:
    e = RtoEstimator()
    e.on_sample(-1)
    assert not e.has_sample
    for r in (50, 30, 70):
        e.on_sample(r * MS)
    assert e.min_rtt_us == 30 * MS
    e.on_sample(0)  # sub-microsecond RTT counts as 1 us
    assert e.min_rtt_us == 1
    e.on_sample(40 * MS)
    assert e.min_rtt_us == 1


def test_zero_first_sample() -> None:
    e = RtoEstimator()
    e.on_sample(0)
    assert e.has_sample
    assert e.rto == pytest.approx(TCP_RTO_MIN)


samples_us = st.lists(st.integers(0, 300_000_000), min_size=1, max_size=60)


@given(samples_us)
def test_rto_always_within_bounds(samples: list[int]) -> None:
    e = RtoEstimator()
    for r in samples:
        e.on_sample(r)
        assert TCP_RTO_MIN <= e.rto <= TCP_RTO_MAX
        assert e.rttvar_us >= 0
    for k in range(12):
        assert e.rto <= e.backed_off(k) <= TCP_RTO_MAX
        assert e.backed_off(k) <= e.backed_off(k + 1)


@given(samples_us)
def test_srtt_within_sample_range(samples: list[int]) -> None:
    e = RtoEstimator()
    for r in samples:
        e.on_sample(r)
    assert min(samples) - 1 <= e.srtt_us <= max(samples) + 1
    assert e.min_rtt_us == max(min(samples), 1)


@given(st.integers(1, 10_000_000), st.integers(1, 200))
def test_constant_rtt_converges(rtt_us: int, n: int) -> None:
    e = RtoEstimator()
    for _ in range(n):
        e.on_sample(rtt_us)
    assert e.srtt_us == rtt_us
    # The variance term never drops below 200 ms, nor rises above its first value.
    assert e.rto_us >= min(rtt_us + 200_000, 120_000_000)
    assert e.rto_us <= min(rtt_us + max(2 * rtt_us, 200_000), 120_000_000)
