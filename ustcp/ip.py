"""The network layer: IPv4 and IPv6 frames in, engine segments out, and back; ICMP and
ICMPv6 echo; the kernel side's neighbour discovery, MLD and router messages counted.

Receive checks follow Linux's order (ip_rcv_core, ip_route_input, ip_local_deliver; ipv6_rcv,
ip6_input_finish) and count under the same nstat names. Nothing here raises out of
:meth:`IpLayer.on_frame`: malformed input is counted and dropped, or answered as RFC 8200 says
(an ICMPv6 parameter problem).

The engine never sees the IP version: addresses are 4 or 16 packed bytes, and the TCP
checksum's pseudo-header sum is the same integer fold for both.
"""

from __future__ import annotations

import errno
import struct
from typing import Final, Protocol

import structlog

from .config import StackConfig
from .frag import MAX_DATAGRAM, Outcome, Reassembler
from .mib import Counters, Mib, MibId, drop_for_reason
from .wire import icmp, icmpv6
from .wire.addr import ntop
from .wire.checksum import BytesLike, ones_sum, pseudo_header_sum
from .wire.errors import ParseError
from .wire.icmp import ECHO_REPLY, ECHO_REQUEST, IcmpMessage, build_echo_reply, parse_icmp
from .wire.icmpv6 import Icmpv6Message, build_error, parse_icmpv6
from .wire.ipv4 import (
    FLAG_MF,
    FRAG_OFFSET_MASK,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    IPv4Header,
    build_ipv4_header,
    fragment_ipv4,
    is_fragment,
    parse_ipv4,
)
from .wire.ipv6 import (
    NEXTHDR_ICMP,
    NEXTHDR_NONE,
    NEXTHDR_TCP,
    NEXTHDR_UDP,
    PARAM_HDR_FIELD,
    PARAM_UNK_NEXTHDR,
    IPv6Header,
    ParamProblem,
    build_ipv6_header,
    fragment_ipv6,
    is_multicast,
    parse_ipv6,
    skip_exthdr,
)
from .wire.tcp import ChecksumMode, TcpSegment, build_tcp, parse_tcp

log = structlog.get_logger("ustcp.ip")

IP_ECN_MASK: Final = 0x3  # the low two bits of the TOS byte (RFC 3168 5)
IP_ECN_CE: Final = 0x3
ICMP_QUEUE_LIMIT: Final = 256  # ICMP messages waiting for take_frames; more are dropped and counted
XRLIM_BURST_FACTOR: Final = 6  # inet_peer_xrlim_allow: a burst of six errors, then one per interval
RATELIMIT_PEERS_MAX: Final = 4096  # destinations the ICMP rate limiter remembers (oldest forgotten)
ICMP6_RATEMASK: Final = ~(1 << icmpv6.PKT_TOOBIG) & ((1 << icmpv6.INFO_MSG_MIN) - 1)  # "0-1,3-127"

# Linux's per-type ICMP counters (include/uapi/linux/snmp.h ICMP_MIB_*) for the common types.
_ICMP_IN_MIB: Final = {0: Mib.IcmpInEchoReps, 3: Mib.IcmpInDestUnreachs, 4: Mib.IcmpInSrcQuenchs,
                5: Mib.IcmpInRedirects, 8: Mib.IcmpInEchos, 11: Mib.IcmpInTimeExcds,
                12: Mib.IcmpInParmProbs, 13: Mib.IcmpInTimestamps, 14: Mib.IcmpInTimestampReps}


# ICMP6_MIB_* by type (net/ipv6/proc.c snmp6_icmp6_list): what each received type counts
_ICMP6_IN_MIB: Final = {
    icmpv6.DEST_UNREACH: Mib.Icmp6InDestUnreachs, icmpv6.PKT_TOOBIG: Mib.Icmp6InPktTooBigs,
    icmpv6.TIME_EXCEED: Mib.Icmp6InTimeExcds, icmpv6.PARAMPROB: Mib.Icmp6InParmProblems,
    icmpv6.ECHO_REQUEST: Mib.Icmp6InEchos, icmpv6.ECHO_REPLY: Mib.Icmp6InEchoReplies,
    icmpv6.MLD_QUERY: Mib.Icmp6InGroupMembQueries,
    icmpv6.MLD_REPORT: Mib.Icmp6InGroupMembResponses,
    icmpv6.MLD_REDUCTION: Mib.Icmp6InGroupMembReductions,
    icmpv6.ROUTER_SOLICIT: Mib.Icmp6InRouterSolicits,
    icmpv6.ROUTER_ADVERT: Mib.Icmp6InRouterAdvertisements,
    icmpv6.NEIGHBOUR_SOLICIT: Mib.Icmp6InNeighborSolicits,
    icmpv6.NEIGHBOUR_ADVERT: Mib.Icmp6InNeighborAdvertisements,
    icmpv6.REDIRECT: Mib.Icmp6InRedirects, icmpv6.MLD2_REPORT: Mib.Icmp6InMLDv2Reports,
}
# What a host on a point-to-point TUN link ignores: the kernel's router solicitations and MLD
# reports on a new device, duplicate address detection (RFC 4862 5.4) and neighbour
# discovery, which a link without link-layer addresses does not need (RFC 4861 3.2).
_ICMP6_IGNORED: Final = frozenset((
    icmpv6.MLD_QUERY, icmpv6.MLD_REPORT, icmpv6.MLD_REDUCTION, icmpv6.ROUTER_SOLICIT,
    icmpv6.ROUTER_ADVERT, icmpv6.NEIGHBOUR_SOLICIT, icmpv6.NEIGHBOUR_ADVERT, icmpv6.REDIRECT,
    icmpv6.MLD2_REPORT))


_ICMP6_OUT_MIB: Final = {icmpv6.PARAMPROB: Mib.Icmp6OutParmProblems,
                  icmpv6.DEST_UNREACH: Mib.Icmp6OutDestUnreachs,
                  icmpv6.TIME_EXCEED: Mib.Icmp6OutTimeExcds}


class SegmentEngine(Protocol):
    """What the IP layer needs of ``ustcp.tcp.engine.TcpEngine``."""

    def on_segment(self, now: float, src_ip: bytes, dst_ip: bytes, seg: TcpSegment) -> None:
        ...

    def on_icmp_error(self, now: float, local_ip: bytes, local_port: int, remote_ip: bytes,
                      remote_port: int, seq: int, err: int, fatal: bool,
                      mtu: int | None = None) -> bool:
        ...

    def take_output(self) -> list[tuple[bytes, bytes, TcpSegment]]:
        ...


class IcmpRateLimit:
    """inet_peer_xrlim_allow: a token bucket per destination, filled at one token per
    second of time, holding at most :data:`XRLIM_BURST_FACTOR` intervals; an error costs
    one interval. The table keeps the :data:`RATELIMIT_PEERS_MAX` most recent destinations
    (Linux's inet_peer cache is bounded by its own GC)."""

    __slots__ = ("_peers",)

    def __init__(self) -> None:
        self._peers: dict[bytes, tuple[float, float]] = {}  # dst -> (tokens, last update)

    def __len__(self) -> int:
        return len(self._peers)

    def allow(self, now: float, dst: bytes, interval: float) -> bool:
        if interval <= 0:
            return True
        cap = XRLIM_BURST_FACTOR * interval
        tokens, last = self._peers.pop(dst, (cap, now))
        tokens = min(tokens + now - last, cap)
        allowed = tokens >= interval
        if allowed:
            tokens -= interval
        self._peers[dst] = (tokens, now)  # re-inserted: the most recent is last
        if len(self._peers) > RATELIMIT_PEERS_MAX:
            del self._peers[next(iter(self._peers))]
        return allowed


class IpLayer:
    """IPv4 and IPv6 for one host with the addresses ``local_addrs`` (4 or 16 packed bytes
    each)."""

    def __init__(self, engine: SegmentEngine, counters: Counters, local_addrs: set[bytes],
                 config: StackConfig, *, tx_csum_offload: bool = False,
                 mtu: int = 1500) -> None:
        self.engine = engine
        self.counters = counters
        self.local_addrs = local_addrs
        self.config = config
        self.tcp_checksum: ChecksumMode = "partial" if tx_csum_offload else "full"
        self._ident = 0
        self._icmp_out: list[bytes] = []
        self.ratelimit = IcmpRateLimit()
        self.reasm4 = Reassembler(config)
        self.reasm6 = Reassembler(config)
        self.mtu = mtu  # ICMP messages longer than this (echo replies) are fragmented
        self._frag_ident = 0

    # ------------------------------------------------------------------ receive

    def on_frame(self, now: float, frame: BytesLike, csum_verified: bool = False) -> None:
        """One frame from the link. ``csum_verified``: the link vouches for the TCP checksum
        (virtio-net NEEDS_CSUM or DATA_VALID). The segment's payload is a view of ``frame``."""
        if frame and frame[0] >> 4 == 6:
            self._on_ipv6(now, frame, csum_verified)
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
            self._defrag4(now, hdr, frame, payload)
        else:
            self._deliver4(now, hdr, frame, payload, csum_verified)

    def _defrag4(self, now: float, hdr: IPv4Header, frame: BytesLike,
                 payload: memoryview) -> None:
        """ip_defrag: queue the fragment; a complete datagram is delivered as if it had
        come whole (its checksums verified here, whatever the link said)."""
        c = self.counters
        c.inc(Mib.IpReasmReqds)
        more = bool(hdr.flags_frag & FLAG_MF)
        data = bytes(payload[:len(payload) & ~7] if more else payload)  # ip_frag_queue
        key = (hdr.src, hdr.dst, hdr.proto, hdr.ident)
        outcome, datagram = self.reasm4.add(now, key, (hdr.flags_frag & FRAG_OFFSET_MASK) * 8,
                                            data, more, bytes(frame[:hdr.total_length]))
        if outcome is Outcome.QUEUED or outcome is Outcome.DUPLICATE:
            return
        if outcome is not Outcome.DONE:
            if outcome is Outcome.OVERLAP:
                c.inc(Mib.IpExtReasmOverlaps)
            c.inc(Mib.IpReasmFails)
            return
        c.inc(Mib.IpReasmOKs)
        whole = build_ipv4_header(hdr.src, hdr.dst, hdr.proto, len(datagram), ttl=hdr.ttl,
                                  ident=hdr.ident, tos=hdr.tos, dont_fragment=False) + datagram
        hdr = IPv4Header(hdr.src, hdr.dst, hdr.proto, hdr.ttl, hdr.ident, hdr.tos, len(whole),
                         20, 0)
        self._deliver4(now, hdr, whole, memoryview(whole)[20:], False)

    def _deliver4(self, now: float, hdr: IPv4Header, frame: BytesLike, payload: memoryview,
                  csum_verified: bool) -> None:
        """ip_local_deliver: to the protocol."""
        c = self.counters
        if hdr.proto == PROTO_TCP:
            c.inc(Mib.IpInDelivers)  # Linux counts delivery to the protocol, even if it drops
            self._deliver_tcp(now, hdr.src, hdr.dst, payload, csum_verified,
                              hdr.tos & IP_ECN_MASK)
        elif hdr.proto == PROTO_ICMP:
            self._deliver_icmp(now, hdr, payload)
        elif hdr.proto == PROTO_UDP:
            c.inc(Mib.IpInDelivers)
            if csum_verified or self._udp_checksum_ok(hdr.src, hdr.dst, payload,
                                                      Mib.UdpInCsumErrors):
                c.inc(Mib.UdpNoPorts)  # __udp4_lib_rcv: no socket, port unreachable
                self._icmp_error4(now, hdr, frame, icmp.DEST_UNREACH, icmp.PORT_UNREACH)
        else:
            c.inc(Mib.IpInUnknownProtos)  # ip_protocol_deliver_rcu: protocol unreachable
            self._icmp_error4(now, hdr, frame, icmp.DEST_UNREACH, icmp.PROT_UNREACH)

    def _deliver_tcp(self, now: float, src: bytes, dst: bytes, payload: memoryview,
                     csum_verified: bool, ecn: int) -> None:
        c = self.counters
        try:
            seg = parse_tcp(payload, src, dst, verify_checksum=not csum_verified)
        except ParseError as exc:
            if exc.reason == "tcp_bad_checksum":
                c.inc(Mib.TcpInCsumErrors)
            c.inc(Mib.TcpInErrs)
            c.inc(drop_for_reason(exc.reason))
            log.debug("drop", reason=exc.reason, src=ntop(src))
            return
        seg.ecn = ecn  # the IP ECN field (RFC 3168 5): TOS or traffic class, low two bits
        if seg.ecn == IP_ECN_CE:
            c.inc(Mib.IpExtInCEPkts)
        self.engine.on_segment(now, src, dst, seg)

    def _deliver_icmp(self, now: float, hdr: IPv4Header, payload: memoryview) -> None:
        c = self.counters
        c.inc(Mib.IpInDelivers)
        c.inc(Mib.IcmpInMsgs)
        try:
            msg = parse_icmp(payload)
        except ParseError as exc:
            self._icmp_parse_error(exc, Mib.IcmpInCsumErrors, Mib.IcmpInErrors)
            return
        self._count_type(c.icmp_msg_in, _ICMP_IN_MIB, msg.icmp_type)
        if msg.icmp_type == ECHO_REQUEST:
            self._queue_echo_reply(hdr, build_echo_reply(msg))
        elif msg.icmp_type in (icmp.DEST_UNREACH, icmp.TIME_EXCEEDED, icmp.PARAMETERPROB):
            self._icmp_error_in(now, msg)

    def _icmp_parse_error(self, exc: ParseError, csum_errors: MibId,
                          in_errors: MibId) -> None:
        """An ICMP or ICMPv6 message that does not parse: InErrors (and InCsumErrors)."""
        c = self.counters
        if exc.reason == "icmp_bad_checksum":
            c.inc(csum_errors)
        c.inc(in_errors)
        c.inc(drop_for_reason(exc.reason))

    def _count_type(self, table: list[int], names: dict[int, MibId], icmp_type: int) -> None:
        """The per-type table (IcmpMsgInType8, Icmp6InType128) and the named counter."""
        table[icmp_type] += 1
        name = names.get(icmp_type)
        if name is not None:
            self.counters.inc(name)

    def _icmp_error_in(self, now: float, msg: IcmpMessage) -> None:
        """icmp_unreach, then tcp_v4_err: the quoted header and 8 bytes of TCP name the
        connection and the sequence number; the type and code give the errno."""
        quoted = msg.data
        ihl = (quoted[0] & 0x0F) * 4 if quoted else 0
        if len(quoted) < 20 or quoted[0] >> 4 != 4 or ihl < 20 or len(quoted) < ihl + 8:
            self.counters.inc(Mib.IcmpInErrors)  # too little quoted to name a socket
            return
        if quoted[9] != PROTO_TCP:
            return  # no UDP or raw sockets to tell
        code = msg.code
        mtu = None
        if msg.icmp_type == icmp.DEST_UNREACH:
            if code >= len(icmp.UNREACH_ERRORS):
                return
            if code == icmp.FRAG_NEEDED:
                mtu = msg.seq  # RFC 1191 4: the next-hop MTU, the low half of the rest
            err = icmp.UNREACH_ERRORS[code][0]
            fatal = code in (0, 1)  # tcp_req_err's abort: network or host unreachable
        elif msg.icmp_type == icmp.TIME_EXCEEDED:
            err, fatal = errno.EHOSTUNREACH, True
        else:
            err, fatal = errno.EPROTO, True
        self._tcp_error(now, quoted, 12, 16, ihl, err, fatal, Mib.IcmpInErrors, mtu)

    def _tcp_error(self, now: float, quoted: BytesLike, src_at: int, dst_at: int, tcp_at: int,
                   err: int, fatal: bool, in_errors: MibId, mtu: int | None = None) -> None:
        """Hand the engine the error about the TCP segment quoted at ``tcp_at`` (its source
        is our address, its destination the peer's)."""
        width = dst_at - src_at
        local, remote = bytes(quoted[src_at:dst_at]), bytes(quoted[dst_at:dst_at + width])
        sport, dport, seq = struct.unpack_from("!HHI", quoted, tcp_at)
        if not self.engine.on_icmp_error(now, local, sport, remote, dport, seq, err, fatal,
                                         mtu):
            self.counters.inc(in_errors)  # tcp_v4_err/tcp_v6_err: no socket

    def _udp_checksum_ok(self, src: bytes, dst: bytes, payload: memoryview,
                         csum_errors: MibId) -> bool:
        """__udp4_lib_rcv / __udp6_lib_rcv before the lookup: a short datagram or a bad
        checksum is dropped without an answer (a zero checksum is "none" over IPv4 only).
        Not called for a frame whose checksum the link vouched for (it may be partial)."""
        if len(payload) < 8 or int.from_bytes(payload[4:6], "big") > len(payload):
            return False
        if (payload[6] or payload[7] or len(src) == 16) and ones_sum(
                payload, pseudo_header_sum(src, dst, PROTO_UDP, len(payload))) != 0xFFFF:
            self.counters.inc(csum_errors)
            return False
        return True

    def _icmp_error4(self, now: float, hdr: IPv4Header, frame: BytesLike, icmp_type: int,
                     code: int) -> None:
        """icmp_send: an error about ``frame`` to its source, rate-limited
        (icmpv4_xrlim_allow); never to an unspecified, multicast or broadcast source."""
        c = self.counters
        if hdr.src[0] == 0 or hdr.src[0] >= 224 or self._icmp_queue_full():
            return
        if self.config.icmp_ratemask >> icmp_type & 1 and not self.ratelimit.allow(
                now, hdr.src, self.config.icmp_ratelimit / 1000):
            c.inc(Mib.IcmpOutRateLimitHost)
            return
        message = icmp.build_error(icmp_type, code, 0, memoryview(frame)[:hdr.total_length])
        ip = build_ipv4_header(hdr.dst, hdr.src, PROTO_ICMP, len(message),
                               ttl=self.config.ip_default_ttl, ident=self._next_ident(1),
                               tos=hdr.tos, dont_fragment=False)
        self._icmp_out.append(ip + message)
        c.inc(Mib.IcmpOutMsgs)
        c.icmp_msg_out[icmp_type] += 1
        c.inc(Mib.IcmpOutDestUnreachs if icmp_type == icmp.DEST_UNREACH
              else Mib.IcmpOutTimeExcds)

    def _icmp_queue_full(self) -> bool:
        if len(self._icmp_out) >= ICMP_QUEUE_LIMIT:
            self.counters.inc(Mib.UstcpDropIcmpQueueFull)
            return True
        return False

    def _queue_echo_reply(self, request: IPv4Header, icmp: bytes) -> None:
        """RFC 1122 3.2.2.6: reply from the address pinged, with the request's data."""
        c = self.counters
        if self._icmp_queue_full():
            return
        # Linux's ICMP socket sends without DF (IP_PMTUDISC_DONT) and with the request's TOS.
        ip = build_ipv4_header(request.dst, request.src, PROTO_ICMP, len(icmp),
                               ttl=self.config.ip_default_ttl, ident=self._next_ident(1),
                               tos=request.tos, dont_fragment=False)
        self._icmp_out.append(ip + icmp)
        c.inc(Mib.IcmpOutMsgs)
        c.icmp_msg_out[ECHO_REPLY] += 1
        c.inc(Mib.IcmpOutEchoReps)

    # ------------------------------------------------------------------ IPv6

    def _on_ipv6(self, now: float, frame: BytesLike, csum_verified: bool) -> None:
        """ipv6_rcv, then ip6_input_finish's walk to the upper layer."""
        c = self.counters
        c.inc(Mib.Ip6InReceives)
        try:
            hdr, payload = parse_ipv6(frame)
        except ParamProblem as exc:
            c.inc(Mib.Ip6InHdrErrors)
            c.inc(drop_for_reason(exc.reason))
            src, dst = bytes(frame[8:24]), bytes(frame[24:40])
            if dst in self.local_addrs or exc.always or not is_multicast(dst):
                self._icmp6_error(now, src, dst, icmpv6.PARAMPROB, exc.code, exc.pointer,
                                  frame)
            return
        except ParseError as err:  # not `exc`: mypyc gives one name one type per function
            c.inc(Mib.Ip6InTruncatedPkts if err.reason == "ip6_truncated"
                  else Mib.Ip6InHdrErrors)
            c.inc(drop_for_reason(err.reason))
            return
        multicast = is_multicast(hdr.dst)
        if multicast:
            c.inc(Mib.Ip6InMcastPkts)  # all-nodes, solicited-node, MLD: ICMPv6 only
        elif hdr.dst not in self.local_addrs:
            c.inc(Mib.Ip6InAddrErrors)  # not ours, and we do not forward
            return
        frag = hdr.fragment
        if frag is not None and (frag.offset or frag.more):
            self._defrag6(now, hdr, frame, payload)
            return
        self._deliver6(now, hdr, frame, payload, csum_verified, multicast)

    def _defrag6(self, now: float, hdr: IPv6Header, frame: BytesLike,
                 payload: memoryview) -> None:
        """ipv6_frag_rcv: the fragmentable part queued; a complete datagram is parsed again
        as one packet (its extension headers after the fragment header walked then)."""
        c = self.counters
        c.inc(Mib.Ip6ReasmReqds)
        frag = hdr.fragment
        assert frag is not None
        if frag.more and len(payload) & 7:
            # RFC 8200 4.5: a non-final fragment must be a multiple of 8 bytes long
            c.inc(Mib.Ip6InHdrErrors)
            self._icmp6_error(now, hdr.src, hdr.dst, icmpv6.PARAMPROB, PARAM_HDR_FIELD, 4,
                              frame)
            return
        if frag.offset + len(payload) > MAX_DATAGRAM:
            c.inc(Mib.Ip6InHdrErrors)
            self._icmp6_error(now, hdr.src, hdr.dst, icmpv6.PARAMPROB, PARAM_HDR_FIELD,
                              frag.header_offset + 2, frame)
            return
        outcome, datagram = self.reasm6.add(
            now, (hdr.src, hdr.dst, frag.ident), frag.offset, bytes(payload), frag.more,
            bytes(frame[:40 + hdr.payload_length]))
        if outcome is Outcome.QUEUED or outcome is Outcome.DUPLICATE:
            return
        if outcome is not Outcome.DONE:
            c.inc(Mib.Ip6ReasmFails)
            return
        c.inc(Mib.Ip6ReasmOKs)
        whole = build_ipv6_header(hdr.src, hdr.dst, hdr.next_header, len(datagram),
                                  hop_limit=hdr.hop_limit,
                                  traffic_class=hdr.traffic_class) + datagram
        try:
            hdr, payload = parse_ipv6(whole)
        except ParseError as exc:  # the extension headers after the fragment header
            c.inc(Mib.Ip6InHdrErrors)
            c.inc(drop_for_reason(exc.reason))
            return
        self._deliver6(now, hdr, whole, payload, False, False)

    def _deliver6(self, now: float, hdr: IPv6Header, frame: BytesLike, payload: memoryview,
                  csum_verified: bool, multicast: bool) -> None:
        """ip6_protocol_deliver_rcu: to the upper layer."""
        c = self.counters
        proto = hdr.next_header
        if proto == NEXTHDR_TCP and not multicast:
            c.inc(Mib.Ip6InDelivers)
            self._deliver_tcp(now, hdr.src, hdr.dst, payload, csum_verified,
                              hdr.traffic_class & IP_ECN_MASK)
        elif proto == NEXTHDR_ICMP:
            c.inc(Mib.Ip6InDelivers)
            self._deliver_icmp6(now, hdr, payload, multicast)
        elif proto == NEXTHDR_NONE:
            c.inc(Mib.Ip6InDelivers)  # nothing follows (RFC 8200 4.7)
        elif proto == NEXTHDR_UDP and not multicast:
            c.inc(Mib.Ip6InDelivers)
            if csum_verified or self._udp_checksum_ok(hdr.src, hdr.dst, payload,
                                                      Mib.Udp6InCsumErrors):
                c.inc(Mib.Udp6NoPorts)
                self._icmp6_error(now, hdr.src, hdr.dst, icmpv6.DEST_UNREACH,
                                  icmpv6.UNREACH_PORT, 0, frame)
        else:
            # ip6_protocol_deliver_rcu: no handler, a parameter problem at the Next Header
            # field that named it (RFC 8200 4), not to multicast.
            c.inc(Mib.Ip6InUnknownProtos)
            if not multicast:
                self._icmp6_error(now, hdr.src, hdr.dst, icmpv6.PARAMPROB, PARAM_UNK_NEXTHDR,
                                  hdr.next_header_offset, frame)

    def _deliver_icmp6(self, now: float, hdr: IPv6Header, payload: memoryview,
                       multicast: bool) -> None:
        """icmpv6_rcv: echo answered (to our unicast address), errors counted, the link's
        neighbour discovery, MLD and router messages counted and ignored."""
        c = self.counters
        c.inc(Mib.Icmp6InMsgs)
        try:
            msg = parse_icmpv6(payload, hdr.src, hdr.dst)
        except ParseError as exc:
            self._icmp_parse_error(exc, Mib.Icmp6InCsumErrors, Mib.Icmp6InErrors)
            return
        self._count_type(c.icmp6_msg_in, _ICMP6_IN_MIB, msg.icmp_type)
        if msg.icmp_type in _ICMP6_IGNORED:
            c.inc(Mib.UstcpDropIcmp6NotOurs)
        elif msg.icmp_type == icmpv6.ECHO_REQUEST and not multicast:
            self._queue_echo6_reply(hdr, msg)
        elif msg.icmp_type < icmpv6.INFO_MSG_MIN:
            self._icmp6_error_in(now, msg)

    def _icmp6_error_in(self, now: float, msg: Icmpv6Message) -> None:
        """icmpv6_notify, then tcp_v6_err: the quoted packet's extension headers skipped to
        its TCP header."""
        quoted = msg.data
        upper = skip_exthdr(quoted) if len(quoted) >= 40 and quoted[0] >> 4 == 6 else None
        if upper is None or len(quoted) < upper[1] + 8:
            self.counters.inc(Mib.Icmp6InErrors)
            return
        if upper[0] != NEXTHDR_TCP:
            return
        if msg.icmp_type not in (icmpv6.DEST_UNREACH, icmpv6.PKT_TOOBIG, icmpv6.TIME_EXCEED,
                                 icmpv6.PARAMPROB):
            return
        err, fatal = icmpv6.error_to_errno(msg.icmp_type, msg.code)
        mtu = msg.rest if msg.icmp_type == icmpv6.PKT_TOOBIG else None
        self._tcp_error(now, quoted, 8, 24, upper[1], err, fatal, Mib.Icmp6InErrors, mtu)

    def _queue_echo6_reply(self, request: IPv6Header, msg: Icmpv6Message) -> None:
        """RFC 4443 4.2: from the address pinged, the request's identifier and data, with the
        request's traffic class (icmpv6_echo_reply)."""
        if self._icmp_queue_full():
            return
        icmp = icmpv6.build_echo_reply(request.dst, request.src, msg)
        self._queue_icmp6(request.dst, request.src, icmp, icmpv6.ECHO_REPLY,
                          request.traffic_class)
        self.counters.inc(Mib.Icmp6OutEchoReplies)

    def _icmp6_error(self, now: float, src: bytes, dst: bytes, icmp_type: int, code: int,
                     rest: int, invoking: BytesLike) -> None:
        """An ICMPv6 error about ``invoking`` (received from ``src`` for ``dst``). RFC 4443
        2.4 (e): never about an ICMPv6 error, nor to an unspecified or multicast source;
        rate-limited (RFC 4443 2.4 (f), icmpv6_xrlim_allow)."""
        if src == bytes(16) or is_multicast(src) or self._icmp_queue_full():
            return
        upper = skip_exthdr(invoking)  # is_ineligible: an error, or nothing to tell by
        if upper is None or (upper[0] == NEXTHDR_ICMP and (
                upper[1] >= len(invoking) or invoking[upper[1]] < icmpv6.INFO_MSG_MIN)):
            return
        ours = dst if dst in self.local_addrs else next(
            (a for a in self.local_addrs if len(a) == 16), None)
        if ours is None:
            return
        if ICMP6_RATEMASK >> icmp_type & 1 and not self.ratelimit.allow(
                now, src, self.config.icmp_ratelimit / 1000):
            self.counters.inc(Mib.Icmp6OutRateLimitHost)
            return
        self._queue_icmp6(ours, src, build_error(ours, src, icmp_type, code, rest, invoking),
                          icmp_type, 0)
        self.counters.inc(_ICMP6_OUT_MIB[icmp_type])

    def _queue_icmp6(self, src: bytes, dst: bytes, icmp: bytes, icmp_type: int,
                     traffic_class: int) -> None:
        ip = build_ipv6_header(src, dst, NEXTHDR_ICMP, len(icmp), traffic_class=traffic_class)
        self._icmp_out.append(ip + icmp)
        c = self.counters
        c.inc(Mib.Icmp6OutMsgs)
        c.icmp6_msg_out[icmp_type] += 1

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When the oldest reassembly queue times out."""
        if not self.reasm4 and not self.reasm6:
            return None  # the common case, on every flush
        deadlines = [d for d in (self.reasm4.deadline, self.reasm6.deadline) if d is not None]
        return min(deadlines) if deadlines else None

    def on_timers(self, now: float) -> None:
        """ip_expire / ip6_frag_expire: queues past ipfrag_time are dropped; the sender of a
        datagram whose first fragment came is told (time exceeded, fragment reassembly)."""
        c = self.counters
        for first in self.reasm4.expire(now):
            c.inc(Mib.IpReasmTimeout)
            c.inc(Mib.IpReasmFails)
            if first is not None:
                hdr, _ = parse_ipv4(first)
                self._icmp_error4(now, hdr, first, icmp.TIME_EXCEEDED, icmp.EXC_FRAGTIME)
        for first in self.reasm6.expire(now):
            c.inc(Mib.Ip6ReasmTimeout)
            c.inc(Mib.Ip6ReasmFails)
            if first is not None:
                self._icmp6_error(now, first[8:24], first[24:40], icmpv6.TIME_EXCEED,
                                  icmpv6.EXC_FRAGTIME, 0, first)

    # ------------------------------------------------------------------ transmit

    def take_frames(self) -> list[tuple[bytes, int]]:
        """Frames to transmit as ``(frame, gso_size)``; ``gso_size`` is non-zero for a GSO
        super-packet the link must segment (virtio-net GSO_TCPV4)."""
        segments = self.engine.take_output()
        if not segments and not self._icmp_out:
            return []  # the common case after most user calls: nothing to send
        frames = [(piece, 0) for frame in self._icmp_out for piece in self._fit(frame)]
        self._icmp_out = []
        c = self.counters
        v6 = sum(frame[0] >> 4 == 6 for frame, _ in frames)
        for src, dst, seg in segments:
            # The send path contains what the receive path contains: a segment that cannot
            # be built is counted and dropped (its data stays queued for retransmission),
            # and the daemon lives on.
            try:
                frames.append(self._tcp_frame(src, dst, seg))
            except Exception:
                c.inc(Mib.UstcpInternalErrors)
                log.exception("internal_error", where="tcp_frame", length=len(seg.payload))
                continue
            if len(src) == 16:
                v6 += 1
        c.inc(Mib.Ip6OutRequests, v6)
        c.inc(Mib.IpOutRequests, len(frames) - v6)
        return frames

    def _fit(self, frame: bytes) -> list[bytes]:
        """An ICMP message as it fits the link: fragmented when longer than its MTU (a
        reply to a large ping), as Linux's ICMP socket does; TCP never needs this."""
        if len(frame) <= self.mtu:
            return [frame]
        if frame[0] >> 4 == 6:
            self._frag_ident = (self._frag_ident + 1) & 0xFFFFFFFF
            return fragment_ipv6(frame, self.mtu, self._frag_ident)
        return fragment_ipv4(frame, self.mtu)

    def _tcp_frame(self, src: bytes, dst: bytes, seg: TcpSegment) -> tuple[bytes, int]:
        """IP header, TCP header and payload joined: the payload's only copy."""
        payload = seg.payload
        size = len(payload)
        gso = seg.gso_size if size > seg.gso_size > 0 else 0
        tcp = build_tcp(seg, src, dst, checksum=self.tcp_checksum)
        if len(src) == 16:
            ip = build_ipv6_header(src, dst, NEXTHDR_TCP, len(tcp) + size,
                                   traffic_class=seg.ecn)
            return b"".join((ip, tcp, payload)), gso
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
