"""Reassembly (IPv4 and IPv6) through IpLayer on virtual time: out of order, duplicates,
overlaps discarding the datagram, the 30 s timeout with its ICMP, the memory bound, the
65535-byte limit, IPv6's rules for fragment lengths; and the stack fragmenting a large
echo reply (never TCP)."""

from __future__ import annotations

import socket
import struct

import dpkt
import pytest

from ustcp.config import StackConfig
from ustcp.frag import FRAG_TRUESIZE_OVERHEAD, Outcome, Reassembler
from ustcp.ip import IpLayer
from ustcp.mib import Counters
from ustcp.wire.checksum import checksum
from ustcp.wire.icmp import build_echo
from ustcp.wire.icmpv6 import build_icmpv6, parse_icmpv6
from ustcp.wire.ipv4 import build_ipv4_header
from ustcp.wire.ipv6 import build_ipv6_header
from ustcp.wire.tcp import ACK, TcpOptions, TcpSegment, build_tcp

from .test_ip_layer import FakeEngine

US, PEER = socket.inet_aton("10.77.0.2"), socket.inet_aton("10.77.0.1")
US6 = socket.inet_pton(socket.AF_INET6, "fd77::2")
PEER6 = socket.inet_pton(socket.AF_INET6, "fd77::1")
SEG = TcpSegment(40000, 80, 1, 1, ACK, 100, TcpOptions(), bytes(range(256)) * 8)  # 2048


def make(**knobs: int) -> tuple[IpLayer, FakeEngine, Counters]:
    engine, counters, config = FakeEngine(), Counters(), StackConfig()
    for name, value in knobs.items():
        setattr(config, name, value)
    return IpLayer(engine, counters, {US, US6}, config), engine, counters


def frags4(payload: bytes, size: int = 512, ident: int = 7, proto: int = 6) -> list[bytes]:
    """``payload`` cut into fragments of ``size`` bytes (a multiple of 8)."""
    out = []
    for start in range(0, len(payload), size):
        chunk = payload[start:start + size]
        header = bytearray(build_ipv4_header(PEER, US, proto, len(chunk), ttl=64, ident=ident,
                                             dont_fragment=False))
        more = 0x2000 if start + size < len(payload) else 0
        header[6:8] = struct.pack("!H", more | start // 8)
        header[10:12] = b"\0\0"
        header[10:12] = struct.pack("!H", checksum(header))
        out.append(bytes(header) + chunk)
    return out


def frags6(payload: bytes, nexthdr: int, size: int = 512, ident: int = 9) -> list[bytes]:
    out = []
    for start in range(0, len(payload), size):
        chunk = payload[start:start + size]
        more = 1 if start + size < len(payload) else 0
        body = struct.pack("!BxHI", nexthdr, start | more, ident) + chunk
        out.append(build_ipv6_header(PEER6, US6, 44, len(body)) + body)
    return out


def tcp4() -> bytes:
    return build_tcp(SEG, PEER, US, checksum="full") + bytes(SEG.payload)


def test_v4_out_of_order_fragments_make_one_segment() -> None:
    ip, engine, counters = make()
    pieces = frags4(tcp4())
    for piece in reversed(pieces):
        ip.on_frame(0.0, piece, csum_verified=True)  # the link's word cannot cover fragments
    [(_, src, dst, seg)] = engine.received
    assert (src, dst, seg) == (PEER, US, SEG)
    assert counters["IpReasmReqds"] == len(pieces) == 5 and counters["IpReasmOKs"] == 1
    assert len(ip.reasm4) == 0 and ip.reasm4.mem == 0


def test_v4_exact_duplicate_is_ignored_overlap_discards() -> None:
    ip, engine, counters = make()
    pieces = frags4(tcp4())
    ip.on_frame(0.0, pieces[0])
    ip.on_frame(0.0, pieces[0])  # exact duplicate
    assert len(ip.reasm4) == 1 and counters["IpReasmFails"] == 0
    shifted = bytearray(pieces[1])
    shifted[6:8] = struct.pack("!H", 0x2000 | (512 - 8) // 8)  # starts inside piece 0
    shifted[10:12] = b"\0\0"
    shifted[10:12] = struct.pack("!H", checksum(shifted[:20]))
    ip.on_frame(0.0, bytes(shifted))
    assert len(ip.reasm4) == 0  # RFC 5722: the whole datagram goes
    assert counters["IpExtReasmOverlaps"] == 1 and counters["IpReasmFails"] == 1
    for piece in pieces[1:]:
        ip.on_frame(0.0, piece)
    assert engine.received == [] and len(ip.reasm4) == 1  # a new, incomplete queue


def test_v4_timeout_sends_time_exceeded_only_with_the_first_fragment() -> None:
    ip, _, counters = make()
    pieces = frags4(tcp4())
    ip.on_frame(0.0, pieces[0])
    ip.on_frame(1.0, frags4(tcp4(), ident=8)[1])  # another datagram, first never comes
    assert ip.next_deadline() == 30.0
    ip.on_timers(29.9)
    assert ip.take_frames() == []
    ip.on_timers(31.0)
    [(reply, _)] = ip.take_frames()
    ref = dpkt.ip.IP(reply)
    assert (ref.dst, ref.data.type, ref.data.code) == (PEER, 11, 1)
    assert bytes(ref.data.data.data)[:len(pieces[0])] == pieces[0]
    assert counters["IpReasmTimeout"] == 2 and counters["IpReasmFails"] == 2
    assert counters["IcmpOutTimeExcds"] == 1 and ip.next_deadline() is None


def test_memory_bound_refuses_new_datagrams() -> None:
    ip, _, counters = make(ipfrag_high_thresh=4000)
    for ident in range(20):
        ip.on_frame(0.0, frags4(tcp4(), ident=ident)[0])
    charge = 512 + FRAG_TRUESIZE_OVERHEAD
    held = len(ip.reasm4)
    assert held == 4000 // charge + 1  # admitted while at or under the threshold
    assert counters["IpReasmFails"] == 20 - held
    assert ip.reasm4.mem == held * charge
    ip.on_timers(31.0)
    assert ip.reasm4.mem == 0


def test_datagram_past_65535_bytes_fails() -> None:
    r = Reassembler(StackConfig())
    assert r.add(0.0, "k", 0, bytes(8), True, b"")[0] is Outcome.QUEUED
    assert r.add(0.0, "k", 65528, bytes(16), False, b"")[0] is Outcome.TOO_BIG
    assert len(r) == 0 and r.mem == 0


def test_inconsistent_ends_fail() -> None:
    r = Reassembler(StackConfig())
    r.add(0.0, "k", 16, bytes(8), False, b"")  # the last: the datagram is 24 bytes long
    assert r.add(0.0, "k", 24, bytes(8), True, b"")[0] is Outcome.BAD
    assert len(r) == 0


def test_v6_fragments_with_dest_options_after_the_fragment_header() -> None:
    ip, _, counters = make()
    echo = build_icmpv6(PEER6, US6, 128, 0, 0x00010001, bytes(3000))
    dest_opts = bytes((58, 0)) + bytes((1, 4)) + bytes(4)  # PadN only, next: ICMPv6
    for piece in frags6(dest_opts + echo, nexthdr=60):
        ip.on_frame(0.0, piece)
    assert counters["Ip6ReasmOKs"] == 1 and counters["Icmp6InEchos"] == 1
    replies = [frame for frame, _ in ip.take_frames()]
    assert len(replies) == 3 and all(len(f) <= 1500 for f in replies)  # fragmented reply
    assert counters["Ip6ReasmReqds"] == 6


def test_v6_non_final_fragment_not_a_multiple_of_8_is_a_parameter_problem() -> None:
    ip, _, counters = make()
    body = struct.pack("!BxHI", 58, 1, 5) + b"\x80" + bytes(12)  # an echo request's start
    ip.on_frame(0.0, build_ipv6_header(PEER6, US6, 44, len(body)) + body)
    [(reply, _)] = ip.take_frames()
    msg = parse_icmpv6(reply[40:], US6, PEER6)
    assert (msg.icmp_type, msg.code, msg.rest) == (4, 0, 4)  # at the Payload Length
    assert counters["Ip6InHdrErrors"] == 1


@pytest.mark.parametrize("v6", [False, True])
def test_large_echo_reply_is_fragmented_and_reassembles(v6: bool) -> None:
    ip, _, _ = make()
    data = bytes(range(256)) * 12  # 3072 bytes of ping data
    if v6:
        for piece in frags6(build_icmpv6(PEER6, US6, 128, 0, 5, data), nexthdr=58):
            ip.on_frame(0.0, piece)
    else:
        for piece in frags4(build_echo(8, 1, 5, data), proto=1):
            ip.on_frame(0.0, piece)
    replies = [frame for frame, _ in ip.take_frames()]
    assert len(replies) == 3 and all(len(f) <= 1500 for f in replies)
    peer = IpLayer(FakeEngine(), Counters(), {PEER, PEER6}, StackConfig())
    for frame in replies:
        peer.on_frame(0.0, frame)
    counters = peer.counters
    assert counters["Ip6ReasmOKs" if v6 else "IpReasmOKs"] == 1
    assert counters["Icmp6InEchoReplies" if v6 else "IcmpInEchoReps"] == 1


def test_tcp_is_never_fragmented() -> None:
    ip, engine, _ = make()
    engine.output.append((US, PEER, TcpSegment(80, 4000, 1, 1, ACK, 1, TcpOptions(),
                                               bytes(1460))))
    [(frame, _)] = ip.take_frames()
    assert len(frame) == 1500 and frame[6] & 0x40  # one frame, DF set
