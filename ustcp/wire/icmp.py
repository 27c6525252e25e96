"""ICMP messages (RFC 792): parse with checksum verification, build echo replies and
destination unreachable errors; Linux's table of what each error means to a socket."""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import Final

from .checksum import BytesLike, checksum, ones_sum
from .errors import ParseError

ECHO_REPLY: Final = 0
DEST_UNREACH: Final = 3
SOURCE_QUENCH: Final = 4
ECHO_REQUEST: Final = 8
TIME_EXCEEDED: Final = 11
PARAMETERPROB: Final = 12
ICMP_HEADER_LEN: Final = 8

# Destination unreachable codes (RFC 792, RFC 1812 5.2.7.1)
PROT_UNREACH: Final = 2
PORT_UNREACH: Final = 3
FRAG_NEEDED: Final = 4
EXC_FRAGTIME: Final = 1  # time exceeded: fragment reassembly time exceeded
# RFC 1812 4.3.2.3: an error quotes as much of the invoking packet as fits in 576 bytes
MAX_QUOTE: Final = 576 - 20 - ICMP_HEADER_LEN

# icmp_err_convert (net/ipv4/icmp.c): the errno each unreachable code gives a socket, and
# whether Linux treats it as fatal (RFC 1122 4.2.3.9's hard errors and more).
UNREACH_ERRORS: tuple[tuple[int, bool], ...] = (
    (errno.ENETUNREACH, False),   # 0 network unreachable
    (errno.EHOSTUNREACH, False),  # 1 host unreachable
    (errno.ENOPROTOOPT, True),    # 2 protocol unreachable
    (errno.ECONNREFUSED, True),   # 3 port unreachable
    (errno.EMSGSIZE, False),      # 4 fragmentation needed and DF set
    (errno.EOPNOTSUPP, False),    # 5 source route failed
    (errno.ENETUNREACH, True),    # 6 destination network unknown
    (errno.EHOSTDOWN, True),      # 7 destination host unknown
    (errno.ENONET, True),         # 8 source host isolated
    (errno.ENETUNREACH, True),    # 9 network administratively prohibited
    (errno.EHOSTUNREACH, True),   # 10 host administratively prohibited
    (errno.ENETUNREACH, False),   # 11 network unreachable for TOS
    (errno.EHOSTUNREACH, False),  # 12 host unreachable for TOS
    (errno.EHOSTUNREACH, True),   # 13 communication administratively prohibited
    (errno.EHOSTUNREACH, True),   # 14 host precedence violation
    (errno.EHOSTUNREACH, True),   # 15 precedence cutoff in effect
)

_HDR: Final = struct.Struct("!BBHHH")


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


def build_error(icmp_type: int, code: int, rest: int, invoking: BytesLike) -> bytes:
    """An error message (RFC 792) quoting the invoking packet up to :data:`MAX_QUOTE`
    bytes; ``rest`` is the 32-bit field after the checksum (the next-hop MTU of a
    "fragmentation needed" in its low 16 bits, RFC 1191 4)."""
    data = memoryview(invoking)[:MAX_QUOTE]
    csum = checksum(data, (icmp_type << 8 | code) + (rest >> 16) + (rest & 0xFFFF))
    return _HDR.pack(icmp_type, code, csum, rest >> 16, rest & 0xFFFF) + bytes(data)
