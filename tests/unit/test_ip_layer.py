"""IpLayer with a fake engine: delivery, every drop path and its counter, ICMP echo, output."""

from __future__ import annotations

import pathlib
import re
import socket
import struct

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ustcp.wire
from ustcp.config import StackConfig
from ustcp.ip import ICMP_QUEUE_LIMIT, IpLayer
from ustcp.mib import NAMES, Counters, Mib, drop_for_reason
from ustcp.wire.checksum import checksum, pseudo_header_sum
from ustcp.wire.icmp import build_echo
from ustcp.wire.ipv4 import build_ipv4_header
from ustcp.wire.tcp import ACK, PSH, SYN, TcpOptions, TcpSegment, build_tcp

US = socket.inet_aton("10.77.0.1")
PEER = socket.inet_aton("10.77.0.2")
OTHER = socket.inet_aton("10.77.0.3")


class FakeEngine:
    def __init__(self) -> None:
        self.received: list[tuple[float, bytes, bytes, TcpSegment]] = []
        self.output: list[tuple[bytes, bytes, TcpSegment]] = []
        self.errors: list[tuple[bytes, int, bytes, int, int, int, bool]] = []
        self.error_matches = True

    def on_segment(self, now: float, src_ip: bytes, dst_ip: bytes, seg: TcpSegment) -> None:
        self.received.append((now, src_ip, dst_ip, seg))

    def take_output(self) -> list[tuple[bytes, bytes, TcpSegment]]:
        out, self.output = self.output, []
        return out

    def on_icmp_error(self, now: float, local_ip: bytes, local_port: int, remote_ip: bytes,
                      remote_port: int, seq: int, err: int, fatal: bool,
                      mtu: int | None = None) -> bool:
        self.errors.append((local_ip, local_port, remote_ip, remote_port, seq, err, fatal))
        return self.error_matches


def make(*, offload: bool = False, ttl: int = 64) -> tuple[IpLayer, FakeEngine, Counters]:
    engine, counters = FakeEngine(), Counters()
    config = StackConfig()
    config.ip_default_ttl = ttl
    return IpLayer(engine, counters, {US}, config, tx_csum_offload=offload), engine, counters


def tcp_frame(seg: TcpSegment, src: bytes = PEER, dst: bytes = US, *, proto: int = 6,
              flags_frag: int = 0x4000) -> bytes:
    tcp = build_tcp(seg, src, dst, checksum="full") + bytes(seg.payload)
    header = bytearray(build_ipv4_header(src, dst, proto, len(tcp), ttl=64, ident=9))
    if flags_frag != 0x4000:
        header[6:8] = struct.pack("!H", flags_frag)
        header[10:12] = b"\0\0"
        header[10:12] = struct.pack("!H", checksum(header))
    return bytes(header) + tcp


def icmp_frame(icmp: bytes, tos: int = 0) -> bytes:
    return build_ipv4_header(PEER, US, 1, len(icmp), ttl=64, ident=3, tos=tos,
                             dont_fragment=False) + icmp


SEG = TcpSegment(40000, 80, 1000, 2000, ACK | PSH, 512, TcpOptions(ts_val=1, ts_ecr=2),
                 b"hello")


def only(counters: Counters, *names: str) -> None:
    """Exactly these counters are non-zero (each once)."""
    nonzero = {k: v for k, v in counters.snapshot().items() if v}
    assert nonzero == dict.fromkeys(names, 1)


# ------------------------------------------------------------------ receive


def test_tcp_segment_reaches_the_engine() -> None:
    ip, engine, counters = make()
    ip.on_frame(3.5, tcp_frame(SEG))
    [(now, src, dst, seg)] = engine.received
    assert (now, src, dst) == (3.5, PEER, US)
    assert seg == SEG
    only(counters, "IpInReceives", "IpInDelivers")


def test_bad_tcp_checksum_never_reaches_the_engine() -> None:
    ip, engine, counters = make()
    frame = bytearray(tcp_frame(SEG))
    frame[-1] ^= 0x20
    ip.on_frame(0.0, bytes(frame))
    assert engine.received == []
    only(counters, "IpInReceives", "IpInDelivers", "TcpInCsumErrors", "TcpInErrs",
         "UstcpDropTcpBadChecksum")


def test_csum_verified_skips_verification() -> None:
    ip, engine, counters = make()
    frame = bytearray(tcp_frame(SEG))
    frame[-1] ^= 0x20
    ip.on_frame(0.0, bytes(frame), csum_verified=True)
    assert bytes(engine.received[0][3].payload) == b"hellO"
    assert counters["TcpInCsumErrors"] == 0


def test_bad_tcp_header_counts_in_errors() -> None:
    ip, engine, counters = make()
    frame = bytearray(tcp_frame(SEG))
    frame[20 + 12] = 0x40  # data offset 4
    ip.on_frame(0.0, bytes(frame), csum_verified=True)
    assert engine.received == []
    only(counters, "IpInReceives", "IpInDelivers", "TcpInErrs", "UstcpDropTcpBadDoff")


@pytest.mark.parametrize(("mangle", "reason"), [
    (lambda f: f[:10], "ip_short"),
    (lambda f: b"", "ip_short"),
    (lambda f: b"\x55" + f[1:], "ip_version"),
    (lambda f: b"\x44" + f[1:], "ip_bad_ihl"),
    (lambda f: f[:11] + bytes((f[11] ^ 1,)) + f[12:], "ip_bad_checksum"),
    (lambda f: f[:-1], "ip_bad_length"),
])
def test_bad_ip_headers(mangle: object, reason: str) -> None:
    ip, engine, counters = make()
    ip.on_frame(0.0, mangle(tcp_frame(SEG)))  # type: ignore[operator]
    assert engine.received == []
    only(counters, "IpInReceives", "IpInHdrErrors", NAMES[drop_for_reason(reason)])


def test_drop_counter_names() -> None:
    assert drop_for_reason("ip_bad_checksum") == Mib.UstcpDropIpBadChecksum
    assert drop_for_reason("tcp_bad_option") == Mib.UstcpDropTcpBadOption


def test_every_parse_error_reason_has_a_counter() -> None:
    """Each reason a codec raises that the IP layer counts names a Mib counter."""
    wire = pathlib.Path(ustcp.wire.__file__).parent
    reasons = {m for f in wire.glob("*.py") if f.name != "vnet.py"
               for m in re.findall(r'ParseError\("([a-z_]+)"', f.read_text())}
    assert len(reasons) >= 11
    for reason in reasons:
        assert NAMES[drop_for_reason(reason)].startswith("UstcpDrop")


def test_not_our_address() -> None:
    ip, engine, counters = make()
    ip.on_frame(0.0, tcp_frame(SEG, dst=OTHER))
    assert engine.received == []
    only(counters, "IpInReceives", "IpInAddrErrors")


@pytest.mark.parametrize("flags_frag", [0x2000, 0x0001, 0x2000 | 0x0010])
def test_a_lone_fragment_is_queued(flags_frag: int) -> None:
    ip, engine, counters = make()
    ip.on_frame(0.0, tcp_frame(SEG, flags_frag=flags_frag))
    assert engine.received == [] and len(ip.reasm4) == 1
    only(counters, "IpInReceives", "IpReasmReqds")


def test_unknown_protocol_gets_protocol_unreachable() -> None:
    ip, engine, counters = make()
    frame = tcp_frame(SEG, proto=253)
    ip.on_frame(0.0, frame)
    assert engine.received == []
    [(reply, _)] = ip.take_frames()
    ref = dpkt.ip.IP(reply)
    assert (ref.src, ref.dst, ref.p, ref.data.type, ref.data.code) == (US, PEER, 1, 3, 2)
    assert bytes(ref.data.data.data) == frame  # the whole datagram fits in 576 bytes
    only(counters, "IpInReceives", "IpInUnknownProtos", "IcmpOutMsgs", "IcmpMsgOutType3",
         "IcmpOutDestUnreachs", "IpOutRequests")


@given(st.binary(max_size=80))
def test_on_frame_never_raises(frame: bytes) -> None:
    ip, _, counters = make()
    ip.on_frame(0.0, frame)
    assert counters["IpInReceives"] + counters["Ip6InReceives"] == 1


# ------------------------------------------------------------------ ICMP


def test_echo_request_gets_an_exact_reply() -> None:
    ip, _, counters = make(ttl=77)
    data = b"ping data, odd length"
    ip.on_frame(0.0, icmp_frame(build_echo(8, 0x1234, 7, data), tos=0x10))
    [(frame, gso)] = ip.take_frames()
    expected = dpkt.ip.IP(src=US, dst=PEER, p=1, ttl=77, id=0, tos=0x10,
                          data=dpkt.icmp.ICMP(type=0, code=0, data=dpkt.icmp.ICMP.Echo(
                              id=0x1234, seq=7, data=data)))
    assert frame == bytes(expected)
    assert gso == 0
    only(counters, "IpInReceives", "IpInDelivers", "IcmpInMsgs", "IcmpMsgInType8",
         "IcmpInEchos", "IcmpOutMsgs", "IcmpMsgOutType0", "IcmpOutEchoReps", "IpOutRequests")
    assert ip.take_frames() == []


def test_icmp_bad_checksum_gets_no_reply() -> None:
    ip, _, counters = make()
    icmp = bytearray(build_echo(8, 1, 1, b"abc"))
    icmp[-1] ^= 1
    ip.on_frame(0.0, icmp_frame(bytes(icmp)))
    assert ip.take_frames() == []
    only(counters, "IpInReceives", "IpInDelivers", "IcmpInMsgs", "IcmpInErrors",
         "IcmpInCsumErrors", "UstcpDropIcmpBadChecksum")


def test_short_icmp() -> None:
    ip, _, counters = make()
    ip.on_frame(0.0, icmp_frame(b"\x08\x00\xf7"))
    assert ip.take_frames() == []
    assert counters["IcmpInErrors"] == 1 and counters["UstcpDropIcmpShort"] == 1


@pytest.mark.parametrize(("icmp_type", "name"), [(0, "IcmpInEchoReps"),
                                                  (3, "IcmpInDestUnreachs"),
                                                  (42, None)])
def test_other_icmp_is_counted_and_dropped(icmp_type: int, name: str | None) -> None:
    ip, _, counters = make()
    ip.on_frame(0.0, icmp_frame(build_echo(icmp_type, 1, 1, b"x")))
    assert ip.take_frames() == []
    names = ["IpInReceives", "IpInDelivers", "IcmpInMsgs", f"IcmpMsgInType{icmp_type}"]
    if icmp_type == 3:
        names.append("IcmpInErrors")  # an error quoting too little to name a socket
    only(counters, *names, *([name] if name else []))


def test_echo_reply_queue_is_bounded() -> None:
    ip, _, counters = make()
    request = icmp_frame(build_echo(8, 1, 1, b"x"))
    for _ in range(ICMP_QUEUE_LIMIT + 3):
        ip.on_frame(0.0, request)
    assert len(ip.take_frames()) == ICMP_QUEUE_LIMIT
    assert counters["UstcpDropIcmpQueueFull"] == 3
    assert counters["IcmpOutEchoReps"] == ICMP_QUEUE_LIMIT


# ------------------------------------------------------------------ transmit


def test_take_frames_builds_checksummed_frames() -> None:
    ip, engine, counters = make(ttl=99)
    syn_ack = TcpSegment(80, 40000, 5, 1001, SYN | ACK, 65535,
                         TcpOptions(mss=1460, wscale=8, sack_permitted=True))
    engine.output = [(US, PEER, syn_ack), (US, PEER, SEG)]
    frames = ip.take_frames()
    assert [gso for _, gso in frames] == [0, 0]
    for (frame, _), seg, ident in zip(frames, (syn_ack, SEG), (0, 1), strict=True):
        assert isinstance(frame, bytes)
        parsed = dpkt.ip.IP(frame)
        assert (parsed.src, parsed.dst, parsed.ttl, parsed.df, parsed.id, parsed.len) == (
            US, PEER, 99, 1, ident, len(frame))
        tcp = parsed.data
        assert (tcp.sport, tcp.seq, tcp.flags, bytes(tcp.data)) == (
            seg.src_port, seg.seq, seg.flags, bytes(seg.payload))
        sums = (parsed.sum, tcp.sum)
        parsed.sum = tcp.sum = 0
        assert bytes(parsed) == frame and (parsed.sum, tcp.sum) == sums
    assert counters["IpOutRequests"] == 2


def test_offload_leaves_a_partial_checksum() -> None:
    ip, engine, _ = make(offload=True)
    engine.output = [(US, PEER, SEG)]
    [(frame, _)] = ip.take_frames()
    tcp = frame[20:]
    assert struct.unpack_from("!H", tcp, 16)[0] == pseudo_header_sum(US, PEER, 6, len(tcp))
    finished = tcp[:16] + struct.pack("!H", checksum(tcp)) + tcp[18:]
    assert dpkt.ip.IP(frame[:20] + finished).data.sum == checksum(tcp)
    full_ip, full_engine, _ = make()
    full_engine.output = [(US, PEER, SEG)]
    assert full_ip.take_frames()[0][0] == frame[:20] + finished


def test_gso_super_packet() -> None:
    ip, engine, _ = make(offload=True)
    big = TcpSegment(80, 40000, 1, 1, ACK, 1000, TcpOptions(ts_val=1, ts_ecr=2),
                     bytes(3000), gso_size=1448)
    engine.output = [(US, PEER, big), (US, PEER, SEG)]
    [(frame, gso), (after, after_gso)] = ip.take_frames()
    assert gso == 1448 and after_gso == 0
    assert len(frame) == 20 + 32 + 3000
    assert struct.unpack_from("!H", frame, 2)[0] == len(frame)  # whole super-packet
    # The device cuts 3 segments, each taking the next IP ID.
    assert struct.unpack_from("!H", after, 4)[0] == 3


@pytest.mark.parametrize("gso_size", [0, 3000, 4000])
def test_no_gso_when_the_payload_fits(gso_size: int) -> None:
    ip, engine, _ = make()
    engine.output = [(US, PEER, TcpSegment(1, 2, 3, 4, ACK, 5, payload=bytes(3000),
                                           gso_size=gso_size))]
    assert ip.take_frames()[0][1] == 0


def test_ip_ident_wraps() -> None:
    ip, engine, _ = make()
    # A super-packet of N one-byte segments reserves N IDs.
    first = TcpSegment(1, 2, 3, 4, ACK, 5, payload=bytes(65000), gso_size=1)
    second = TcpSegment(1, 2, 3, 4, ACK, 5, payload=bytes(1000), gso_size=1)
    engine.output = [(US, PEER, first), (US, PEER, second), (US, PEER, SEG)]
    idents = [struct.unpack_from("!H", f, 4)[0] for f, _ in ip.take_frames()]
    assert idents == [0, 65000, 66000 - 65536]
