"""TCP header and options (RFC 9293 section 3.1, RFC 7323, RFC 2018).

The engine works on :class:`TcpSegment`; this module turns one into bytes and back.
Option layouts on the wire follow Linux (tcp_output.c tcp_options_write) so that
packetdrill scripts written against Linux match byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Flag bits (RFC 9293 3.1, RFC 3168 for ECE/CWR).
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

# Option kinds (IANA).
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

TCP_HEADER_LEN = 20
MAX_WSCALE = 14  # RFC 7323 2.3


@dataclass(slots=True)
class TcpOptions:
    """Parsed TCP options. ``None`` / empty means absent."""

    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    ts_val: int | None = None
    ts_ecr: int = 0


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
    # Outbound only: when non-zero and smaller than len(payload), the link segments the
    # payload into gso_size pieces (virtio-net GSO); 0 means send as one segment.
    gso_size: int = 0

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload bytes plus one for SYN and one for FIN (RFC 9293 3.4)."""
        return len(self.payload) + (self.flags & SYN) // SYN + (self.flags & FIN)


def flags_text(flags: int) -> str:
    """Flags in tcpdump/packetdrill spelling: ``S.`` for SYN-ACK, ``.`` for a bare ACK."""
    out = "".join(ch for bit, ch in ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"),
                                     (URG, "U"), (ECE, "E"), (CWR, "W")) if flags & bit)
    if flags & ACK:
        out += "."
    return out or "-"
