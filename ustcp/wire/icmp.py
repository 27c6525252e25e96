"""ICMP messages (RFC 792): parse with checksum verification, build echo replies."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .checksum import BytesLike, checksum, ones_sum
from .errors import ParseError

ECHO_REPLY = 0
ECHO_REQUEST = 8
ICMP_HEADER_LEN = 8

_HDR = struct.Struct("!BBHHH")


@dataclass(slots=True)
class IcmpMessage:
    """One ICMP message. ``ident``/``seq`` are the two halves of the 4-byte rest of the
    header: the echo identifier and sequence number for echo messages (RFC 792 p.14)."""

    icmp_type: int
    code: int
    checksum: int
    ident: int
    seq: int
    data: BytesLike


def parse_icmp(buf: BytesLike) -> IcmpMessage:
    """Parse one ICMP message, verifying its checksum. Raises :class:`ParseError`."""
    if len(buf) < ICMP_HEADER_LEN:
        raise ParseError("icmp_short", f"{len(buf)} bytes")
    # RFC 792: the checksum covers the whole message, header included.
    if ones_sum(buf) != 0xFFFF:
        raise ParseError("icmp_bad_checksum")
    icmp_type, code, csum, ident, seq = _HDR.unpack_from(buf)
    return IcmpMessage(icmp_type, code, csum, ident, seq, memoryview(buf)[ICMP_HEADER_LEN:])


def build_echo(icmp_type: int, ident: int, seq: int, data: BytesLike) -> bytes:
    """An echo request or reply (RFC 792 p.14) with its checksum."""
    # The header's words summed as integers, so it is packed once with its checksum.
    csum = checksum(data, (icmp_type << 8) + ident + seq)
    return _HDR.pack(icmp_type, 0, csum, ident, seq) + data


def build_echo_reply(request: IcmpMessage) -> bytes:
    """The reply to an echo request: same identifier, sequence number and data."""
    return build_echo(ECHO_REPLY, request.ident, request.seq, request.data)
