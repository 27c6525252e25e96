"""IPv4 header: round trips, dpkt cross-checks, and every malformed-input reason."""

from __future__ import annotations

import socket
import struct

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustcp.wire.checksum import checksum
from ustcp.wire.errors import ParseError
from ustcp.wire.ipv4 import (
    FLAG_DF,
    FLAG_MF,
    IPv4Header,
    build_ipv4_header,
    is_fragment,
    parse_ipv4,
)

SRC = socket.inet_aton("10.77.0.1")
DST = socket.inet_aton("10.77.0.2")
addresses = st.binary(min_size=4, max_size=4)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)


def restamp(header: bytearray) -> bytes:
    """Recompute the header checksum after editing fields."""
    hlen = (header[0] & 0x0F) * 4
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", checksum(header[:hlen]))
    return bytes(header)


def reason(frame: bytes) -> str:
    with pytest.raises(ParseError) as info:
        parse_ipv4(frame)
    return info.value.reason


@given(addresses, addresses, u8, u8, u16, u8, st.booleans(), st.binary(max_size=300))
def test_build_then_parse_round_trips(src: bytes, dst: bytes, proto: int, ttl: int,
                                      ident: int, tos: int, df: bool, payload: bytes) -> None:
    frame = build_ipv4_header(src, dst, proto, len(payload), ttl=ttl, ident=ident, tos=tos,
                              dont_fragment=df) + payload
    hdr, body = parse_ipv4(frame)
    assert hdr == IPv4Header(src, dst, proto, ttl, ident, tos, 20 + len(payload), 20,
                             FLAG_DF if df else 0)
    assert bytes(body) == payload
    assert isinstance(body, memoryview)
    assert not is_fragment(hdr)


@given(addresses, addresses, u8, u8, u16, u8, st.binary(max_size=300))
def test_dpkt_agrees_on_every_field(src: bytes, dst: bytes, proto: int, ttl: int, ident: int,
                                    tos: int, payload: bytes) -> None:
    frame = build_ipv4_header(src, dst, proto, len(payload), ttl=ttl, ident=ident,
                              tos=tos) + payload
    ip = dpkt.ip.IP(frame)
    assert (ip.v, ip.hl, ip.tos, ip.len, ip.id, ip.df, ip.mf, ip.offset) == (
        4, 5, tos, 20 + len(payload), ident, 1, 0, 0)
    assert (ip.ttl, ip.p, ip.src, ip.dst) == (ttl, proto, src, dst)
    ours = ip.sum
    ip.sum = 0
    ip.data = payload
    assert bytes(ip)[:20] == frame[:20]
    assert ip.sum == ours


@given(addresses, addresses, u8, u16, st.binary(max_size=300),
       st.sampled_from([b"", b"\x01\x01\x01\x00", b"\x94\x04\x00\x00" + b"\x01" * 4]))
def test_parse_dpkt_built_frames(src: bytes, dst: bytes, ttl: int, ident: int, payload: bytes,
                                 opts: bytes) -> None:
    ip = dpkt.ip.IP(src=src, dst=dst, p=17, ttl=ttl, id=ident, tos=0x10, opts=opts,
                    hl=5 + len(opts) // 4, data=payload)
    hdr, body = parse_ipv4(bytes(ip))
    assert (hdr.src, hdr.dst, hdr.proto, hdr.ttl, hdr.ident, hdr.tos) == (
        src, dst, 17, ttl, ident, 0x10)
    assert hdr.header_length == 20 + len(opts)
    assert hdr.total_length == 20 + len(opts) + len(payload)
    assert bytes(body) == payload


def test_payload_is_cut_to_total_length() -> None:
    frame = build_ipv4_header(SRC, DST, 6, 4, ttl=64, ident=1) + b"abcd" + bytes(20)
    _, body = parse_ipv4(frame)
    assert bytes(body) == b"abcd"


def test_gso_super_packet_lengths() -> None:
    header = build_ipv4_header(SRC, DST, 6, 65535 - 20, ttl=64, ident=1)
    assert struct.unpack_from("!H", header, 2)[0] == 65535
    with pytest.raises(ValueError):
        build_ipv4_header(SRC, DST, 6, 65535 - 19, ttl=64, ident=1)


def test_truncated_below_the_header() -> None:
    frame = build_ipv4_header(SRC, DST, 6, 0, ttl=64, ident=1)
    for n in range(20):
        assert reason(frame[:n]) == "ip_short", n


def test_truncated_inside_the_payload() -> None:
    frame = build_ipv4_header(SRC, DST, 6, 10, ttl=64, ident=1) + bytes(10)
    for n in range(20, 30):
        assert reason(frame[:n]) == "ip_bad_length", n


@pytest.mark.parametrize("version", [0, 5, 6, 15])
def test_wrong_version(version: int) -> None:
    header = bytearray(build_ipv4_header(SRC, DST, 6, 0, ttl=64, ident=1))
    header[0] = version << 4 | 5
    assert reason(restamp(header)) == "ip_version"


@pytest.mark.parametrize("ihl", [0, 1, 4])
def test_ihl_below_five(ihl: int) -> None:
    header = bytearray(build_ipv4_header(SRC, DST, 6, 0, ttl=64, ident=1))
    header[0] = 0x40 | ihl
    assert reason(bytes(header)) == "ip_bad_ihl"


def test_ihl_past_the_frame() -> None:
    header = bytearray(build_ipv4_header(SRC, DST, 6, 0, ttl=64, ident=1))
    header[0] = 0x46
    assert reason(bytes(header) + b"\x01\x01") == "ip_bad_ihl"


def test_total_length_shorter_than_the_header() -> None:
    header = bytearray(build_ipv4_header(SRC, DST, 6, 0, ttl=64, ident=1))
    header[2:4] = struct.pack("!H", 19)
    assert reason(restamp(header)) == "ip_bad_length"


@given(st.integers(1, 19), st.integers(0, 7))
def test_any_flipped_header_bit_fails_the_checksum(index: int, bit: int) -> None:
    header = bytearray(build_ipv4_header(SRC, DST, 6, 0, ttl=64, ident=1))
    header[index] ^= 1 << bit
    assert reason(bytes(header)) == "ip_bad_checksum"


def test_fragments() -> None:
    def header(flags_frag: int) -> IPv4Header:
        raw = bytearray(build_ipv4_header(SRC, DST, 6, 0, ttl=64, ident=1))
        raw[6:8] = struct.pack("!H", flags_frag)
        return parse_ipv4(restamp(raw))[0]

    assert not is_fragment(header(FLAG_DF))
    assert not is_fragment(header(0))
    assert is_fragment(header(FLAG_MF))
    assert is_fragment(header(1))
    assert is_fragment(header(0x1FFF))
    assert header(FLAG_MF | 3).flags_frag == FLAG_MF | 3
