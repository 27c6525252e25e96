"""Sequence-number arithmetic across the 2**32 wrap (RFC 9293 3.4, Linux before/after)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ustcp.tcp.seq import after, after_eq, before, before_eq, between, seq_add, seq_diff

TOP = 0xFFFFFFFF
u32 = st.integers(min_value=0, max_value=TOP)
step = st.integers(min_value=1, max_value=0x7FFFFFFF)


def test_across_the_wrap() -> None:
    assert seq_add(TOP, 1) == 0
    assert seq_add(5, -10) == TOP - 4
    assert seq_diff(3, TOP) == 4  # 3 is four after 2**32 - 1
    assert seq_diff(TOP, 3) == -4
    assert before(TOP, 3) and after(3, TOP)
    assert before_eq(7, 7) and after_eq(7, 7) and not before(7, 7)
    assert between(TOP - 10, 2, 20) and not between(TOP - 10, 21, 20)
    assert between(TOP, TOP, 0) and between(TOP, 0, 0)


def test_half_the_space_is_the_horizon() -> None:
    # Exactly 2**31 apart, Linux's before() says "before" both ways (the signed difference
    # is INT_MIN); one less and the order is unambiguous.
    assert before(0, 0x80000000) and before(0x80000000, 0)
    assert before(0, 0x7FFFFFFF) and not before(0x7FFFFFFF, 0)
    assert seq_diff(0x7FFFFFFF, 0) == 0x7FFFFFFF
    assert seq_diff(0x80000000, 0) == -0x80000000


@given(u32, step)
def test_adding_moves_after(a: int, n: int) -> None:
    b = seq_add(a, n)
    assert after(b, a) and before(a, b)
    assert seq_diff(b, a) == n and seq_diff(a, b) == -n
    assert between(a, seq_add(a, n // 2), b)


@given(u32, u32)
def test_diff_and_add_invert(a: int, b: int) -> None:
    assert seq_add(b, seq_diff(a, b)) == a
    assert -0x80000000 <= seq_diff(a, b) < 0x80000000
