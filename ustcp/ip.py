"""The network layer: IPv4 frames in, engine segments out, and back; ICMP echo.

Receive checks follow Linux's order (ip_rcv_core, ip_route_input, ip_local_deliver) and
count under the same nstat names. Nothing here raises out of :meth:`IpLayer.on_frame`:
malformed input is counted and dropped.
"""

from __future__ import annotations

import socket
from typing import Protocol

import structlog

from .config import StackConfig
from .mib import Counters, Mib, drop_for_reason
from .wire.checksum import BytesLike
from .wire.errors import ParseError
from .wire.icmp import ECHO_REPLY, ECHO_REQUEST, build_echo_reply, parse_icmp
from .wire.ipv4 import (
    PROTO_ICMP,
    PROTO_TCP,
    IPv4Header,
    build_ipv4_header,
    is_fragment,
    parse_ipv4,
)
from .wire.tcp import ChecksumMode, TcpSegment, build_tcp, parse_tcp

log = structlog.get_logger("ustcp.ip")

IP_ECN_MASK = 0x3  # the low two bits of the TOS byte (RFC 3168 5)
IP_ECN_CE = 0x3
ICMP_QUEUE_LIMIT = 256  # echo replies waiting for take_frames; more are dropped and counted

# Linux's per-type ICMP counters (include/uapi/linux/snmp.h ICMP_MIB_*) for the common types.
_ICMP_IN_MIB = {0: Mib.IcmpInEchoReps, 3: Mib.IcmpInDestUnreachs, 4: Mib.IcmpInSrcQuenchs,
                5: Mib.IcmpInRedirects, 8: Mib.IcmpInEchos, 11: Mib.IcmpInTimeExcds,
                12: Mib.IcmpInParmProbs, 13: Mib.IcmpInTimestamps, 14: Mib.IcmpInTimestampReps}


class SegmentEngine(Protocol):
    """What the IP layer needs of ``ustcp.tcp.engine.TcpEngine``."""

    def on_segment(self, now: float, src_ip: bytes, dst_ip: bytes, seg: TcpSegment) -> None:
        ...

    def take_output(self) -> list[tuple[bytes, bytes, TcpSegment]]:
        ...


log = structlog.get_logger("ustcp.ip")


class IpLayer:
    """IPv4 for one host with the addresses ``local_addrs`` (4 packed bytes each)."""

    def __init__(self, engine: SegmentEngine, counters: Counters, local_addrs: set[bytes],
                 config: StackConfig, *, tx_csum_offload: bool = False) -> None:
        self.engine = engine
        self.counters = counters
        self.local_addrs = local_addrs
        self.config = config
        self.tcp_checksum: ChecksumMode = "partial" if tx_csum_offload else "full"
        self._ident = 0
        self._icmp_out: list[bytes] = []

    # ------------------------------------------------------------------ receive

    def on_frame(self, now: float, frame: BytesLike, csum_verified: bool = False) -> None:
        """One frame from the link. ``csum_verified``: the link vouches for the TCP checksum
        (virtio-net NEEDS_CSUM or DATA_VALID). The segment's payload is a view of ``frame``."""
        if frame and frame[0] >> 4 == 6:
            # The kernel sends router solicitations on a new TUN at once.
            self.counters.inc(Mib.UstcpDropIPv6)
            return
        c = self.counters
        c.inc(Mib.IpInReceives)
        try:
            hdr, payload = parse_ipv4(frame)
        except ParseError as exc:
            c.inc(Mib.IpInHdrErrors)
            c.inc(drop_for_reason(exc.reason))
            return
        if hdr.dst not in self.local_addrs:
            c.inc(Mib.IpInAddrErrors)  # not ours, and we do not forward
        elif is_fragment(hdr):
            c.inc(Mib.UstcpDropFragment)  # no reassembly: DF is what TCP peers set
        elif hdr.proto == PROTO_TCP:
            self._deliver_tcp(now, hdr, payload, csum_verified)
        elif hdr.proto == PROTO_ICMP:
            self._deliver_icmp(hdr, payload)
        else:
            c.inc(Mib.IpInUnknownProtos)

    def _deliver_tcp(self, now: float, hdr: IPv4Header, payload: memoryview,
                     csum_verified: bool) -> None:
        c = self.counters
        c.inc(Mib.IpInDelivers)  # Linux counts delivery to the protocol, even if it drops
        try:
            seg = parse_tcp(payload, hdr.src, hdr.dst, verify_checksum=not csum_verified)
        except ParseError as exc:
            if exc.reason == "tcp_bad_checksum":
                c.inc(Mib.TcpInCsumErrors)
            c.inc(Mib.TcpInErrs)
            c.inc(drop_for_reason(exc.reason))
            log.debug("drop", reason=exc.reason, src=socket.inet_ntoa(hdr.src))
            return
        seg.ecn = hdr.tos & IP_ECN_MASK
        if seg.ecn == IP_ECN_CE:
            c.inc(Mib.IpExtInCEPkts)
        self.engine.on_segment(now, hdr.src, hdr.dst, seg)

    def _deliver_icmp(self, hdr: IPv4Header, payload: memoryview) -> None:
        c = self.counters
        c.inc(Mib.IpInDelivers)
        c.inc(Mib.IcmpInMsgs)
        try:
            msg = parse_icmp(payload)
        except ParseError as exc:
            if exc.reason == "icmp_bad_checksum":
                c.inc(Mib.IcmpInCsumErrors)
            c.inc(Mib.IcmpInErrors)
            c.inc(drop_for_reason(exc.reason))
            return
        c.icmp_msg_in[msg.icmp_type] += 1
        name = _ICMP_IN_MIB.get(msg.icmp_type)
        if name is not None:
            c.inc(name)
        if msg.icmp_type == ECHO_REQUEST:
            self._queue_echo_reply(hdr, build_echo_reply(msg))

    def _queue_echo_reply(self, request: IPv4Header, icmp: bytes) -> None:
        """RFC 1122 3.2.2.6: reply from the address pinged, with the request's data."""
        c = self.counters
        if len(self._icmp_out) >= ICMP_QUEUE_LIMIT:
            c.inc(Mib.UstcpDropIcmpQueueFull)
            return
        # Linux's ICMP socket sends without DF (IP_PMTUDISC_DONT) and with the request's TOS.
        ip = build_ipv4_header(request.dst, request.src, PROTO_ICMP, len(icmp),
                               ttl=self.config.ip_default_ttl, ident=self._next_ident(1),
                               tos=request.tos, dont_fragment=False)
        self._icmp_out.append(ip + icmp)
        c.inc(Mib.IcmpOutMsgs)
        c.icmp_msg_out[ECHO_REPLY] += 1
        c.inc(Mib.IcmpOutEchoReps)

    # ------------------------------------------------------------------ transmit

    def take_frames(self) -> list[tuple[bytes, int]]:
        """Frames to transmit as ``(frame, gso_size)``; ``gso_size`` is non-zero for a GSO
        super-packet the link must segment (virtio-net GSO_TCPV4)."""
        segments = self.engine.take_output()
        if not segments and not self._icmp_out:
            return []  # the common case after most user calls: nothing to send
        frames = [(frame, 0) for frame in self._icmp_out]
        self._icmp_out = []
        for src, dst, seg in segments:
            # The send path contains what the receive path contains: a segment that cannot
            # be built is counted and dropped (its data stays queued for retransmission),
            # and the daemon lives on.
            try:
                frames.append(self._tcp_frame(src, dst, seg))
            except Exception:
                self.counters.inc(Mib.UstcpInternalErrors)
                log.exception("internal_error", where="tcp_frame", length=len(seg.payload))
        self.counters.inc(Mib.IpOutRequests, len(frames))
        return frames

    def _tcp_frame(self, src: bytes, dst: bytes, seg: TcpSegment) -> tuple[bytes, int]:
        """IP header, TCP header and payload joined: the payload's only copy."""
        payload = seg.payload
        size = len(payload)
        gso = seg.gso_size if size > seg.gso_size > 0 else 0
        tcp = build_tcp(seg, src, dst, checksum=self.tcp_checksum)
        # Each segment the device cuts from a super-packet takes the next IP ID (Linux:
        # ip_select_ident_segs), so reserve as many IDs as segments.
        segments = -(-size // gso) if gso else 1
        ip = build_ipv4_header(src, dst, PROTO_TCP, len(tcp) + size,
                               ttl=self.config.ip_default_ttl, ident=self._next_ident(segments),
                               tos=seg.ecn)
        return b"".join((ip, tcp, payload)), gso

    def _next_ident(self, count: int) -> int:
        ident = self._ident
        self._ident = (ident + count) & 0xFFFF
        return ident
