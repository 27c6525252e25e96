"""TCP header and options (RFC 9293 section 3.1, RFC 7323, RFC 2018).

The engine works on :class:`TcpSegment`; this module turns one into bytes and back.
Option layouts on the wire follow Linux (tcp_output.c tcp_options_write) so that
packetdrill scripts written against Linux match byte for byte.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from .checksum import BytesLike, ones_sum, pseudo_header_sum
from .checksum import checksum as _checksum
from .errors import ParseError
from .fields import u16, u32

# Flag bits (RFC 9293 3.1, RFC 3168 for ECE/CWR).
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20
ECE: Final = 0x40
CWR: Final = 0x80

# Option kinds (IANA).
OPT_EOL: Final = 0
OPT_NOP: Final = 1
OPT_MSS: Final = 2
OPT_WSCALE: Final = 3
OPT_SACK_PERMITTED: Final = 4
OPT_SACK: Final = 5
OPT_TIMESTAMP: Final = 8
OPT_FASTOPEN: Final = 34  # RFC 7413 4.1.1
OPT_EXP: Final = 254  # RFC 6994 experimental option; Fast Open's before kind 34 was assigned
FASTOPEN_EXP_MAGIC: Final = 0xF989
FASTOPEN_COOKIE_MIN: Final = 4  # bytes (RFC 7413 4.1.1: 4 to 16, even)
FASTOPEN_COOKIE_MAX: Final = 16

TCP_HEADER_LEN: Final = 20
MAX_WSCALE: Final = 14  # RFC 7323 2.3


@dataclass(slots=True)
class TcpOptions:
    """Parsed TCP options. ``None`` / empty means absent."""

    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    ts_val: int | None = None
    ts_ecr: int = 0
    # TCP Fast Open (RFC 7413): None when absent, b"" a cookie request, else the cookie;
    # fastopen_exp: sent as the experimental 0xF989 option (kind 254) instead of kind 34.
    fastopen: bytes | None = None
    fastopen_exp: bool = False

    # Written out, not generated: mypyc compiles this __init__ (0.07 µs) where the one
    # @dataclass makes at import time is interpreted (0.5 µs); the fields above stay the
    # one list (tests/unit/test_compiled.py holds the two equal), @dataclass gives == and repr.
    def __init__(self, mss: int | None = None, wscale: int | None = None,
                 sack_permitted: bool = False, sack_blocks: tuple[tuple[int, int], ...] = (),
                 ts_val: int | None = None, ts_ecr: int = 0, fastopen: bytes | None = None,
                 fastopen_exp: bool = False) -> None:
        self.mss = mss
        self.wscale = wscale
        self.sack_permitted = sack_permitted
        self.sack_blocks = sack_blocks
        self.ts_val = ts_val
        self.ts_ecr = ts_ecr
        self.fastopen = fastopen
        self.fastopen_exp = fastopen_exp


@dataclass(slots=True)
class TcpSegment:
    """One TCP segment as the engine sees it; ``payload`` may be up to 64 KB (GSO)."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    options: TcpOptions = field(default_factory=TcpOptions)
    payload: bytes | memoryview = b""
    urg_ptr: int = 0
    # Outbound: when non-zero and smaller than len(payload), the link segments the payload
    # into gso_size pieces (virtio-net GSO); 0 means send as one segment. Inbound: the
    # segment size of a GRO packet (the packetdrill runner's --mss makes them), else 0.
    gso_size: int = 0
    # The IP header's ECN field (RFC 3168 5): 0 Not-ECT, 2 ECT(0), 1 ECT(1), 3 CE; what
    # arrived (inbound) or what to send (outbound).
    ecn: int = 0
    # Outbound: the earliest departure time TCP stamped (skb->tstamp, tcp/pacing.py), in
    # seconds of the engine's clock; a qdisc that honours it (fq) holds the segment until
    # then. 0.0: none (segments of no socket).
    tstamp: float = 0.0

    def __init__(self, src_port: int, dst_port: int, seq: int, ack: int, flags: int,
                 window: int, options: TcpOptions | None = None,
                 payload: bytes | memoryview = b"", urg_ptr: int = 0, gso_size: int = 0,
                 ecn: int = 0, tstamp: float = 0.0) -> None:  # written out as TcpOptions' is

        self.src_port = src_port
        self.dst_port = dst_port
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.options = TcpOptions() if options is None else options
        self.payload = payload
        self.urg_ptr = urg_ptr
        self.gso_size = gso_size
        self.ecn = ecn
        self.tstamp = tstamp

    @property
    def pcount(self) -> int:
        """Segments on the wire once a GSO super-packet is cut (Linux tcp_skb_pcount)."""
        return -(-len(self.payload) // self.gso_size) if self.gso_size else 1

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload bytes plus one for SYN and one for FIN (RFC 9293 3.4)."""
        return len(self.payload) + (self.flags & SYN) // SYN + (self.flags & FIN)


def gso_segments(seg: TcpSegment, size: int) -> list[TcpSegment]:
    """``seg`` cut into wire segments of ``size`` payload bytes, as Linux's tcp_gso_segment
    cuts a TSO packet: PSH and FIN only on the last piece, CWR only on the first, every
    piece with the same header and options. A segment that fits is returned as it is."""
    payload = seg.payload
    if size <= 0 or len(payload) <= size:
        return [seg]
    view = memoryview(payload)
    count = -(-len(payload) // size)
    out = []
    for i in range(count):
        flags = seg.flags
        if i < count - 1:
            flags &= ~(PSH | FIN)
        if i:
            flags &= ~CWR
        out.append(TcpSegment(seg.src_port, seg.dst_port, (seg.seq + i * size) & 0xFFFFFFFF,
                              seg.ack, flags, seg.window, seg.options,
                              view[i * size:(i + 1) * size], seg.urg_ptr, ecn=seg.ecn,
                              tstamp=seg.tstamp))
    return out


def flags_text(flags: int) -> str:
    """Flags in tcpdump/packetdrill spelling: ``S.`` for SYN-ACK, ``.`` for a bare ACK."""
    out = "".join(ch for bit, ch in ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"),
                                     (URG, "U"), (ECE, "E"), (CWR, "W")) if flags & bit)
    if flags & ACK:
        out += "."
    return out or "-"


# --- codec -----------------------------------------------------------------------------

ChecksumMode = Literal["full", "partial", "none"]

PROTO_TCP: Final = 6

_HDR: Final = struct.Struct("!HHIIBBHHH")
_U16: Final = struct.Struct("!H")
_MSS_OPT: Final = struct.Struct("!BBH")
_TS_OPT: Final = struct.Struct("!4sII")
_SACK_BLOCK: Final = struct.Struct("!II")

_NOP_NOP_TS: Final = bytes((OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10))
_SACKOK_TS: Final = bytes((OPT_SACK_PERMITTED, 2, OPT_TIMESTAMP, 10))
_NOP_NOP_SACKOK: Final = bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2))
_NOP_WSCALE: Final = bytes((OPT_NOP, OPT_WSCALE, 3))
_NOP_NOP: Final = bytes((OPT_NOP, OPT_NOP))


def parse_tcp(buf: BytesLike, src: bytes, dst: bytes, *,
              verify_checksum: bool) -> TcpSegment:
    """Parse a TCP header and its payload; ``buf`` ends where the IP datagram ends.

    ``payload`` is a memoryview of ``buf`` (no copy). Raises :class:`ParseError`.
    """
    hlen = _header_length(buf)
    if verify_checksum:
        _verify_checksum(buf, src, dst)
    view = memoryview(buf)
    head = bytes(view[:hlen])
    options = _parse_options(head[TCP_HEADER_LEN:]) if hlen > TCP_HEADER_LEN \
        else TcpOptions()
    return TcpSegment(u16(head, 0), u16(head, 2), u32(head, 4), u32(head, 8), head[13],
                      u16(head, 14), options, view[hlen:], u16(head, 18))


def _header_length(buf: BytesLike) -> int:
    """Header length from the data offset: RFC 9293 3.1, at least 5 words, inside ``buf``."""
    if len(buf) < TCP_HEADER_LEN:
        raise ParseError("tcp_short", f"{len(buf)} bytes")
    hlen = (buf[12] >> 4) * 4
    if hlen < TCP_HEADER_LEN or hlen > len(buf):
        raise ParseError("tcp_bad_doff", f"header {hlen} bytes of {len(buf)}")
    return hlen


def _verify_checksum(buf: BytesLike, src: bytes, dst: bytes) -> None:
    """RFC 9293 3.1: the sum over pseudo-header, header and data must be all ones."""
    total = ones_sum(buf, pseudo_header_sum(src, dst, PROTO_TCP, len(buf)))
    if total != 0xFFFF:
        raise ParseError("tcp_bad_checksum", f"sum {total:#06x}")


def _parse_options(raw: bytes) -> TcpOptions:
    """Options as Linux's tcp_parse_options reads them (RFC 9293 3.2)."""
    opts = TcpOptions()
    if len(raw) == 12 and raw[:4] == _NOP_NOP_TS:
        # The layout of nearly every established-state segment (Linux: the
        # tcp_parse_aligned_timestamp fast path).
        opts.ts_val, opts.ts_ecr = u32(raw, 4), u32(raw, 8)
        return opts
    for kind, i, size in _walk_options(raw):
        if size:
            _apply_option(opts, kind, raw, i, size)
    return opts


def _walk_options(raw: bytes) -> Iterator[tuple[int, int, int]]:
    """(kind, offset, length) of each option in wire order; length 0 for NOP and EOL.

    RFC 9293 3.2: EOL ends the list; every other kind but NOP carries a length octet that
    counts the kind and length octets, so it is at least 2 and stays inside the header.
    """
    end = len(raw)
    i = 0
    while i < end:
        kind = raw[i]
        if kind == OPT_EOL:
            yield kind, i, 0
            return
        if kind == OPT_NOP:
            yield kind, i, 0
            i += 1
            continue
        size = raw[i + 1] if i + 1 < end else 0
        if size < 2 or i + size > end:
            raise ParseError("tcp_bad_option", f"kind {kind} length {size} at {i}")
        yield kind, i, size
        i += size


def _apply_option(opts: TcpOptions, kind: int, raw: bytes, i: int, size: int) -> None:
    """Record one option; a known kind with the wrong length is ignored, as Linux does."""
    if kind == OPT_MSS and size == 4:
        opts.mss = u16(raw, i + 2)
    elif kind == OPT_WSCALE and size == 3:
        opts.wscale = min(raw[i + 2], MAX_WSCALE)  # RFC 7323 2.3: clamp to 14
    elif kind == OPT_SACK_PERMITTED and size == 2:
        opts.sack_permitted = True
    elif kind == OPT_SACK and size >= 10 and (size - 2) % 8 == 0:  # RFC 2018 3
        opts.sack_blocks = tuple(_SACK_BLOCK.iter_unpack(raw[i + 2:i + size]))
    elif kind == OPT_TIMESTAMP and size == 10:  # RFC 7323 3.2
        opts.ts_val, opts.ts_ecr = u32(raw, i + 2), u32(raw, i + 6)
    elif kind == OPT_FASTOPEN:
        _apply_fastopen(opts, raw[i + 2:i + size], exp=False)
    elif kind == OPT_EXP and size >= 4 and u16(raw, i + 2) == FASTOPEN_EXP_MAGIC:
        _apply_fastopen(opts, raw[i + 4:i + size], exp=True)


def _apply_fastopen(opts: TcpOptions, cookie: bytes, *, exp: bool) -> None:
    """A Fast Open option (tcp_parse_fastopen_option): empty is a cookie request, 4 to 16
    even bytes a cookie; another length is ignored."""
    if not cookie or (FASTOPEN_COOKIE_MIN <= len(cookie) <= FASTOPEN_COOKIE_MAX
                      and not len(cookie) % 2):
        opts.fastopen = cookie
        opts.fastopen_exp = exp


def option_kinds(buf: BytesLike) -> list[int]:
    """Option kinds of a TCP header in wire order, NOP and EOL included (EOL ends the list)."""
    hlen = _header_length(buf)
    return [kind for kind, _, _ in _walk_options(bytes(buf[TCP_HEADER_LEN:hlen]))]


def encode_options(opts: TcpOptions, flags: int) -> bytes:
    """Options in Linux's layouts (tcp_output.c tcp_options_write); a multiple of 4 bytes.

    SYN and SYN-ACK: ``mss``, then ``sackOK,TS`` / ``nop,nop,TS`` / ``nop,nop,sackOK``, then
    ``nop,wscale``. Other segments: ``nop,nop,TS`` then ``nop,nop,sack ...``. Every piece is
    itself 4-byte aligned, so no padding is ever needed.
    """
    if flags & SYN:
        return _encode_syn_options(opts)
    if opts.ts_val is None:
        return _encode_sack(opts.sack_blocks, 4) if opts.sack_blocks else b""
    ts = _TS_OPT.pack(_NOP_NOP_TS, opts.ts_val, opts.ts_ecr)
    if not opts.sack_blocks:
        return ts
    # 40 bytes of option space: 12 for TS leaves room for 3 SACK blocks (RFC 2018 3).
    return ts + _encode_sack(opts.sack_blocks, 3)


def _encode_syn_options(opts: TcpOptions) -> bytes:
    parts: list[bytes] = []
    if opts.mss is not None:
        parts.append(_MSS_OPT.pack(OPT_MSS, 4, opts.mss))
    if opts.ts_val is not None:
        prefix = _SACKOK_TS if opts.sack_permitted else _NOP_NOP_TS
        parts.append(_TS_OPT.pack(prefix, opts.ts_val, opts.ts_ecr))
    elif opts.sack_permitted:
        parts.append(_NOP_NOP_SACKOK)
    if opts.wscale is not None:
        parts.append(_NOP_WSCALE + bytes((opts.wscale,)))
    if opts.fastopen is not None:
        parts.append(encode_fastopen(opts.fastopen, opts.fastopen_exp))
    return b"".join(parts)


def encode_fastopen(cookie: bytes, exp: bool) -> bytes:
    """The Fast Open option last, as tcp_options_write puts it, with two NOPs after it
    when its length is 2 mod 4 (an empty request, an 8-byte cookie)."""
    if exp:
        option = bytes((OPT_EXP, 4 + len(cookie))) + _U16.pack(FASTOPEN_EXP_MAGIC) + cookie
    else:
        option = bytes((OPT_FASTOPEN, 2 + len(cookie))) + cookie
    return option + _NOP_NOP if len(option) & 3 == 2 else option


def _encode_sack(blocks: tuple[tuple[int, int], ...], limit: int) -> bytes:
    used = blocks[:limit]
    head = _NOP_NOP + bytes((OPT_SACK, 2 + 8 * len(used)))
    return head + b"".join(_SACK_BLOCK.pack(left, right) for left, right in used)


def build_tcp(seg: TcpSegment, src: bytes, dst: bytes, *, checksum: ChecksumMode) -> bytes:
    """Header and options of ``seg`` (never the payload, which the IP layer appends).

    ``checksum``: ``"full"`` computes it over pseudo-header, header and ``seg.payload``;
    ``"partial"`` stores the folded pseudo-header sum for the device to finish (virtio-net
    NEEDS_CSUM); ``"none"`` leaves zero.
    """
    opts = encode_options(seg.options, seg.flags)
    hlen = TCP_HEADER_LEN + len(opts)
    doff = hlen << 2  # (hlen / 4) in the high nibble
    if checksum == "full":
        csum = _full_checksum(seg, src, dst, hlen, doff, opts)
    elif checksum == "partial":
        csum = pseudo_header_sum(src, dst, PROTO_TCP, hlen + len(seg.payload))
    elif checksum == "none":
        csum = 0
    else:
        raise ValueError(f"unknown checksum mode {checksum!r}")
    return _HDR.pack(seg.src_port, seg.dst_port, seg.seq, seg.ack, doff, seg.flags,
                     seg.window, csum, seg.urg_ptr) + opts


def _full_checksum(seg: TcpSegment, src: bytes, dst: bytes, hlen: int, doff: int,
                   opts: bytes) -> int:
    """RFC 9293 3.1 checksum, summing the header fields as integers instead of packing them.

    32-bit fields are congruent to the sum of their two 16-bit words modulo 0xFFFF, and the
    options are a whole number of words, so everything adds up before one fold.
    """
    header = (seg.src_port + seg.dst_port + seg.seq + seg.ack + (doff << 8 | seg.flags)
              + seg.window + seg.urg_ptr + int.from_bytes(opts, "big"))
    pseudo = pseudo_header_sum(src, dst, PROTO_TCP, hlen + len(seg.payload))
    return _checksum(seg.payload, pseudo + header)
