"""The Internet checksum against dpkt.in_cksum and RFC 1071's worked example."""

from __future__ import annotations

import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustcp.compiled import engine_kind
from ustcp.wire import checksum as checksum_module
from ustcp.wire.checksum import checksum, fold, ones_sum, pseudo_header_sum, word_sum

addresses = st.binary(min_size=4, max_size=4)


@given(st.binary(max_size=3000))
def test_checksum_matches_dpkt(data: bytes) -> None:
    assert checksum(data) == dpkt.in_cksum(data)


@given(st.binary(max_size=3000))
def test_memoryview_and_bytearray_give_the_same_sum(data: bytes) -> None:
    assert ones_sum(memoryview(data)) == ones_sum(bytearray(data)) == ones_sum(data)


@given(st.binary(max_size=3000))
def test_word_loop_and_big_integer_give_the_same_sum(data: bytes) -> None:
    # ones_sum takes one of the two ways; both are held to the same folded sum
    padded = int.from_bytes(data, "big") << (8 * (len(data) & 1))
    assert fold(word_sum(data)) == fold(padded)


def test_the_word_loop_is_taken_exactly_when_compiled() -> None:
    assert (engine_kind() == "compiled") == checksum_module.WORD_LOOP


@given(st.binary(max_size=200).filter(lambda b: len(b) % 2 == 0), st.binary(max_size=200))
def test_initial_chains_sums(head: bytes, tail: bytes) -> None:
    assert ones_sum(tail, ones_sum(head)) == ones_sum(head + tail)
    assert checksum(tail, ones_sum(head)) == dpkt.in_cksum(head + tail)


def test_rfc1071_example() -> None:
    # RFC 1071 3: 0001 + f203 + f4f5 + f6f7 = 2ddf0, folded ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert checksum(data) == 0xFFFF - 0xDDF2


def test_odd_length_pads_on_the_right() -> None:
    assert ones_sum(b"\x01") == 0x0100
    assert ones_sum(b"\x00\x01\x02") == 0x0201


def test_zero_and_negative_zero() -> None:
    assert ones_sum(b"") == 0
    assert ones_sum(bytes(64)) == 0
    assert checksum(bytes(64)) == 0xFFFF
    # A non-zero sum that is a multiple of 0xFFFF is "negative zero", never 0.
    assert ones_sum(b"\xff\xff") == 0xFFFF
    assert ones_sum(b"\x00\x01\xff\xfe") == 0xFFFF
    assert ones_sum(b"\xff\xff\xff\xff") == 0xFFFF
    assert checksum(b"\x00\x01\xff\xfe") == 0
    assert fold(0) == 0
    assert fold(0xFFFF) == 0xFFFF
    assert fold(0x1FFFE) == 0xFFFF
    assert fold(0x10000) == 1


def test_64k_buffer_matches_dpkt() -> None:
    data = bytes(range(256)) * 256
    assert checksum(data) == dpkt.in_cksum(data)
    assert checksum(data[:-1]) == dpkt.in_cksum(data[:-1])


@settings(max_examples=30)
@given(st.binary(min_size=4000, max_size=70000))
def test_large_buffers_match_dpkt(data: bytes) -> None:
    # Sizes above the halving threshold take the split-and-add path.
    assert checksum(data) == dpkt.in_cksum(data)


@pytest.mark.parametrize("size", [4097, 8192, 65535, 65536, 65536 + 40])
@pytest.mark.parametrize("fill", [b"\xff", b"\x01", b"\x80\x00\x7f"])
def test_large_patterned_buffers_match_dpkt(size: int, fill: bytes) -> None:
    data = (fill * size)[:size]
    assert checksum(data) == dpkt.in_cksum(data)
    cut = (size // 2) & ~1  # chaining needs an even-length head
    assert ones_sum(data[cut:], ones_sum(data[:cut])) == ones_sum(data)


@given(addresses, addresses, st.integers(0, 255), st.integers(0, 0xFFFF))
def test_pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> None:
    pseudo = struct.pack("!4s4sxBH", src, dst, proto, length)
    assert pseudo_header_sum(src, dst, proto, length) == ones_sum(pseudo)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16),
       st.integers(0, 0xFFFFFFFF))
def test_pseudo_header_sum_ipv6_length_is_32_bits(src: bytes, dst: bytes, length: int) -> None:
    pseudo = struct.pack("!16s16sI3xB", src, dst, length, 6)
    assert pseudo_header_sum(src, dst, 6, length) == ones_sum(pseudo)


@given(st.binary(min_size=2, max_size=500).filter(lambda b: len(b) % 2 == 0))
def test_data_with_its_checksum_sums_to_all_ones(data: bytes) -> None:
    stamped = data[:2] + b"\0\0" + data[2:]
    csum = checksum(stamped)
    stamped = data[:2] + struct.pack("!H", csum) + data[2:]
    assert ones_sum(stamped) == 0xFFFF
