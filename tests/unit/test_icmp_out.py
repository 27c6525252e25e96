"""The ICMP errors the stack sends: port unreachable for UDP (v4 and v6), protocol
unreachable, rate-limited per destination (icmp_ratelimit, icmp_ratemask) with a bounded
table, never to a multicast source, nothing for a UDP datagram with a bad checksum."""

from __future__ import annotations

import socket
import struct

import dpkt
import pytest

from ustcp.config import StackConfig
from ustcp.ip import RATELIMIT_PEERS_MAX, XRLIM_BURST_FACTOR, IcmpRateLimit, IpLayer
from ustcp.mib import Counters
from ustcp.wire.checksum import checksum, pseudo_header_sum
from ustcp.wire.icmpv6 import parse_icmpv6
from ustcp.wire.ipv4 import build_ipv4_header
from ustcp.wire.ipv6 import build_ipv6_header

from .test_ip_layer import FakeEngine

US, PEER = socket.inet_aton("10.77.0.2"), socket.inet_aton("10.77.0.1")
US6 = socket.inet_pton(socket.AF_INET6, "fd77::2")
PEER6 = socket.inet_pton(socket.AF_INET6, "fd77::1")


def make(**knobs: int) -> tuple[IpLayer, Counters]:
    counters, config = Counters(), StackConfig()
    for name, value in knobs.items():
        setattr(config, name, value)
    return IpLayer(FakeEngine(), counters, {US, US6}, config), counters


def udp(src: bytes, dst: bytes, payload: bytes = b"query", *, good: bool = True) -> bytes:
    length = 8 + len(payload)
    csum = checksum(struct.pack("!HHHH", 5353, 53, length, 0) + payload,
                    pseudo_header_sum(src, dst, 17, length))
    return struct.pack("!HHHH", 5353, 53, length, csum if good else csum ^ 1) + payload


def udp4(src: bytes = PEER, *, good: bool = True) -> bytes:
    datagram = udp(src, US, good=good)
    return build_ipv4_header(src, US, 17, len(datagram), ttl=64, ident=1) + datagram


def udp6(*, good: bool = True) -> bytes:
    datagram = udp(PEER6, US6, good=good)
    return build_ipv6_header(PEER6, US6, 17, len(datagram)) + datagram


def test_udp_gets_port_unreachable_v4() -> None:
    ip, counters = make()
    frame = udp4()
    ip.on_frame(0.0, frame)
    [(reply, _)] = ip.take_frames()
    ref = dpkt.ip.IP(reply)
    assert (ref.src, ref.dst, ref.p, ref.data.type, ref.data.code) == (US, PEER, 1, 3, 3)
    assert bytes(ref.data.data.data) == frame
    assert counters["UdpNoPorts"] == 1 and counters["IcmpOutDestUnreachs"] == 1


def test_udp_gets_port_unreachable_v6() -> None:
    ip, counters = make()
    frame = udp6()
    ip.on_frame(0.0, frame)
    [(reply, _)] = ip.take_frames()
    msg = parse_icmpv6(reply[40:], US6, PEER6)
    assert (msg.icmp_type, msg.code, bytes(msg.data)) == (1, 4, frame)
    assert counters["Udp6NoPorts"] == 1 and counters["Icmp6OutDestUnreachs"] == 1


@pytest.mark.parametrize("v6", [False, True])
def test_udp_with_a_bad_checksum_gets_nothing(v6: bool) -> None:
    ip, counters = make()
    ip.on_frame(0.0, udp6(good=False) if v6 else udp4(good=False))
    assert ip.take_frames() == []
    assert counters["Udp6InCsumErrors" if v6 else "UdpInCsumErrors"] == 1


def test_no_error_to_a_multicast_source() -> None:
    ip, _ = make()
    ip.on_frame(0.0, udp4(src=socket.inet_aton("224.0.0.9")))
    assert ip.take_frames() == []


@pytest.mark.parametrize("v6", [False, True])
def test_rate_limited_to_a_burst_of_six_then_one_per_interval(v6: bool) -> None:
    ip, counters = make(icmp_ratelimit=1000)
    frame = udp6() if v6 else udp4()
    sent = []
    for tick in range(40):  # 10 datagrams a second for 4 s
        ip.on_frame(tick / 10, frame)
        sent.append(len(ip.take_frames()))
    assert sum(sent[:10]) == XRLIM_BURST_FACTOR  # the burst, in the first second
    assert sum(sent) == XRLIM_BURST_FACTOR + 3  # then one a second
    limited = counters["Icmp6OutRateLimitHost" if v6 else "IcmpOutRateLimitHost"]
    assert limited == 40 - sum(sent)


def test_ratemask_without_dest_unreach_and_ratelimit_zero_do_not_limit() -> None:
    for knobs in ({"icmp_ratemask": 0x1818 & ~(1 << 3)}, {"icmp_ratelimit": 0}):
        ip, _ = make(**knobs)
        for _ in range(20):
            ip.on_frame(0.0, udp4())
        assert len(ip.take_frames()) == 20


def test_rate_limit_table_is_bounded() -> None:
    limit = IcmpRateLimit()
    for i in range(RATELIMIT_PEERS_MAX + 100):
        assert limit.allow(0.0, i.to_bytes(4, "big"), 1.0)
    assert len(limit) == RATELIMIT_PEERS_MAX
    # the oldest were forgotten: a forgotten peer gets a fresh burst
    assert all(limit.allow(0.0, (0).to_bytes(4, "big"), 1.0) for _ in range(6))


# ------------------------------------------------------------------ --impair pmtu=


def test_pmtu_impairment_parses_outbound_only() -> None:
    from ustcp.link.impair import parse_impairments

    spec_in, spec_out = parse_impairments("pmtu=1280")
    assert spec_in is None and spec_out is not None
    assert (spec_out.pmtu, spec_out.pmtu_blackhole, spec_out.only_pmtu) == (1280, False, True)
    _, spec_out = parse_impairments("pmtu=1280:blackhole,delay=1ms")
    assert spec_out is not None and spec_out.pmtu_blackhole and not spec_out.only_pmtu
    for bad in ("in:pmtu=1280", "pmtu=60", "pmtu=1280:hole", "pmtu=x"):
        with pytest.raises(ValueError):
            parse_impairments(bad)


def test_too_big_judges_segments_and_df() -> None:
    from ustcp.link.impair import too_big, too_big_reply
    from ustcp.wire import icmp

    big = build_ipv4_header(US, PEER, 6, 1400, ttl=64, ident=1) + bytes(1400)
    no_df = build_ipv4_header(US, PEER, 6, 1400, ttl=64, ident=1, dont_fragment=False) \
        + bytes(1400)
    assert too_big(big, 0, 1280) and not too_big(no_df, 0, 1280)
    assert not too_big(big, 0, 1500)
    gso = bytearray(build_ipv4_header(US, PEER, 6, 20 + 5000, ttl=64, ident=1) + bytes(5020))
    gso[20 + 12] = 5 << 4  # a 20-byte TCP header
    assert not too_big(bytes(gso), 1240, 1280) and too_big(bytes(gso), 1241, 1280)
    reply = dpkt.ip.IP(too_big_reply(big, 1280))
    assert (reply.src, reply.dst, reply.data.type, reply.data.code) == (PEER, US, 3, 4)
    assert reply.data.data.mtu == 1280 and icmp.MAX_QUOTE == 548
    v6 = build_ipv6_header(US6, PEER6, 6, 1300) + bytes(1300)
    assert too_big(v6, 0, 1280)
    msg = parse_icmpv6(too_big_reply(v6, 1280)[40:], PEER6, US6)
    assert (msg.icmp_type, msg.rest, len(msg.data)) == (2, 1280, 1232)
