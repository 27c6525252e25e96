"""SYN cookies (ustcp.tcp.syncookies) against Linux's net/ipv4/syncookies.c rules."""

from __future__ import annotations

import itertools
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustcp.tcp.syncookies import (
    COOKIEBITS,
    MAX_SYNCOOKIE_AGE,
    MSSTAB,
    CookieTsOptions,
    SyncookieSecrets,
    cookie_check,
    cookie_init_sequence,
    decode_ts_options,
    encode_ts_options,
    mss_index,
    tcp_cookie_time,
)

PEER = socket.inet_aton("10.77.0.1")
US = socket.inet_aton("10.77.0.2")
PEER_PORT = 40000
US_PORT = 80
SECRETS = SyncookieSecrets(seed=b"test")
NOW = 1_000_000.0

u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)


def _make(peer_isn: int, mss: int, now: float = NOW) -> tuple[int, int]:
    return cookie_init_sequence(SECRETS, now, PEER, PEER_PORT, US, US_PORT, peer_isn, mss)


def _check(peer_isn: int, cookie: int, now: float = NOW) -> int | None:
    return cookie_check(SECRETS, now, PEER, PEER_PORT, US, US_PORT, peer_isn, cookie)


@pytest.mark.parametrize("mss", MSSTAB)
def test_round_trip_table_entries(mss: int) -> None:
    cookie, encoded = _make(12345, mss)
    assert encoded == mss
    assert _check(12345, cookie) == mss


@given(peer_isn=u32, mss=st.integers(min_value=1, max_value=65535),
       now=st.floats(min_value=0, max_value=2**40, allow_nan=False))
def test_round_trip_any_mss(peer_isn: int, mss: int, now: float) -> None:
    cookie, encoded = _make(peer_isn, mss, now)
    assert 0 <= cookie <= 0xFFFFFFFF
    expected = max([m for m in MSSTAB if m <= mss], default=MSSTAB[0])
    assert encoded == expected
    assert _check(peer_isn, cookie, now) == expected


def test_mss_below_table_encodes_536_as_linux() -> None:
    # cookie_v4_init_sequence stops at index 0 whatever the peer's MSS
    assert mss_index(100) == 0
    assert _make(1, 100)[1] == 536
    assert [mss_index(m) for m in (535, 536, 1299, 1300, 1439, 1440, 1459, 1460, 9000)] == [
        0, 0, 0, 1, 1, 2, 2, 3, 3]


@given(peer_isn=u32, mss=st.sampled_from(MSSTAB))
def test_wrong_tuple_or_isn_rejected(peer_isn: int, mss: int) -> None:
    cookie, _ = _make(peer_isn, mss)
    other = socket.inet_aton("10.77.0.3")
    chk = cookie_check
    # A forged cookie passes only if the 2-bit index and the 8-bit counter happen to fit
    # (Linux accepts that risk too); with these fixed inputs none of these does.
    assert chk(SECRETS, NOW, other, PEER_PORT, US, US_PORT, peer_isn, cookie) is None
    assert chk(SECRETS, NOW, PEER, PEER_PORT + 1, US, US_PORT, peer_isn, cookie) is None
    assert chk(SECRETS, NOW, PEER, PEER_PORT, other, US_PORT, peer_isn, cookie) is None
    assert chk(SECRETS, NOW, PEER, PEER_PORT, US, US_PORT + 1, peer_isn, cookie) is None
    assert _check((peer_isn + 0x5A5A5A5) & 0xFFFFFFFF, cookie) is None
    assert _check(peer_isn ^ 0x80000000, cookie) is None


def test_an_offset_cookie_moves_the_index_an_offset_isn_fails() -> None:
    # The index is added to H1 (secure_tcp_syn_cookie): cookie+1 reads as the next table
    # entry, a property of Linux's layout; past the table it is rejected.
    cookie, _ = _make(1000, 536)
    assert _check(1000, cookie + 1) == 1300
    assert _check(1000, cookie + 4) is None
    # peer_isn is inside H1 (ustcp, not Linux): an ISN one off either way fails, where
    # Linux reads the neighbouring index (the duplicate ACK after one byte of data).
    assert _check(999, cookie) is None
    assert _check(1001, cookie) is None
    cookie, _ = _make(1000, 1460)
    assert _check(1001, cookie) is None


def test_forgery_rate_is_small() -> None:
    # Random cookies for a fixed tuple: only a ~(MAX_SYNCOOKIE_AGE/256)*(4/2^24) fraction passes.
    accepted = sum(_check(7, c * 2654435761 & 0xFFFFFFFF) is not None for c in range(20000))
    assert accepted == 0


def test_other_secrets_reject() -> None:
    cookie, _ = _make(99, 1460)
    other = SyncookieSecrets(seed=b"other")
    assert cookie_check(other, NOW, PEER, PEER_PORT, US, US_PORT, 99, cookie) is None


@pytest.mark.parametrize("age", range(6))
def test_counter_age(age: int) -> None:
    # Made at the last instant of a minute: the counter ticks a moment later.
    made = 60.0 * 5000 + 59.999
    cookie, _ = _make(42, 1460, made)
    checked = made + 60.0 * age
    assert tcp_cookie_time(checked) - tcp_cookie_time(made) == age
    # include/net/tcp.h: valid while the counter difference is < MAX_SYNCOOKIE_AGE (2)
    assert _check(42, cookie, checked) == (1460 if age < MAX_SYNCOOKIE_AGE else None)


def test_counter_age_in_seconds() -> None:
    made = 60.0 * 5000  # first instant of a minute: valid for almost 120 s
    cookie, _ = _make(42, 1440, made)
    assert _check(42, cookie, made + 119.9) == 1440
    assert _check(42, cookie, made + 120.0) is None
    assert _check(42, cookie, made - 0.001) is None  # from the future: diff wraps to 255


def test_counter_wraps_in_eight_bits() -> None:
    made = 60.0 * 255 + 1  # counter 255; one minute later it is 256, i.e. 0 in 8 bits
    cookie, _ = _make(5, 536, made)
    assert _check(5, cookie, made + 60.0) == 536
    assert _check(5, cookie, made + 120.0) is None


def test_counter_in_top_eight_bits() -> None:
    for minutes in (0, 1, 77, 255, 256, 1000):
        now = 60.0 * minutes + 3
        cookie, _ = _make(0xDEADBEEF, 1300, now)
        h0 = SECRETS.cookie_hash(PEER, PEER_PORT, US, US_PORT, 0, 0)
        rest = (cookie - h0 - 0xDEADBEEF) & 0xFFFFFFFF
        assert rest >> COOKIEBITS == minutes & 0xFF
        h1 = SECRETS.cookie_hash(PEER, PEER_PORT, US, US_PORT, minutes, 1, 0xDEADBEEF)
        assert (rest - h1) & ((1 << COOKIEBITS) - 1) == MSSTAB.index(1300)


def test_seeded_secrets_are_deterministic() -> None:
    a = cookie_init_sequence(SyncookieSecrets(b"s"), NOW, PEER, 1, US, 2, 3, 1460)
    b = cookie_init_sequence(SyncookieSecrets(b"s"), NOW, PEER, 1, US, 2, 3, 1460)
    c = cookie_init_sequence(SyncookieSecrets(b"t"), NOW, PEER, 1, US, 2, 3, 1460)
    assert a == b
    assert a != c


def test_unseeded_secrets_differ() -> None:
    a = cookie_init_sequence(SyncookieSecrets(), NOW, PEER, 1, US, 2, 3, 1460)
    b = cookie_init_sequence(SyncookieSecrets(), NOW, PEER, 1, US, 2, 3, 1460)
    assert a != b


WSCALES: list[int | None] = [*range(15), None]


@pytest.mark.parametrize(("wscale", "sack", "ecn"),
                         list(itertools.product(WSCALES, [False, True], [False, True])))
def test_ts_options_round_trip(wscale: int | None, sack: bool, ecn: bool) -> None:
    for ts_now in (0x12345678, 0x12345640, 0x1234567F, 64, 0xFFFFFFFF):
        ts = encode_ts_options(ts_now, wscale, sack, ecn)
        assert 0 <= ts <= 0xFFFFFFFF
        assert ts <= ts_now
        assert ts_now - ts < 64
        assert decode_ts_options(ts) == CookieTsOptions(wscale, sack, ecn)


@given(ts_now=st.integers(min_value=64, max_value=0xFFFFFFFF),
       wscale=st.sampled_from(WSCALES), sack=st.booleans(), ecn=st.booleans())
def test_ts_never_in_the_future(ts_now: int, wscale: int | None, sack: bool, ecn: bool) -> None:
    ts = encode_ts_options(ts_now, wscale, sack, ecn)
    # cookie_init_timestamp: high bits from the clock, at most one 64-tick step back
    assert ts_now - 64 < ts <= ts_now
    assert decode_ts_options(ts) == CookieTsOptions(wscale, sack, ecn)


def test_ts_future_rule_example() -> None:
    # clock low bits 0b000011; options 0b011111 (wscale none, SACK) would be ahead by 28
    assert encode_ts_options(0x1000 + 3, None, True, False) == 0x1000 - 64 + 0x1F
    # options below the clock's low bits: the clock's high bits kept as they are
    assert encode_ts_options(0x1000 + 40, 7, False, False) == 0x1000 + 7
    # equal low bits: exactly the clock
    assert encode_ts_options(0x1000 + 0x27, 7, False, True) == 0x1000 + 0x27


def test_ts_small_clock_wraps_in_32_bits() -> None:
    assert encode_ts_options(3, None, False, False) == (3 - 3 + 0xF - 64) & 0xFFFFFFFF


def test_ts_encode_rejects_bad_wscale() -> None:
    with pytest.raises(ValueError):
        encode_ts_options(1000, 15, False, False)
    with pytest.raises(ValueError):
        encode_ts_options(1000, -1, False, False)


def test_ts_decode_fails_when_sysctls_now_off() -> None:
    # cookie_timestamp_decode: SACK / wscale encoded but now disabled -> the ACK is dropped
    with_sack = encode_ts_options(1 << 20, None, True, False)
    with_ws = encode_ts_options(1 << 20, 7, False, False)
    plain = encode_ts_options(1 << 20, None, False, True)
    assert decode_ts_options(with_sack, tcp_sack=False) is None
    assert decode_ts_options(with_ws, tcp_window_scaling=False) is None
    assert decode_ts_options(plain, tcp_sack=False, tcp_window_scaling=False) == CookieTsOptions(
        None, False, True)
