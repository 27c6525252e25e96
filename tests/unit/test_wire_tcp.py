"""TCP header and options: round trips, dpkt cross-checks, Linux layouts, malformed input."""

from __future__ import annotations

import socket
import struct

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustcp.wire.checksum import checksum, pseudo_header_sum
from ustcp.wire.errors import ParseError
from ustcp.wire.tcp import (
    ACK,
    FIN,
    OPT_EOL,
    OPT_MSS,
    OPT_NOP,
    OPT_SACK,
    OPT_SACK_PERMITTED,
    OPT_TIMESTAMP,
    OPT_WSCALE,
    PSH,
    SYN,
    TcpOptions,
    TcpSegment,
    build_tcp,
    encode_options,
    option_kinds,
    parse_tcp,
)

SRC = socket.inet_aton("10.77.0.1")
DST = socket.inet_aton("10.77.0.2")
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
sack_block = st.tuples(u32, u32)


@st.composite
def segments(draw: st.DrawFn) -> TcpSegment:
    flags = draw(st.integers(0, 0xFF))
    if flags & SYN:
        ts = draw(st.none() | st.tuples(u32, u32))
        opts = TcpOptions(mss=draw(st.none() | u16), wscale=draw(st.none() | st.integers(0, 14)),
                          sack_permitted=draw(st.booleans()),
                          ts_val=ts[0] if ts else None, ts_ecr=ts[1] if ts else 0)
    else:
        ts = draw(st.none() | st.tuples(u32, u32))
        blocks = draw(st.lists(sack_block, max_size=3 if ts else 4))
        opts = TcpOptions(sack_blocks=tuple(blocks), ts_val=ts[0] if ts else None,
                          ts_ecr=ts[1] if ts else 0)
    return TcpSegment(draw(u16), draw(u16), draw(u32), draw(u32), flags, draw(u16), opts,
                      draw(st.binary(max_size=300)), draw(u16))


def wire(seg: TcpSegment, mode: str = "full") -> bytes:
    return build_tcp(seg, SRC, DST, checksum=mode) + bytes(seg.payload)  # type: ignore[arg-type]


def dpkt_frame(tcp: dpkt.tcp.TCP) -> bytes:
    """An IPv4 frame around ``tcp`` with the checksums dpkt computes."""
    tcp.sum = 0
    ip = dpkt.ip.IP(src=SRC, dst=DST, p=dpkt.ip.IP_PROTO_TCP, data=tcp)
    return bytes(ip)


# ------------------------------------------------------------------ round trips


@given(segments())
def test_build_then_parse_round_trips(seg: TcpSegment) -> None:
    parsed = parse_tcp(wire(seg), SRC, DST, verify_checksum=True)
    assert parsed == seg
    assert isinstance(parsed.payload, memoryview)


@given(segments())
def test_options_round_trip(seg: TcpSegment) -> None:
    raw = encode_options(seg.options, seg.flags)
    assert len(raw) % 4 == 0
    assert len(raw) <= 40
    hdr = struct.pack("!HHIIBBHHH", 1, 2, 0, 0, (20 + len(raw)) << 2, seg.flags, 0, 0, 0) + raw
    assert parse_tcp(hdr, SRC, DST, verify_checksum=False).options == seg.options


@given(segments())
def test_dpkt_agrees_on_every_field(seg: TcpSegment) -> None:
    raw = wire(seg)
    ip = dpkt.ip.IP(src=SRC, dst=DST, p=6, data=dpkt.tcp.TCP(raw))
    tcp = ip.data
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack) == (seg.src_port, seg.dst_port, seg.seq,
                                                        seg.ack)
    assert (tcp.flags, tcp.win, tcp.urp) == (seg.flags, seg.window, seg.urg_ptr)
    assert tcp.data == seg.payload
    assert tcp.opts == encode_options(seg.options, seg.flags)
    ours = tcp.sum
    assert bytes(ip)[20:] == raw  # dpkt leaves a non-zero sum alone...
    if ours:
        assert dpkt_frame(tcp)[20:] == raw  # ...and computes the same one from scratch


@given(segments())
def test_dpkt_option_parse_agrees(seg: TcpSegment) -> None:
    parsed = dict(dpkt.tcp.parse_opts(encode_options(seg.options, seg.flags)))
    opts = seg.options
    if opts.mss is not None and seg.flags & SYN:
        assert struct.unpack("!H", parsed[OPT_MSS]) == (opts.mss,)
    if opts.wscale is not None and seg.flags & SYN:
        assert parsed[OPT_WSCALE] == bytes((opts.wscale,))
    if opts.ts_val is not None:
        assert struct.unpack("!II", parsed[OPT_TIMESTAMP]) == (opts.ts_val, opts.ts_ecr)
    if opts.sack_blocks:
        sack = parsed[OPT_SACK]
        assert list(struct.iter_unpack("!II", sack)) == list(opts.sack_blocks)
    assert (OPT_SACK_PERMITTED in parsed) == (opts.sack_permitted and bool(seg.flags & SYN))


@given(u16, u16, u32, u32, st.integers(0, 0xFF), u16, st.binary(max_size=200),
       st.lists(st.sampled_from([
           bytes((OPT_MSS, 4, 5, 0xB4)), bytes((OPT_WSCALE, 3, 7)),
           bytes((OPT_SACK_PERMITTED, 2)), bytes((OPT_NOP,)),
           bytes((OPT_TIMESTAMP, 10)) + bytes(range(1, 9)),
           bytes((253, 4, 0xAB, 0xCD)),  # experimental kind, skipped by its length
       ]), max_size=4))
def test_parse_dpkt_built_segments(sport: int, dport: int, seq: int, ack: int, flags: int,
                                   win: int, data: bytes, options: list[bytes]) -> None:
    raw_opts = b"".join(options)
    raw_opts += bytes(-len(raw_opts) % 4)  # EOL padding
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=win,
                       off=5 + len(raw_opts) // 4, opts=raw_opts, data=data)
    frame = dpkt_frame(tcp)
    seg = parse_tcp(frame[20:], SRC, DST, verify_checksum=True)
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window) == (
        sport, dport, seq, ack, flags, win)
    assert bytes(seg.payload) == data
    joined = b"".join(options)
    assert (seg.options.mss == 1460) == (bytes((OPT_MSS, 4, 5, 0xB4)) in joined)
    assert (seg.options.wscale == 7) == (bytes((OPT_WSCALE, 3, 7)) in joined)
    assert seg.options.sack_permitted == (bytes((OPT_SACK_PERMITTED, 2)) in options)
    has_ts = any(o[0] == OPT_TIMESTAMP for o in options)
    assert (seg.options.ts_val, seg.options.ts_ecr) == (
        (0x01020304, 0x05060708) if has_ts else (None, 0))


def test_payload_is_a_view_of_the_buffer() -> None:
    buf = bytearray(wire(TcpSegment(1, 2, 3, 4, ACK, 5, payload=b"hello")))
    seg = parse_tcp(buf, SRC, DST, verify_checksum=False)
    buf[-5:] = b"HELLO"
    assert bytes(seg.payload) == b"HELLO"


# ------------------------------------------------------------------ Linux layouts


def syn_ack(opts: TcpOptions) -> bytes:
    return build_tcp(TcpSegment(80, 5000, 1, 2, SYN | ACK, 65535, opts), SRC, DST,
                     checksum="full")


def test_syn_ack_layout_without_timestamps() -> None:
    hdr = syn_ack(TcpOptions(mss=1460, wscale=8, sack_permitted=True))
    # <mss 1460,nop,nop,sackOK,nop,wscale 8>
    assert hdr[20:] == bytes.fromhex("020405b4" "01010402" "01030308")
    assert hdr[12] >> 4 == 8
    assert option_kinds(hdr) == [OPT_MSS, OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, OPT_NOP,
                                 OPT_WSCALE]


def test_syn_ack_layout_with_timestamps() -> None:
    hdr = syn_ack(TcpOptions(mss=1460, wscale=8, sack_permitted=True, ts_val=0x11223344,
                             ts_ecr=0x55667788))
    # <mss 1460,sackOK,TS val X ecr Y,nop,wscale 8>
    assert hdr[20:] == bytes.fromhex("020405b4" "0402080a" "11223344" "55667788" "01030308")
    assert option_kinds(hdr) == [OPT_MSS, OPT_SACK_PERMITTED, OPT_TIMESTAMP, OPT_NOP,
                                 OPT_WSCALE]


def test_syn_layout_timestamps_without_sack() -> None:
    raw = encode_options(TcpOptions(mss=1460, wscale=7, ts_val=1, ts_ecr=0), SYN)
    assert raw == bytes.fromhex("020405b4" "0101080a" "00000001" "00000000" "01030307")


def test_syn_layout_mss_only_and_sack_only() -> None:
    assert encode_options(TcpOptions(mss=536), SYN) == bytes.fromhex("02040218")
    assert encode_options(TcpOptions(sack_permitted=True), SYN) == bytes.fromhex("01010402")
    assert encode_options(TcpOptions(), SYN) == b""


def test_established_layouts() -> None:
    ts = encode_options(TcpOptions(ts_val=7, ts_ecr=9), ACK)
    assert ts == bytes.fromhex("0101080a" "00000007" "00000009")
    sack = encode_options(TcpOptions(sack_blocks=((1, 2), (3, 4))), ACK)
    assert sack == bytes.fromhex("0101" "0512" "00000001" "00000002" "00000003" "00000004")
    # MSS, wscale and sackOK belong to SYNs only (RFC 9293 3.2, RFC 7323 2.2).
    assert encode_options(TcpOptions(mss=1460, wscale=8, sack_permitted=True), ACK) == b""


def test_sack_blocks_capped_by_option_space() -> None:
    blocks = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10))
    no_ts = encode_options(TcpOptions(sack_blocks=blocks), ACK)
    assert no_ts[:4] == bytes.fromhex("01010522") and len(no_ts) == 36
    with_ts = encode_options(TcpOptions(sack_blocks=blocks, ts_val=1), ACK | FIN)
    assert with_ts[12:16] == bytes.fromhex("0101051a") and len(with_ts) == 40
    parsed = parse_tcp(struct.pack("!HHIIBBHHH", 1, 2, 0, 0, 15 << 4, ACK, 0, 0, 0) + with_ts,
                       SRC, DST, verify_checksum=False)
    assert parsed.options.sack_blocks == blocks[:3]
    assert option_kinds(build_tcp(TcpSegment(1, 2, 0, 0, ACK, 0, TcpOptions(
        sack_blocks=blocks, ts_val=1)), SRC, DST, checksum="none")) == [
        OPT_NOP, OPT_NOP, OPT_TIMESTAMP, OPT_NOP, OPT_NOP, OPT_SACK]


# ------------------------------------------------------------------ checksum modes


@given(segments())
def test_partial_checksum_is_the_folded_pseudo_header_sum(seg: TcpSegment) -> None:
    partial = build_tcp(seg, SRC, DST, checksum="partial")
    full = build_tcp(seg, SRC, DST, checksum="full")
    length = len(partial) + len(seg.payload)
    assert struct.unpack_from("!H", partial, 16)[0] == pseudo_header_sum(SRC, DST, 6, length)
    # What the device does with NEEDS_CSUM: sum from csum_start to the end, store the
    # complement at csum_offset 16.
    finished = checksum(partial + bytes(seg.payload))
    assert finished == struct.unpack_from("!H", full, 16)[0]
    assert partial[:16] == full[:16] and partial[18:] == full[18:]


def test_checksum_none_and_unknown_mode() -> None:
    seg = TcpSegment(1, 2, 3, 4, ACK | PSH, 5, payload=b"x")
    assert build_tcp(seg, SRC, DST, checksum="none")[16:18] == b"\0\0"
    with pytest.raises(ValueError):
        build_tcp(seg, SRC, DST, checksum="bogus")  # type: ignore[arg-type]


# ------------------------------------------------------------------ malformed input


def reason(buf: bytes, verify: bool = True) -> str:
    with pytest.raises(ParseError) as info:
        parse_tcp(buf, SRC, DST, verify_checksum=verify)
    return info.value.reason


def test_truncated_at_every_length() -> None:
    seg = TcpSegment(1000, 80, 7, 9, ACK | PSH, 512,
                     TcpOptions(ts_val=5, ts_ecr=6, sack_blocks=((10, 20),)),
                     bytes(range(1, 60)))
    raw = wire(seg)
    hlen = raw[12] >> 2
    assert hlen == 44
    for n in range(len(raw)):
        expected = ("tcp_short" if n < 20 else "tcp_bad_doff" if n < hlen
                    else "tcp_bad_checksum")
        assert reason(raw[:n]) == expected, n
    assert parse_tcp(raw, SRC, DST, verify_checksum=True).options == seg.options


@pytest.mark.parametrize("doff", [0, 1, 4])
def test_data_offset_below_five(doff: int) -> None:
    raw = bytearray(wire(TcpSegment(1, 2, 3, 4, ACK, 5)))
    raw[12] = doff << 4
    assert reason(bytes(raw), verify=False) == "tcp_bad_doff"


def test_data_offset_past_the_end() -> None:
    raw = bytearray(wire(TcpSegment(1, 2, 3, 4, ACK, 5, payload=b"abcd")))
    raw[12] = 7 << 4  # 28 bytes of header in a 24-byte segment
    assert reason(bytes(raw), verify=False) == "tcp_bad_doff"


def with_options(raw_opts: bytes, payload: bytes = b"") -> bytes:
    raw_opts += bytes(-len(raw_opts) % 4)
    hdr = struct.pack("!HHIIBBHHH", 1, 2, 3, 4, (20 + len(raw_opts)) << 2, ACK, 5, 0, 0)
    seg = hdr + raw_opts + payload
    csum = checksum(seg, pseudo_header_sum(SRC, DST, 6, len(seg)))
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


@pytest.mark.parametrize("raw_opts", [
    bytes((OPT_MSS, 0, 5, 0xB4)),  # length 0
    bytes((OPT_MSS, 1, 5, 0xB4)),  # length 1
    bytes((99, 1, OPT_NOP, OPT_NOP)),  # length 1 followed by what would parse
    bytes((99, 0, OPT_NOP, OPT_NOP)),  # length 0 likewise
    bytes((OPT_NOP, OPT_NOP, OPT_NOP, OPT_MSS)),  # no length octet before the end
    bytes((OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10)),  # runs past the header
    bytes((99, 8, 0, 0)),  # unknown kind running past the header
    bytes((OPT_NOP, OPT_WSCALE, 5, 1)),  # wscale claiming 5 bytes of the 4 left
])
def test_bad_option_lengths(raw_opts: bytes) -> None:
    frame = with_options(raw_opts)
    assert reason(frame) == "tcp_bad_option"
    with pytest.raises(ParseError) as info:
        option_kinds(frame)
    assert info.value.reason == "tcp_bad_option"


@pytest.mark.parametrize("raw_opts", [
    bytes((OPT_MSS, 3, 5)),
    bytes((OPT_MSS, 6, 5, 0xB4, 0, 0)),
    bytes((OPT_WSCALE, 4, 7, 0)),
    bytes((OPT_SACK_PERMITTED, 3, 0)),
    bytes((OPT_TIMESTAMP, 8)) + bytes(6),
    bytes((OPT_SACK, 9)) + bytes(7),
    bytes((OPT_SACK, 2)),
])
def test_wrong_fixed_length_options_are_ignored(raw_opts: bytes) -> None:
    seg = parse_tcp(with_options(raw_opts), SRC, DST, verify_checksum=True)
    assert seg.options == TcpOptions()


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (14, 14), (15, 14), (255, 14)])
def test_wscale_clamped_to_14(value: int, expected: int) -> None:
    seg = parse_tcp(with_options(bytes((OPT_NOP, OPT_WSCALE, 3, value))), SRC, DST,
                    verify_checksum=True)
    assert seg.options.wscale == expected


def test_eol_ends_option_parsing() -> None:
    frame = with_options(bytes((OPT_MSS, 4, 5, 0xB4, OPT_EOL, OPT_MSS, 0, 0)))
    seg = parse_tcp(frame, SRC, DST, verify_checksum=True)
    assert seg.options == TcpOptions(mss=1460)
    assert option_kinds(frame) == [OPT_MSS, OPT_EOL]


def test_unknown_options_are_skipped_by_their_length() -> None:
    frame = with_options(bytes((30, 4, 0xFF, 0xFF, OPT_MSS, 4, 2, 0x18)), b"data")
    seg = parse_tcp(frame, SRC, DST, verify_checksum=True)
    assert seg.options == TcpOptions(mss=536)
    assert bytes(seg.payload) == b"data"
    assert option_kinds(frame) == [30, OPT_MSS]


@given(segments(), st.data())
def test_any_flipped_bit_fails_the_checksum(seg: TcpSegment, data: st.DataObject) -> None:
    raw = bytearray(wire(seg))
    index = data.draw(st.integers(0, len(raw) - 1).filter(lambda i: i != 12))
    raw[index] ^= 1 << data.draw(st.integers(0, 7))
    assert reason(bytes(raw)) == "tcp_bad_checksum"


def test_unverified_parse_accepts_a_bad_checksum() -> None:
    raw = bytearray(wire(TcpSegment(1, 2, 3, 4, ACK, 5, payload=b"x")))
    raw[16] ^= 0xFF
    assert reason(bytes(raw)) == "tcp_bad_checksum"
    assert parse_tcp(bytes(raw), SRC, DST, verify_checksum=False).window == 5


def test_checksum_covers_the_addresses() -> None:
    raw = wire(TcpSegment(1, 2, 3, 4, ACK, 5, payload=b"x"))
    with pytest.raises(ParseError):
        parse_tcp(raw, SRC, socket.inet_aton("10.77.0.3"), verify_checksum=True)


def test_option_kinds_of_short_headers() -> None:
    with pytest.raises(ParseError) as info:
        option_kinds(b"\0" * 19)
    assert info.value.reason == "tcp_short"
    assert option_kinds(wire(TcpSegment(1, 2, 3, 4, ACK, 5))) == []
