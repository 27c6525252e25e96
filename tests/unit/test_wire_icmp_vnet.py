"""ICMP echo and the virtio-net header."""

from __future__ import annotations

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustcp.wire.errors import ParseError
from ustcp.wire.icmp import (
    ECHO_REPLY,
    ECHO_REQUEST,
    build_echo,
    build_echo_reply,
    parse_icmp,
)
from ustcp.wire.vnet import (
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    NEEDS_CSUM,
    VNET_HDR_LEN,
    VnetHeader,
    build_vnet,
    parse_vnet,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)


def dpkt_echo(icmp_type: int, ident: int, seq: int, data: bytes) -> bytes:
    return bytes(dpkt.icmp.ICMP(type=icmp_type, code=0,
                                data=dpkt.icmp.ICMP.Echo(id=ident, seq=seq, data=data)))


@given(u16, u16, st.binary(max_size=200))
def test_parse_dpkt_echo_request(ident: int, seq: int, data: bytes) -> None:
    raw = dpkt_echo(ECHO_REQUEST, ident, seq, data)
    msg = parse_icmp(raw)
    assert (msg.icmp_type, msg.code, msg.ident, msg.seq) == (ECHO_REQUEST, 0, ident, seq)
    assert bytes(msg.data) == data
    assert msg.checksum == dpkt.icmp.ICMP(raw).sum


@given(u16, u16, st.binary(max_size=200))
def test_echo_reply_matches_dpkt(ident: int, seq: int, data: bytes) -> None:
    reply = build_echo_reply(parse_icmp(dpkt_echo(ECHO_REQUEST, ident, seq, data)))
    assert reply == dpkt_echo(ECHO_REPLY, ident, seq, data)
    parsed = dpkt.icmp.ICMP(reply)
    assert (parsed.type, parsed.code, parsed.echo.id, parsed.echo.seq) == (0, 0, ident, seq)
    assert parsed.echo.data == data


@given(st.sampled_from([ECHO_REQUEST, ECHO_REPLY]), u16, u16, st.binary(max_size=200))
def test_build_echo_round_trips(icmp_type: int, ident: int, seq: int, data: bytes) -> None:
    msg = parse_icmp(build_echo(icmp_type, ident, seq, data))
    assert (msg.icmp_type, msg.ident, msg.seq, bytes(msg.data)) == (icmp_type, ident, seq, data)


def test_all_zero_echo_reply_checksum_is_all_ones() -> None:
    assert build_echo(ECHO_REPLY, 0, 0, b"") == b"\x00\x00\xff\xff\x00\x00\x00\x00"


def test_short_icmp() -> None:
    raw = dpkt_echo(ECHO_REQUEST, 1, 2, b"")
    for n in range(8):
        with pytest.raises(ParseError) as info:
            parse_icmp(raw[:n])
        assert info.value.reason == "icmp_short"


@given(st.binary(max_size=64), st.data())
def test_any_flipped_bit_fails_the_checksum(data: bytes, draw: st.DataObject) -> None:
    raw = bytearray(dpkt_echo(ECHO_REQUEST, 7, 8, data))
    raw[draw.draw(st.integers(0, len(raw) - 1))] ^= 1 << draw.draw(st.integers(0, 7))
    with pytest.raises(ParseError) as info:
        parse_icmp(bytes(raw))
    assert info.value.reason == "icmp_bad_checksum"


# ------------------------------------------------------------------ virtio-net header


def test_vnet_constants() -> None:
    assert (VNET_HDR_LEN, NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_ECN) == (
        10, 1, 0, 1, 4, 0x80)


def test_vnet_layout_is_little_endian() -> None:
    hdr = VnetHeader(flags=NEEDS_CSUM, gso_type=GSO_TCPV4, hdr_len=52, gso_size=1448,
                     csum_start=20, csum_offset=16)
    assert build_vnet(hdr) == bytes.fromhex("0101" "3400" "a805" "1400" "1000")


@given(u8, u8, u16, u16, u16, u16)
def test_vnet_round_trips(flags: int, gso_type: int, hdr_len: int, gso_size: int, start: int,
                          offset: int) -> None:
    hdr = VnetHeader(flags, gso_type, hdr_len, gso_size, start, offset)
    raw = build_vnet(hdr)
    assert len(raw) == VNET_HDR_LEN
    assert parse_vnet(raw + b"frame") == hdr
    assert parse_vnet(memoryview(raw)) == hdr


def test_vnet_short() -> None:
    with pytest.raises(ParseError) as info:
        parse_vnet(bytes(9))
    assert info.value.reason == "vnet_short"
