"""ICMPv6 messages (RFC 4443): parse with the pseudo-header checksum, build echo replies and
error messages.

The checksum covers an IPv6 pseudo-header (RFC 8200 8.1) with Next Header 58, so parsing and
building need the packet's addresses.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import Final

from .checksum import BytesLike, checksum, ones_sum, pseudo_header_sum
from .errors import ParseError
from .ipv6 import IPV6_HEADER_LEN, NEXTHDR_ICMP

ICMPV6_HEADER_LEN: Final = 8
MIN_MTU: Final = 1280  # RFC 8200 5: every link carries this much
# RFC 4443 2.4 (c): an error carries as much of the invoking packet as fits in the minimum MTU
MAX_QUOTE: Final = MIN_MTU - IPV6_HEADER_LEN - ICMPV6_HEADER_LEN

# Types (RFC 4443, RFC 4861, RFC 3810)
DEST_UNREACH: Final = 1
PKT_TOOBIG: Final = 2
TIME_EXCEED: Final = 3
PARAMPROB: Final = 4
ECHO_REQUEST: Final = 128
ECHO_REPLY: Final = 129
MLD_QUERY: Final = 130
MLD_REPORT: Final = 131
MLD_REDUCTION: Final = 132
ROUTER_SOLICIT: Final = 133
ROUTER_ADVERT: Final = 134
NEIGHBOUR_SOLICIT: Final = 135
NEIGHBOUR_ADVERT: Final = 136
REDIRECT: Final = 137
MLD2_REPORT: Final = 143
INFO_MSG_MIN: Final = 128  # types below are errors (RFC 4443 2.1)

EXC_FRAGTIME: Final = 1  # time exceeded: fragment reassembly time exceeded (RFC 4443 3.3)

# Destination unreachable codes (RFC 4443 3.1)
UNREACH_NOROUTE: Final = 0
UNREACH_ADM_PROHIBITED: Final = 1
UNREACH_NOT_NEIGHBOUR: Final = 2
UNREACH_ADDR: Final = 3
UNREACH_PORT: Final = 4
UNREACH_POLICY_FAIL: Final = 5
UNREACH_REJECT_ROUTE: Final = 6

# icmpv6_err_convert (net/ipv6/icmp.c): the errno each destination unreachable code gives a
# socket and whether it is fatal; the other error types below.
UNREACH_ERRORS: tuple[tuple[int, bool], ...] = (
    (errno.ENETUNREACH, False),  # 0 no route to destination
    (errno.EACCES, True),        # 1 administratively prohibited
    (errno.EHOSTUNREACH, False),  # 2 beyond scope of source address
    (errno.EHOSTUNREACH, False),  # 3 address unreachable
    (errno.ECONNREFUSED, True),  # 4 port unreachable
    (errno.EACCES, True),        # 5 source address failed ingress/egress policy
    (errno.EACCES, True),        # 6 reject route to destination
)


def error_to_errno(icmp_type: int, code: int) -> tuple[int, bool]:
    """icmpv6_err_convert: ``(errno, fatal)`` for an error message."""
    if icmp_type == DEST_UNREACH:
        return UNREACH_ERRORS[code] if code < len(UNREACH_ERRORS) else (errno.EPROTO, False)
    if icmp_type == PKT_TOOBIG:
        return errno.EMSGSIZE, False
    if icmp_type == PARAMPROB:
        return errno.EPROTO, True
    if icmp_type == TIME_EXCEED:
        return errno.EHOSTUNREACH, False
    return errno.EPROTO, False


_HDR: Final = struct.Struct("!BBHI")


@dataclass(slots=True)
class Icmpv6Message:
    """One ICMPv6 message; ``rest`` is the 32-bit field after the checksum (echo identifier
    and sequence number, the MTU of a packet too big, a parameter problem's pointer)."""

    icmp_type: int
    code: int
    rest: int
    data: BytesLike


def parse_icmpv6(buf: BytesLike, src: bytes, dst: bytes) -> Icmpv6Message:
    """Parse one ICMPv6 message, verifying its checksum. Raises :class:`ParseError`."""
    if len(buf) < ICMPV6_HEADER_LEN:
        raise ParseError("icmp_short", f"{len(buf)} bytes")
    if ones_sum(buf, pseudo_header_sum(src, dst, NEXTHDR_ICMP, len(buf))) != 0xFFFF:
        raise ParseError("icmp_bad_checksum")
    icmp_type, code, _csum, rest = _HDR.unpack_from(buf)
    return Icmpv6Message(icmp_type, code, rest, memoryview(buf)[ICMPV6_HEADER_LEN:])


def build_icmpv6(src: bytes, dst: bytes, icmp_type: int, code: int, rest: int,
                 data: BytesLike) -> bytes:
    """A message with its checksum over the pseudo-header of ``src`` -> ``dst``."""
    length = ICMPV6_HEADER_LEN + len(data)
    initial = pseudo_header_sum(src, dst, NEXTHDR_ICMP, length) + (icmp_type << 8 | code) \
        + (rest >> 16) + (rest & 0xFFFF)
    return _HDR.pack(icmp_type, code, checksum(data, initial), rest) + bytes(data)


def build_echo_reply(src: bytes, dst: bytes, request: Icmpv6Message) -> bytes:
    """RFC 4443 4.2: the request's identifier, sequence number and data."""
    return build_icmpv6(src, dst, ECHO_REPLY, 0, request.rest, request.data)


def build_error(src: bytes, dst: bytes, icmp_type: int, code: int, rest: int,
                invoking: BytesLike) -> bytes:
    """An error message quoting as much of ``invoking`` as fits in 1280 bytes."""
    return build_icmpv6(src, dst, icmp_type, code, rest, memoryview(invoking)[:MAX_QUOTE])
