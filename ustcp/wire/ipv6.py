"""IPv6 header and extension headers (RFC 8200): parse as Linux's ipv6_rcv and
ip6_input_finish walk them, build a fixed header.

The parser walks the chain of extension headers up to the upper-layer protocol:

- hop-by-hop options (only right after the fixed header, RFC 8200 4.3) and destination
  options: their TLVs processed as Linux's ip6_parse_tlv does (Pad1 and PadN skipped, PadN at
  most 7 bytes and all zero, Router Alert known in hop-by-hop; an unknown option acts on the
  two high bits of its type: skip, discard, or discard and answer with a parameter problem
  code 2, the last not to a multicast destination; more than
  :data:`MAX_OPTS_NUMBER` options other than padding discards);
- routing: ignored when Segments Left is 0, else (no routing type is processed by a host that
  does not forward) a parameter problem code 0 at the Routing Type (ipv6_rthdr_rcv);
- fragment: recorded in the header (:class:`Fragment`), the walk stops: the rest is the
  fragmentable part, which only reassembly can parse;
- No Next Header (59) ends the packet; any other value is the upper layer's protocol.

An error that RFC 8200 answers with an ICMPv6 parameter problem raises :class:`ParamProblem`
(a :class:`ParseError`) carrying the code and the pointer; others raise ParseError only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from .checksum import BytesLike
from .errors import ParseError

IPV6_HEADER_LEN: Final = 40
MAX_PAYLOAD_LENGTH: Final = 0xFFFF
DEFAULT_HOP_LIMIT: Final = 64  # Linux's IPV6_DEFAULT_HOPLIMIT (net.ipv6.conf.*.hop_limit)

NEXTHDR_HOP: Final = 0
NEXTHDR_TCP: Final = 6
NEXTHDR_UDP: Final = 17
NEXTHDR_ROUTING: Final = 43
NEXTHDR_FRAGMENT: Final = 44
NEXTHDR_ICMP: Final = 58
NEXTHDR_NONE: Final = 59
NEXTHDR_DEST: Final = 60

# Parameter problem codes (RFC 4443 3.4)
PARAM_HDR_FIELD: Final = 0  # erroneous header field
PARAM_UNK_NEXTHDR: Final = 1  # unrecognized Next Header type
PARAM_UNK_OPTION: Final = 2  # unrecognized IPv6 option

OPT_PAD1: Final = 0
OPT_PADN: Final = 1
OPT_ROUTER_ALERT: Final = 5
MAX_OPTS_NUMBER: Final = 8  # net.ipv6.max_hbh_opts_number, max_dst_opts_number
MAX_PAD_LEN: Final = 7  # ip6_parse_tlv: padding beyond 7 bytes is not alignment

_HDR: Final = struct.Struct("!IHBB16s16s")
_FRAG: Final = struct.Struct("!BxHI")


class ParamProblem(ParseError):
    """A packet RFC 8200 answers with an ICMPv6 parameter problem: ``code`` (RFC 4443 3.4),
    ``pointer`` the offset of the offending byte from the start of the packet. ``always``:
    an unknown option of action 10 is answered even to a multicast destination."""

    def __init__(self, reason: str, code: int, pointer: int, *, always: bool = False) -> None:
        super().__init__(reason, f"code {code} at byte {pointer}")
        self.code = code
        self.pointer = pointer
        self.always = always


@dataclass(slots=True, frozen=True)
class Fragment:
    """The fragment header of a packet (RFC 8200 4.5): offset in bytes."""

    offset: int
    more: bool
    ident: int
    header_offset: int  # where the fragment header starts in the packet
    prev_nexthdr_offset: int  # the Next Header field that names it (6 for the fixed header)


@dataclass(slots=True)
class IPv6Header:
    """The fields the stack uses; ``src``/``dst`` are 16 packed bytes. ``next_header`` is
    the upper layer's protocol after the extension headers, ``header_length`` where its
    header starts; ``next_header_offset`` is the byte that names it (RFC 4443 pointers)."""

    src: bytes
    dst: bytes
    next_header: int
    hop_limit: int
    traffic_class: int
    payload_length: int
    header_length: int
    next_header_offset: int
    fragment: Fragment | None = None

    def __init__(self, src: bytes, dst: bytes, next_header: int, hop_limit: int,
                 traffic_class: int, payload_length: int, header_length: int,
                 next_header_offset: int, fragment: Fragment | None = None) -> None:
        # written out for mypyc, as wire.tcp.TcpOptions.__init__ is
        self.src = src
        self.dst = dst
        self.next_header = next_header
        self.hop_limit = hop_limit
        self.traffic_class = traffic_class
        self.payload_length = payload_length
        self.header_length = header_length
        self.next_header_offset = next_header_offset
        self.fragment = fragment


def is_multicast(addr: bytes) -> bool:
    return addr[0] == 0xFF


def parse_ipv6(frame: BytesLike) -> tuple[IPv6Header, memoryview]:
    """Parse an IPv6 packet and its extension headers; the payload view is the upper layer's
    (or, for a fragment, the fragmentable part after the fragment header) and ends at the
    payload length. Raises :class:`ParseError` or :class:`ParamProblem`."""
    size = len(frame)
    if size < IPV6_HEADER_LEN:
        raise ParseError("ip6_short", f"{size} bytes")
    vtf, plen, nexthdr, hop_limit, src, dst = _HDR.unpack_from(frame)
    if vtf >> 28 != 6:
        raise ParseError("ip_version", f"version {vtf >> 28}")
    end = IPV6_HEADER_LEN + plen
    if end > size:  # ipv6_rcv: a payload length past the frame is truncated
        raise ParseError("ip6_truncated", f"payload length {plen}, frame {size}")
    if plen == 0:  # jumbograms (RFC 2675) are not supported, as on a 64 KB MTU link
        raise ParseError("ip6_truncated", "payload length 0")
    view = memoryview(frame)
    off, nh_off = IPV6_HEADER_LEN, 6
    hdr = IPv6Header(src, dst, nexthdr, hop_limit, (vtf >> 20) & 0xFF, plen, off, nh_off)
    multicast = is_multicast(dst)
    while True:
        if (nexthdr == NEXTHDR_HOP and off == IPV6_HEADER_LEN) or nexthdr == NEXTHDR_DEST:
            length = _ext_length(view, off, end)
            _parse_tlv(view, off, length, hop=nexthdr == NEXTHDR_HOP, multicast=multicast)
        elif nexthdr == NEXTHDR_ROUTING:
            length = _ext_length(view, off, end)
            if length < 4:
                raise ParseError("ip6_ext_short", "routing header")
            if view[off + 3]:  # Segments Left: a host that does not forward cannot go on
                raise ParamProblem("ip6_routing", PARAM_HDR_FIELD, off + 2)
        elif nexthdr == NEXTHDR_FRAGMENT:
            if off + 8 > end:
                raise ParseError("ip6_ext_short", "fragment header")
            inner, offset_flags, ident = _FRAG.unpack_from(view, off)
            hdr.fragment = Fragment(offset_flags & 0xFFF8, bool(offset_flags & 1), ident,
                                    off, nh_off)
            hdr.next_header, hdr.header_length, hdr.next_header_offset = inner, off + 8, off
            return hdr, view[off + 8:end]
        else:
            hdr.next_header, hdr.header_length, hdr.next_header_offset = nexthdr, off, nh_off
            return hdr, view[off:end]
        nexthdr, nh_off = view[off], off
        off += length


def _ext_length(view: memoryview, off: int, end: int) -> int:
    """The length in bytes of the extension header at ``off`` (Hdr Ext Len, 8-byte units,
    not counting the first 8)."""
    if off + 8 > end:
        raise ParseError("ip6_ext_short", f"extension header at {off}")
    length = (view[off + 1] + 1) * 8
    if off + length > end:
        raise ParseError("ip6_ext_short", f"extension header at {off}, {length} bytes")
    return length


def _parse_tlv(view: memoryview, start: int, length: int, *, hop: bool, multicast: bool) -> None:
    """ip6_parse_tlv over the options of the header at ``start``."""
    off, end, padlen, count = start + 2, start + length, 0, 0
    while off < end:
        opt = view[off]
        if opt == OPT_PAD1:
            padlen += 1
            off += 1
        else:
            if off + 2 > end or off + 2 + view[off + 1] > end:
                raise ParseError("ip6_bad_option", f"option {opt} overruns its header")
            optlen = 2 + view[off + 1]
            if opt == OPT_PADN:
                padlen += optlen
                if any(view[off + 2:off + optlen]):
                    raise ParseError("ip6_bad_option", "PadN with non-zero bytes")
            else:
                padlen = 0
                count += 1
                if count > MAX_OPTS_NUMBER:
                    raise ParseError("ip6_bad_option", f"more than {MAX_OPTS_NUMBER} options")
                if not (hop and opt == OPT_ROUTER_ALERT):
                    _unknown_option(opt, off, multicast)
            off += optlen
        if padlen > MAX_PAD_LEN:
            raise ParseError("ip6_bad_option", f"{padlen} bytes of padding")


def _unknown_option(opt: int, off: int, multicast: bool) -> None:
    """RFC 8200 4.2: the two high bits of an unknown option's type say what to do."""
    action = opt >> 6
    if action == 0:
        return
    if action == 1:
        raise ParseError("ip6_bad_option", f"unknown option {opt:#x}, discard")
    if action == 2 or not multicast:
        raise ParamProblem("ip6_unknown_option", PARAM_UNK_OPTION, off, always=action == 2)
    raise ParseError("ip6_bad_option", f"unknown option {opt:#x} to multicast, discard")


def skip_exthdr(frame: BytesLike) -> tuple[int, int] | None:
    """The upper layer's protocol and offset past the extension headers, without checking
    them (ipv6_skip_exthdr); None when the chain is cut short or a later fragment hides it."""
    nexthdr, off = frame[6], IPV6_HEADER_LEN
    while nexthdr in (NEXTHDR_HOP, NEXTHDR_ROUTING, NEXTHDR_DEST, NEXTHDR_FRAGMENT):
        if off + 8 > len(frame):
            return None
        if nexthdr == NEXTHDR_FRAGMENT:
            if int.from_bytes(frame[off + 2:off + 4], "big") & 0xFFF8:
                return None
            length = 8
        else:
            length = (frame[off + 1] + 1) * 8
        nexthdr = frame[off]
        off += length
    return nexthdr, off


def build_ipv6_header(src: bytes, dst: bytes, next_header: int, payload_len: int, *,
                      hop_limit: int = DEFAULT_HOP_LIMIT, traffic_class: int = 0,
                      flow_label: int = 0) -> bytes:
    """A 40-byte fixed header; ``payload_len`` may be a GSO super-packet's whole payload."""
    if payload_len > MAX_PAYLOAD_LENGTH:
        raise ValueError(f"IPv6 payload length {payload_len} exceeds {MAX_PAYLOAD_LENGTH}")
    vtf = 6 << 28 | traffic_class << 20 | flow_label
    return _HDR.pack(vtf, payload_len, next_header, hop_limit, src, dst)


def fragment_ipv6(frame: bytes, mtu: int, ident: int) -> list[bytes]:
    """RFC 8200 4.5's fragmentation at the source of a packet with no extension headers
    into packets of at most ``mtu`` bytes, each with a fragment header (ip6_fragment); used
    for ICMPv6 only, the stack never fragments TCP."""
    src, dst, nexthdr, hop_limit = frame[8:24], frame[24:40], frame[6], frame[7]
    traffic_class = int.from_bytes(frame[0:2], "big") >> 4 & 0xFF
    payload = memoryview(frame)[IPV6_HEADER_LEN:]
    room = (mtu - IPV6_HEADER_LEN - 8) & ~7
    pieces = []
    for start in range(0, len(payload), room):
        chunk = payload[start:start + room]
        more = 1 if start + room < len(payload) else 0
        header = build_ipv6_header(bytes(src), bytes(dst), NEXTHDR_FRAGMENT, 8 + len(chunk),
                                   hop_limit=hop_limit, traffic_class=traffic_class)
        pieces.append(header + _FRAG.pack(nexthdr, start | more, ident) + bytes(chunk))
    return pieces
