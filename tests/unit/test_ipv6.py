"""IPv6 and ICMPv6: the codecs, and IpLayer's IPv6 paths with a fake engine (delivery,
extension headers as Linux walks them, parameter problems, echo, the kernel's neighbour
discovery and MLD counted and dropped, output)."""

from __future__ import annotations

import contextlib
import socket
import struct

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustcp.config import StackConfig
from ustcp.ip import IpLayer
from ustcp.mib import Counters
from ustcp.wire.addr import endpoint, ntop, pton
from ustcp.wire.checksum import ones_sum, pseudo_header_sum
from ustcp.wire.errors import ParseError
from ustcp.wire.icmpv6 import MAX_QUOTE, build_icmpv6, parse_icmpv6
from ustcp.wire.ipv6 import build_ipv6_header, parse_ipv6
from ustcp.wire.tcp import ACK, PSH, TcpOptions, TcpSegment, build_tcp, parse_tcp

from .test_ip_layer import FakeEngine, only

US = socket.inet_pton(socket.AF_INET6, "fd77::2")
PEER = socket.inet_pton(socket.AF_INET6, "fd77::1")
OTHER = socket.inet_pton(socket.AF_INET6, "fd77::3")
LINK_LOCAL = socket.inet_pton(socket.AF_INET6, "fe80::1")
ALL_ROUTERS = socket.inet_pton(socket.AF_INET6, "ff02::2")
MLDV2_ROUTERS = socket.inet_pton(socket.AF_INET6, "ff02::16")
US4 = socket.inet_aton("10.77.0.2")

SEG = TcpSegment(40000, 80, 1000, 2000, ACK | PSH, 512, TcpOptions(ts_val=1, ts_ecr=2),
                 b"hello")


def make(*, offload: bool = False) -> tuple[IpLayer, FakeEngine, Counters]:
    engine, counters = FakeEngine(), Counters()
    return IpLayer(engine, counters, {US4, US}, StackConfig(),
                   tx_csum_offload=offload), engine, counters


def packet(nexthdr: int, payload: bytes, src: bytes = PEER, dst: bytes = US) -> bytes:
    return build_ipv6_header(src, dst, nexthdr, len(payload)) + payload


def tcp6(seg: TcpSegment = SEG, src: bytes = PEER, dst: bytes = US) -> bytes:
    return build_tcp(seg, src, dst, checksum="full") + bytes(seg.payload)


def ext(nexthdr: int, body: bytes) -> bytes:
    """An extension header around ``body`` (its length must make a multiple of 8)."""
    assert (len(body) + 2) % 8 == 0
    return bytes((nexthdr, (len(body) + 2) // 8 - 1)) + body


def options(*tlvs: bytes) -> bytes:
    """TLVs padded with PadN to a multiple of 8 with the 2-byte header."""
    body = b"".join(tlvs)
    pad = (-(len(body) + 2)) % 8
    if pad == 1:
        body += b"\0"
    elif pad:
        body += bytes((1, pad - 2)) + bytes(pad - 2)
    return body


# ------------------------------------------------------------------ codecs


def test_addresses_to_and_from_text() -> None:
    assert pton("fd77::2") == US and pton("10.77.0.2") == US4
    assert pton("::ffff:10.77.0.2") == US4  # v4-mapped is the IPv4 address
    assert ntop(US) == "fd77::2" and endpoint(US, 80) == "[fd77::2]:80"
    assert endpoint(US4, 80) == "10.77.0.2:80"
    for bad in ("10.77.2", "host", "fd77::2::1", ""):
        with pytest.raises(ValueError):
            pton(bad)


def test_header_matches_dpkt() -> None:
    frame = packet(6, tcp6())
    ref = dpkt.ip6.IP6(frame)
    assert (ref.src, ref.dst, ref.nxt, ref.hlim, ref.plen) == (PEER, US, 6, 64, len(frame) - 40)
    hdr, payload = parse_ipv6(frame)
    assert (hdr.src, hdr.dst, hdr.next_header, hdr.header_length) == (PEER, US, 6, 40)
    assert parse_tcp(payload, PEER, US, verify_checksum=True) == SEG


@given(st.binary(max_size=120))
def test_parse_never_raises_anything_but_parse_error(frame: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_ipv6(b"\x60" + frame)


def test_tcp_checksum_uses_the_v6_pseudo_header() -> None:
    """RFC 8200 8.1: 128-bit addresses, 32-bit length; dpkt computes it independently."""
    frame = packet(6, tcp6())
    ref = dpkt.ip6.IP6(frame)
    tcp = ref.data
    expected = tcp.sum
    tcp.sum = 0
    ref.data = tcp
    assert bytes(dpkt.ip6.IP6(bytes(ref))).hex()  # dpkt recomputes on pack
    assert dpkt.ip6.IP6(bytes(ref)).data.sum == expected
    assert ones_sum(frame[40:], pseudo_header_sum(PEER, US, 6, len(frame) - 40)) == 0xFFFF


def test_icmpv6_checksum_roundtrip() -> None:
    msg = build_icmpv6(US, PEER, 129, 0, 0x12340007, b"data!")
    parsed = parse_icmpv6(msg, US, PEER)
    assert (parsed.icmp_type, parsed.rest, bytes(parsed.data)) == (129, 0x12340007, b"data!")
    ref = dpkt.icmp6.ICMP6(msg)
    assert ref.type == 129
    with pytest.raises(ParseError, match="icmp_bad_checksum"):
        parse_icmpv6(msg, US, OTHER)  # the pseudo-header is part of the sum


# ------------------------------------------------------------------ receive


def test_tcp_over_ipv6_reaches_the_engine() -> None:
    ip, engine, counters = make()
    ip.on_frame(2.0, packet(6, tcp6()))
    [(now, src, dst, seg)] = engine.received
    assert (now, src, dst, seg) == (2.0, PEER, US, SEG)
    only(counters, "Ip6InReceives", "Ip6InDelivers")


def test_tcp_bad_checksum_over_ipv6() -> None:
    ip, engine, counters = make()
    frame = bytearray(packet(6, tcp6()))
    frame[-1] ^= 1
    ip.on_frame(0.0, bytes(frame))
    assert engine.received == []
    only(counters, "Ip6InReceives", "Ip6InDelivers", "TcpInCsumErrors", "TcpInErrs",
         "UstcpDropTcpBadChecksum")


def test_not_our_address() -> None:
    ip, engine, counters = make()
    ip.on_frame(0.0, packet(6, tcp6(dst=OTHER), dst=OTHER))
    assert engine.received == []
    only(counters, "Ip6InReceives", "Ip6InAddrErrors")


def test_truncated_and_short() -> None:
    ip, _, counters = make()
    frame = packet(6, tcp6())
    ip.on_frame(0.0, frame[:-1])
    ip.on_frame(0.0, frame[:30])
    assert counters["Ip6InReceives"] == 2
    assert counters["Ip6InTruncatedPkts"] == 1 and counters["UstcpDropIp6Truncated"] == 1
    assert counters["Ip6InHdrErrors"] == 1 and counters["UstcpDropIp6Short"] == 1


def test_extension_headers_are_skipped() -> None:
    """Hop-by-hop (with a router alert), routing with no segments left, destination options
    with an unknown skippable option (action 00): the segment still reaches TCP."""
    ip, engine, counters = make()
    chain = (ext(43, options(b"\x05\x02\x00\x00"))  # HBH: router alert; next: routing
             + ext(60, b"\x00\x00" + bytes(4))  # routing type 0, segments left 0
             + ext(6, options(b"\x1e\x02ab"))  # dest options: type 0x1e, action 00
             + tcp6())
    ip.on_frame(0.0, packet(0, chain))
    [(_, _, _, seg)] = engine.received
    assert seg == SEG
    only(counters, "Ip6InReceives", "Ip6InDelivers")


@pytest.mark.parametrize(("option", "code", "answered"), [
    (0x5E, 2, True),   # action 01: discard silently
    (0x9E, 2, True),   # action 10: discard, parameter problem
    (0xDE, 2, True),   # action 11: discard, parameter problem unless multicast
])
def test_unknown_destination_options(option: int, code: int, answered: bool) -> None:
    ip, engine, counters = make()
    opts = ext(6, options(bytes((option, 2)) + b"ab"))
    frame = packet(60, opts + tcp6())
    ip.on_frame(0.0, frame)
    assert engine.received == []
    out = ip.take_frames()
    if option >> 6 == 1:
        assert out == []
        only(counters, "Ip6InReceives", "Ip6InHdrErrors", "UstcpDropIp6BadOption")
        return
    [(reply, _)] = out
    ref = dpkt.ip6.IP6(reply)
    assert (ref.src, ref.dst, ref.nxt) == (US, PEER, 58)
    icmp = parse_icmpv6(reply[40:], US, PEER)
    assert (icmp.icmp_type, icmp.code, icmp.rest) == (4, code, 42)  # the option's type byte
    assert bytes(icmp.data) == frame  # the whole invoking packet (it fits in 1280)
    only(counters, "Ip6InReceives", "Ip6InHdrErrors", "UstcpDropIp6UnknownOption",
         "Icmp6OutMsgs", "Icmp6OutType4", "Icmp6OutParmProblems", "Ip6OutRequests")


def test_unknown_option_to_multicast_by_action() -> None:
    """Action 11 is not answered to a multicast destination; action 10 is (RFC 8200 4.2)."""
    for option, answered in ((0xDE, False), (0x9E, True)):
        ip, _, _ = make()
        opts = ext(58, options(bytes((option, 0))))
        ip.on_frame(0.0, packet(60, opts + b"\x80" + bytes(7), dst=MLDV2_ROUTERS))
        assert bool(ip.take_frames()) == answered


def test_routing_header_with_segments_left() -> None:
    ip, engine, counters = make()
    frame = packet(43, ext(6, b"\x00\x01" + bytes(4)) + tcp6())
    ip.on_frame(0.0, frame)
    assert engine.received == []
    [(reply, _)] = ip.take_frames()
    icmp = parse_icmpv6(reply[40:], US, PEER)
    assert (icmp.icmp_type, icmp.code, icmp.rest) == (4, 0, 42)  # at the Routing Type
    assert counters["Ip6InHdrErrors"] == 1 and counters["UstcpDropIp6Routing"] == 1


@pytest.mark.parametrize(("body", "reason"), [
    (options(b"\x01\x06" + bytes(6)), "UstcpDropIp6BadOption"),  # 8 bytes of padding
    (options(b"\x01\x01x"), "UstcpDropIp6BadOption"),  # PadN not all zero
    (options(*[b"\x1e\x00"] * 9), "UstcpDropIp6BadOption"),  # 9 options
    (b"\x1e\x09" + bytes(4), "UstcpDropIp6BadOption"),  # overruns its header
])
def test_bad_options_are_dropped(body: bytes, reason: str) -> None:
    ip, engine, counters = make()
    ip.on_frame(0.0, packet(60, ext(6, body) + tcp6()))
    assert engine.received == [] and ip.take_frames() == []
    only(counters, "Ip6InReceives", "Ip6InHdrErrors", reason)


def test_unknown_next_header_gets_a_parameter_problem() -> None:
    ip, _, counters = make()
    frame = packet(60, ext(253, options()) + b"payload!")
    ip.on_frame(0.0, frame)
    [(reply, _)] = ip.take_frames()
    icmp = parse_icmpv6(reply[40:], US, PEER)
    assert (icmp.icmp_type, icmp.code, icmp.rest) == (4, 1, 40)  # the dest options' byte
    assert counters["Ip6InUnknownProtos"] == 1


def test_hop_by_hop_not_first_is_an_unknown_next_header() -> None:
    ip, _, counters = make()
    ip.on_frame(0.0, packet(60, ext(0, options()) + ext(6, options()) + tcp6()))
    [(reply, _)] = ip.take_frames()
    icmp = parse_icmpv6(reply[40:], US, PEER)
    assert (icmp.icmp_type, icmp.code, icmp.rest) == (4, 1, 40)
    assert counters["Ip6InUnknownProtos"] == 1


def test_no_error_about_an_icmpv6_error_nor_to_multicast_sources() -> None:
    ip, _, counters = make()
    error = build_icmpv6(PEER, US, 1, 4, 0, bytes(48))
    opts = ext(58, options(bytes((0x9E, 0))))
    ip.on_frame(0.0, packet(60, opts + error))
    ip.on_frame(0.0, packet(253, b"x" * 8, src=MLDV2_ROUTERS))
    ip.on_frame(0.0, packet(253, b"x" * 8, src=bytes(16)))
    assert ip.take_frames() == []
    assert counters["Icmp6OutMsgs"] == 0


def test_error_quote_is_bounded() -> None:
    ip, _, _ = make()
    ip.on_frame(0.0, packet(253, bytes(2000)))
    [(reply, _)] = ip.take_frames()
    assert len(reply) == 1280 and len(reply) - 48 == MAX_QUOTE


def test_no_next_header() -> None:
    ip, engine, counters = make()
    ip.on_frame(0.0, packet(59, b"ignored"))
    assert engine.received == [] and ip.take_frames() == []
    only(counters, "Ip6InReceives", "Ip6InDelivers")


def test_atomic_fragment_is_a_whole_packet_and_a_first_fragment_waits() -> None:
    """RFC 6946: offset 0 without M is no fragment at all; with M it is queued."""
    ip, engine, counters = make()
    ip.on_frame(0.0, packet(44, struct.pack("!BxHI", 6, 0, 77) + tcp6()))
    assert [seg for *_, seg in engine.received] == [SEG]
    ip.on_frame(0.0, packet(44, struct.pack("!BxHI", 6, 1, 78) + tcp6()[:32]))
    assert len(engine.received) == 1 and len(ip.reasm6) == 1
    assert counters["Ip6ReasmReqds"] == 1


# ------------------------------------------------------------------ ICMPv6


def test_echo_request_gets_an_exact_reply() -> None:
    ip, _, counters = make()
    request = build_icmpv6(PEER, US, 128, 0, 0x12340007, b"ping data, odd")
    frame = bytearray(packet(58, request))
    frame[0:4] = struct.pack("!I", 6 << 28 | 0x28 << 20)  # traffic class 0x28
    ip.on_frame(0.0, bytes(frame))
    [(reply, gso)] = ip.take_frames()
    expected = build_ipv6_header(US, PEER, 58, len(request), traffic_class=0x28) \
        + build_icmpv6(US, PEER, 129, 0, 0x12340007, b"ping data, odd")
    assert reply == expected and gso == 0
    assert dpkt.ip6.IP6(reply).data.type == 129
    only(counters, "Ip6InReceives", "Ip6InDelivers", "Icmp6InMsgs", "Icmp6InType128",
         "Icmp6InEchos", "Icmp6OutMsgs", "Icmp6OutType129", "Icmp6OutEchoReplies",
         "Ip6OutRequests")


@pytest.mark.parametrize(("icmp_type", "src", "dst", "name"), [
    (133, LINK_LOCAL, ALL_ROUTERS, "Icmp6InRouterSolicits"),
    (143, LINK_LOCAL, MLDV2_ROUTERS, "Icmp6InMLDv2Reports"),
    (135, bytes(16), socket.inet_pton(socket.AF_INET6, "ff02::1:ff00:1"),
     "Icmp6InNeighborSolicits"),  # duplicate address detection
])
def test_kernel_link_chatter_is_counted_and_dropped(icmp_type: int, src: bytes, dst: bytes,
                                                     name: str) -> None:
    ip, engine, counters = make()
    msg = build_icmpv6(src, dst, icmp_type, 0, 0, bytes(16))
    if icmp_type == 143:  # MLD comes with a hop-by-hop router alert
        frame = packet(0, ext(58, options(b"\x05\x02\x00\x00")) + msg, src, dst)
    else:
        frame = packet(58, msg, src, dst)
    for _ in range(3):
        ip.on_frame(0.0, frame)
    assert engine.received == [] and ip.take_frames() == []
    assert counters[name] == 3 and counters[f"Icmp6InType{icmp_type}"] == 3
    assert counters["Ip6InMcastPkts"] == 3 and counters["UstcpDropIcmp6NotOurs"] == 3


def test_icmpv6_bad_checksum() -> None:
    ip, _, counters = make()
    msg = bytearray(build_icmpv6(PEER, US, 128, 0, 1, b"x"))
    msg[-1] ^= 1
    ip.on_frame(0.0, packet(58, bytes(msg)))
    assert ip.take_frames() == []
    only(counters, "Ip6InReceives", "Ip6InDelivers", "Icmp6InMsgs", "Icmp6InErrors",
         "Icmp6InCsumErrors", "UstcpDropIcmpBadChecksum")


def test_tcp_to_multicast_is_not_delivered() -> None:
    ip, engine, _ = make()
    ip.on_frame(0.0, packet(6, tcp6(dst=MLDV2_ROUTERS), dst=MLDV2_ROUTERS))
    assert engine.received == []


# ------------------------------------------------------------------ transmit


def test_tcp_frames_over_ipv6() -> None:
    ip, engine, counters = make()
    engine.output.append((US, PEER, SEG))
    [(frame, gso)] = ip.take_frames()
    hdr, payload = parse_ipv6(frame)
    assert (hdr.src, hdr.dst, hdr.next_header, hdr.hop_limit) == (US, PEER, 6, 64)
    # the checksum verified with the v6 pseudo-header
    assert parse_tcp(payload, US, PEER, verify_checksum=True) == SEG
    assert gso == 0
    only(counters, "Ip6OutRequests")


def test_gso_super_packet_over_ipv6() -> None:
    ip, engine, _ = make(offload=True)
    big = TcpSegment(80, 40000, 1, 1, ACK, 512, TcpOptions(), bytes(5000), gso_size=1440)
    engine.output.append((US, PEER, big))
    [(frame, gso)] = ip.take_frames()
    assert gso == 1440 and len(frame) == 40 + 20 + 5000
    # partial checksum: the pseudo-header sum only, for the device to finish
    assert struct.unpack_from("!H", frame, 40 + 16)[0] == pseudo_header_sum(US, PEER, 6, 5020)
