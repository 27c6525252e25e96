"""Script packets <-> live segments: flags, option bytes, sequence and timestamp mapping.

Sequence numbers follow google/packetdrill (socket.h): on SYNs they are absolute, otherwise
relative to the ISN of the side that sends them. packetdrill chooses the remote ISN (the
script's SYN seq, used as is), so inbound seq needs no mapping except the remote ISN for
non-SYNs; inbound ACKs and SACK blocks are shifted by the stack's ISN, which is learned from
its first SYN or SYN-ACK. An inbound TS ecr is mapped to the live TS val of the outbound
packet whose scripted TS val it names (run_packet.c map_inbound_packet).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..wire.tcp import (
    ACK,
    CWR,
    ECE,
    FASTOPEN_EXP_MAGIC,
    FIN,
    OPT_EOL,
    OPT_EXP,
    OPT_FASTOPEN,
    OPT_MSS,
    OPT_NOP,
    OPT_SACK,
    OPT_SACK_PERMITTED,
    OPT_TIMESTAMP,
    OPT_WSCALE,
    PSH,
    RST,
    SYN,
    URG,
    TcpSegment,
    encode_options,
    parse_tcp,
)
from .ast import PacketSpec, TcpOptionSpec

MOD32 = 1 << 32
FLAG_BITS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, ".": ACK, "U": URG, "E": ECE, "W": CWR}
_HEADER = struct.Struct("!HHIIBBHHH")


class MappingError(ValueError):
    """A script value that cannot be translated to a live one."""


def flag_bits(letters: str) -> int:
    bits = 0
    for letter in letters:
        bits |= FLAG_BITS[letter]
    return bits


def flag_letters(bits: int) -> str:
    """packetdrill's spelling: ``S.``, ``FP.``, ``.``; ``-`` for no flags."""
    out = "".join(letter for letter in "FSRPUEW" if bits & FLAG_BITS[letter])
    if bits & ACK:
        out += "."
    return out or "-"


# ------------------------------------------------------------------ options


@dataclass(frozen=True, slots=True)
class WireOption:
    """One option as it sits on the wire: kind and the bytes after kind and length."""

    kind: int
    data: bytes = b""


def encode_script_options(specs: tuple[TcpOptionSpec, ...], sack_offset: int = 0,
                          ecr: int | None = None) -> bytes:
    """The option bytes a script list stands for, SACK blocks shifted by ``sack_offset``
    and the TS ecr replaced by ``ecr`` when given; padded with EOL to 4 bytes."""
    out = bytearray()
    for spec in specs:
        if spec.name == "nop":
            out.append(OPT_NOP)
        elif spec.name == "eol":
            out.append(OPT_EOL)
        elif spec.name == "mss":
            out += struct.pack("!BBH", OPT_MSS, 4, spec.values[0])
        elif spec.name == "wscale":
            out += bytes((OPT_WSCALE, 3, spec.values[0]))
        elif spec.name == "sackOK":
            out += bytes((OPT_SACK_PERMITTED, 2))
        elif spec.name == "sack":
            out += bytes((OPT_SACK, 2 + 4 * len(spec.values)))
            for edge in spec.values:
                out += struct.pack("!I", (edge + sack_offset) % MOD32)
        elif spec.name == "TS":
            val, script_ecr = spec.values
            out += struct.pack("!BBII", OPT_TIMESTAMP, 10, val % MOD32,
                               (script_ecr if ecr is None else ecr) % MOD32)
        elif spec.name in ("FO", "FOEXP"):
            try:
                cookie = bytes.fromhex(spec.blob)
            except ValueError as exc:
                raise MappingError(f"Fast Open cookie {spec.blob!r} is not hex") from exc
            if spec.name == "FO":
                out += bytes((OPT_FASTOPEN, 2 + len(cookie))) + cookie
            else:
                out += bytes((OPT_EXP, 4 + len(cookie))) + \
                    struct.pack("!H", FASTOPEN_EXP_MAGIC) + cookie
        else:
            raise MappingError(f"TCP option {spec.name} is not supported")
    while len(out) % 4:
        out.append(OPT_EOL)
    return bytes(out)


def wire_options(raw: bytes) -> list[WireOption]:
    """Walk option bytes in order, NOP and EOL included."""
    options: list[WireOption] = []
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind in (OPT_NOP, OPT_EOL):
            options.append(WireOption(kind))
            i += 1
            continue
        size = raw[i + 1] if i + 1 < len(raw) else 0
        if size < 2 or i + size > len(raw):
            raise MappingError(f"malformed option kind {kind} length {size}")
        options.append(WireOption(kind, raw[i + 2:i + size]))
        i += size
    return options


def script_wire_options(specs: tuple[TcpOptionSpec, ...]) -> list[WireOption]:
    """The script's option list as wire options, without alignment padding."""
    return wire_options(encode_script_options(specs))[:len(specs)]


def render_options(options: list[WireOption]) -> str:
    parts: list[str] = []
    for opt in options:
        if opt.kind == OPT_NOP:
            parts.append("nop")
        elif opt.kind == OPT_EOL:
            parts.append("eol")
        elif opt.kind == OPT_MSS and len(opt.data) == 2:
            parts.append(f"mss {struct.unpack('!H', opt.data)[0]}")
        elif opt.kind == OPT_WSCALE and len(opt.data) == 1:
            parts.append(f"wscale {opt.data[0]}")
        elif opt.kind == OPT_SACK_PERMITTED:
            parts.append("sackOK")
        elif opt.kind == OPT_SACK and len(opt.data) % 8 == 0:
            edges = struct.unpack(f"!{len(opt.data) // 4}I", opt.data)
            blocks = " ".join(f"{edges[i]}:{edges[i + 1]}" for i in range(0, len(edges), 2))
            parts.append(f"sack {blocks}")
        elif opt.kind == OPT_TIMESTAMP and len(opt.data) == 8:
            val, ecr = struct.unpack("!II", opt.data)
            parts.append(f"TS val {val} ecr {ecr}")
        elif opt.kind == OPT_FASTOPEN:
            parts.append(f"FO {opt.data.hex()}".rstrip())
        elif opt.kind == OPT_EXP and opt.data[:2] == struct.pack("!H", FASTOPEN_EXP_MAGIC):
            parts.append(f"FOEXP {opt.data[2:].hex()}".rstrip())
        else:
            parts.append(f"kind {opt.kind} {opt.data.hex()}")
    return "<" + ",".join(parts) + ">"


# ------------------------------------------------------------------ the flow under test


@dataclass(slots=True)
class Flow:
    """The connection the script's packets belong to (packetdrill's socket under test)."""

    local_port: int | None  # None until an active open's SYN shows the port
    remote_port: int
    passive: bool
    remote_isn: int = 0
    script_local_isn: int = 0
    live_local_isn: int = 0
    isn_learned: bool = False
    ts_map: dict[int, int] = field(default_factory=dict)  # script TS val -> live TS val
    first_ts: tuple[int, int] | None = None  # (script, live) TS val of the first TS seen

    def matches(self, seg: TcpSegment, remote_port_of_connect: int) -> bool:
        if self.local_port is None:
            return (not self.passive and seg.flags & (SYN | ACK) == SYN
                    and seg.dst_port == remote_port_of_connect)
        return seg.src_port == self.local_port and seg.dst_port == self.remote_port

    def learn_local_isn(self, script_seq: int, live_seq: int, src_port: int) -> None:
        self.script_local_isn = script_seq
        self.live_local_isn = live_seq
        self.isn_learned = True
        if self.local_port is None:
            self.local_port = src_port

    def local_offset(self, is_syn: bool) -> int:
        """script -> live offset for our sequence space (local_seq_script_to_live_offset)."""
        if is_syn:
            return (self.live_local_isn - self.script_local_isn) % MOD32
        return self.live_local_isn

    def remote_offset(self, is_syn: bool) -> int:
        return 0 if is_syn else self.remote_isn


# packetdrill's IP ECN field notation (parser.y ip_ecn): [noecn], [ect0], [ect1], [ce],
# and [ect01] for "either ECT" on outbound packets.
ECN_CODEPOINTS = {"[noecn]": (0,), "[ect0]": (2,), "[ect1]": (1,), "[ce]": (3,),
                  "[ect01]": (1, 2)}


def script_ecn(spec: PacketSpec) -> tuple[int, ...] | None:
    """The ECN codepoints the packet's ``[...]`` allows; None when it says nothing."""
    return ECN_CODEPOINTS.get(spec.ip_info.replace(" ", "")) if spec.ip_info else None


def inbound_segment(spec: PacketSpec, flow: Flow, ts_ecr_scaled: bool) -> TcpSegment:
    """The live segment for an inbound script packet, through the wire parser."""
    flags = flag_bits(spec.flags)
    is_syn = bool(flags & SYN)
    seq = (spec.start_seq + flow.remote_offset(is_syn)) % MOD32
    ack_offset = flow.local_offset(is_syn)
    ack = spec.ack or 0
    if flags & ACK:
        ack = (ack + ack_offset) % MOD32
    ecr = None
    ts = next((o for o in spec.options or () if o.name == "TS"), None)
    if ts is not None and flags & ACK:
        ecr = _live_ecr(ts.values[1], flow, ts_ecr_scaled)
    raw_options = encode_script_options(spec.options or (), ack_offset, ecr)
    if len(raw_options) > 40:
        raise MappingError("TCP options longer than 40 bytes")
    header = _HEADER.pack(flow.remote_port, flow.local_port or 0, seq, ack,
                          ((20 + len(raw_options)) // 4) << 4, flags, spec.window or 0, 0,
                          spec.urg_ptr) + raw_options
    seg = parse_tcp(header + bytes(spec.payload_len), b"", b"", verify_checksum=False)
    seg.payload = bytes(seg.payload)
    seg.ecn = (script_ecn(spec) or (0,))[0]
    return seg


def _live_ecr(script_ecr: int, flow: Flow, ts_ecr_scaled: bool) -> int:
    live = flow.ts_map.get(script_ecr)
    if live is not None:
        return live
    if ts_ecr_scaled and flow.first_ts is not None:
        return (script_ecr - flow.first_ts[0] + flow.first_ts[1]) % MOD32
    raise MappingError(f"unable to infer live TS ecr for script TS ecr {script_ecr}; "
                       "no matching or preceding outbound TS val")


# ------------------------------------------------------------------ outbound


@dataclass(slots=True)
class Actual:
    """An outbound segment (or aggregate of segments) mapped into script space."""

    flags: int
    seq: int
    ack: int
    window: int
    urg_ptr: int
    payload_len: int
    options: list[WireOption]
    payload_zero: bool = True

    def render(self) -> str:
        return render_packet(">", flag_letters(self.flags), self.seq, self.payload_len,
                             self.ack if self.flags & ACK else None, self.window,
                             render_options(self.options) if self.options else "")


def live_options(seg: TcpSegment) -> list[WireOption]:
    return wire_options(encode_options(seg.options, seg.flags))


def to_script_space(first: TcpSegment, last: TcpSegment, payload_len: int, flow: Flow,
                    payload_zero: bool) -> Actual:
    """Map an aggregate (header of ``last``, seq and CWR of ``first``) to script space
    (run_packet.c tcp_convert_seq_number, packet.c aggregate_packets)."""
    flags = (last.flags & ~CWR) | (first.flags & CWR)
    is_syn = bool(flags & SYN)
    seq = (first.seq - flow.local_offset(is_syn)) % MOD32
    ack = last.ack
    if flags & ACK:
        ack = (ack - flow.remote_offset(is_syn)) % MOD32
    options = []
    for opt in live_options(last):
        if opt.kind == OPT_SACK and len(opt.data) % 4 == 0:
            edges = struct.unpack(f"!{len(opt.data) // 4}I", opt.data)
            shifted = [(e - flow.remote_offset(is_syn)) % MOD32 for e in edges]
            opt = WireOption(OPT_SACK, struct.pack(f"!{len(shifted)}I", *shifted))
        options.append(opt)
    return Actual(flags, seq, ack, last.window, last.urg_ptr, payload_len, options,
                  payload_zero)


def render_packet(direction: str, flags: str, seq: int, payload_len: int, ack: int | None,
                  window: int | None, options: str) -> str:
    text = f"{direction} {flags or '-'} {seq}:{(seq + payload_len) % MOD32}({payload_len})"
    if ack is not None:
        text += f" ack {ack}"
    if window is not None:
        text += f" win {window}"
    if options:
        text += f" {options}"
    return text


def render_spec(spec: PacketSpec) -> str:
    if spec.options is None:
        options = "<...>"
    elif spec.options:
        options = render_options(script_wire_options(spec.options))
    else:
        options = ""
    text = render_packet(spec.direction, spec.flags, spec.start_seq, spec.payload_len,
                         spec.ack, spec.window, options)
    return text.replace(f"{spec.direction} ", f"{spec.direction} {spec.ip_info} ", 1) \
        if spec.ip_info else text
