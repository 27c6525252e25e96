"""IPv4 header (RFC 791 3.1): parse with checks in Linux's order (ip_rcv_core), build.

Options are skipped via IHL; fragments are recognised but never reassembled.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from .checksum import BytesLike, addr_sum, fold, ones_sum
from .errors import ParseError
from .fields import u16

IPV4_HEADER_LEN: Final = 20
MAX_TOTAL_LENGTH: Final = 0xFFFF
PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
FLAG_DF: Final = 0x4000
FLAG_MF: Final = 0x2000
FRAG_OFFSET_MASK: Final = 0x1FFF

_HDR: Final = struct.Struct("!BBHHHBBH4s4s")
_VERSION_IHL: Final = 0x45  # version 4, five 32-bit words, no options


@dataclass(slots=True)
class IPv4Header:
    """The fields the stack uses; ``src``/``dst`` are 4 packed bytes."""

    src: bytes
    dst: bytes
    proto: int
    ttl: int
    ident: int
    tos: int
    total_length: int
    header_length: int
    flags_frag: int  # flags (3 bits) and fragment offset (13 bits), as on the wire

    def __init__(self, src: bytes, dst: bytes, proto: int, ttl: int, ident: int, tos: int,
                 total_length: int, header_length: int, flags_frag: int) -> None:
        # written out for mypyc, as wire.tcp.TcpOptions.__init__ is
        self.src = src
        self.dst = dst
        self.proto = proto
        self.ttl = ttl
        self.ident = ident
        self.tos = tos
        self.total_length = total_length
        self.header_length = header_length
        self.flags_frag = flags_frag


def parse_ipv4(frame: BytesLike) -> tuple[IPv4Header, memoryview]:
    """Parse and verify an IPv4 header; the payload view ends at the total length.

    Anything after the total length (link padding) is ignored. Raises :class:`ParseError`.
    """
    size = len(frame)
    if size < IPV4_HEADER_LEN:
        raise ParseError("ip_short", f"{size} bytes")
    version_ihl: int = frame[0]
    if version_ihl >> 4 != 4:
        raise ParseError("ip_version", f"version {version_ihl >> 4}")
    hlen = (version_ihl & 0x0F) * 4
    if hlen < IPV4_HEADER_LEN or hlen > size:  # RFC 791 3.1: IHL is at least 5
        raise ParseError("ip_bad_ihl", f"header {hlen} bytes of {size}")
    view = memoryview(frame)
    head = bytes(view[:hlen])
    # RFC 791 3.1: the one's-complement sum of the header's words, its checksum included,
    # is all ones.
    if ones_sum(head) != 0xFFFF:
        raise ParseError("ip_bad_checksum")
    total = u16(head, 2)
    if total < hlen or total > size:
        raise ParseError("ip_bad_length", f"total length {total}, header {hlen}, "
                                          f"frame {size}")
    header = IPv4Header(head[12:16], head[16:20], head[9], head[8], u16(head, 4), head[1],
                        total, hlen, u16(head, 6))
    return header, view[hlen:total]


def is_fragment(hdr: IPv4Header) -> bool:
    """More fragments set or a non-zero fragment offset (RFC 791 3.2)."""
    return bool(hdr.flags_frag & (FLAG_MF | FRAG_OFFSET_MASK))


def build_ipv4_header(src: bytes, dst: bytes, proto: int, payload_len: int, *, ttl: int,
                      ident: int, tos: int = 0, dont_fragment: bool = True) -> bytes:
    """A 20-byte header (no options) with its checksum; ``payload_len`` may be a GSO
    super-packet's whole payload, up to 64 KB less the header."""
    total = IPV4_HEADER_LEN + payload_len
    if total > MAX_TOTAL_LENGTH:
        raise ValueError(f"IPv4 total length {total} exceeds {MAX_TOTAL_LENGTH}")
    flags = FLAG_DF if dont_fragment else 0
    # The header's words summed as integers (a 32-bit address is congruent to the sum of
    # its two words modulo 0xFFFF), so the header is packed once, checksum included.
    total_sum = ((_VERSION_IHL << 8 | tos) + total + ident + flags + (ttl << 8 | proto)
                 + addr_sum(src) + addr_sum(dst))
    csum = 0xFFFF - fold(total_sum)
    return _HDR.pack(_VERSION_IHL, tos, total, ident, flags, ttl, proto, csum, src, dst)


def fragment_ipv4(frame: bytes, mtu: int) -> list[bytes]:
    """RFC 791 3.2's fragmentation of a packet without DF and without options into packets
    of at most ``mtu`` bytes (ip_fragment); used for ICMP only, the stack never fragments
    TCP. The header's checksum is recomputed for each piece."""
    hdr, payload = parse_ipv4(frame)
    room = (mtu - IPV4_HEADER_LEN) & ~7
    pieces = []
    for start in range(0, len(payload), room):
        chunk = payload[start:start + room]
        more = FLAG_MF if start + room < len(payload) else 0
        header = bytearray(build_ipv4_header(hdr.src, hdr.dst, hdr.proto, len(chunk),
                                             ttl=hdr.ttl, ident=hdr.ident, tos=hdr.tos,
                                             dont_fragment=False))
        header[6:8] = (more | start >> 3).to_bytes(2, "big")
        header[10:12] = b"\0\0"
        header[10:12] = (0xFFFF - fold(int.from_bytes(header, "big"))).to_bytes(2, "big")
        pieces.append(bytes(header) + bytes(chunk))
    return pieces
