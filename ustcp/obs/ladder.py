"""Ladder (sequence) diagrams of TCP connections, from a pcap file or a list of segments.

Each connection is drawn as two columns, the client (whoever sent the first SYN) on the left
and the server on the right, with one arrow per segment::

    0.000  SYN-SENT     ──SYN seq=0 win=64240 <mss 1460,sackOK,TS,nop,wscale 7>──>
    0.001  ESTABLISHED  <──SYN,ACK seq=0 ack=1 win=65160 <mss 1460,...>──────────  SYN-RECV

Sequence and acknowledgement numbers are relative to each side's initial sequence number
(as tcpdump prints them without ``-S``); the window is the raw header field (unscaled). A
side's state is written next to its column when it changes; it is inferred from the flags
the way the handshake and close diagrams are drawn: a side enters SYN-SENT when it sends a
SYN, SYN-RECV when it sends a SYN-ACK, ESTABLISHED when its SYN is acknowledged, FIN-WAIT-1
or LAST-ACK when it sends a FIN, CLOSE-WAIT, CLOSING or TIME-WAIT when it receives one,
FIN-WAIT-2 or CLOSED when its FIN is acknowledged, and CLOSED on a RST. A capture only sees
the wire: a segment the receiver dropped still moves the inferred state (a retransmitted
SYN-ACK puts the server back in SYN-RECV). Retransmissions, duplicate ACKs and probes are
marked.

:func:`read_pcap` decodes a capture with dpkt (LINKTYPE_RAW as ``ustcp serve --pcap`` writes
it, Ethernet, Linux cooked); :func:`conversations` groups segments into connections (a new
SYN with a new sequence number on the same 4-tuple starts a new one); :func:`render_text`
and :func:`render_svg` draw them.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

import dpkt

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
_FLAG_NAMES = ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"),
               (URG, "URG"), (ECE, "ECE"), (CWR, "CWR"))

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
DLT_RAW_VALUES = (12, 14)  # what some systems write for raw IP instead of 101

CLOSED, LISTEN = "CLOSED", "LISTEN"
SYN_SENT, SYN_RECV, ESTABLISHED = "SYN-SENT", "SYN-RECV", "ESTABLISHED"
FIN_WAIT_1, FIN_WAIT_2, CLOSING, TIME_WAIT = "FIN-WAIT-1", "FIN-WAIT-2", "CLOSING", "TIME-WAIT"
CLOSE_WAIT, LAST_ACK = "CLOSE-WAIT", "LAST-ACK"

STATE_WIDTH = len(ESTABLISHED)
TIME_WIDTH = 8
MOD = 1 << 32


def _endpoint(host: str, port: int) -> str:
    """``10.77.0.2:80`` or ``[fd77::2]:80``, as ss prints them."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment as seen on the wire; ``t`` in seconds, ``options`` the raw bytes."""

    t: float
    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    seq: int
    ack: int
    win: int
    length: int
    options: bytes = b""

    @property
    def source(self) -> str:
        return _endpoint(self.src, self.sport)

    @property
    def destination(self) -> str:
        return _endpoint(self.dst, self.dport)


# ---------------------------------------------------------------------------- decoding


def _ip_packet(linktype: int, frame: bytes) -> bytes | None:
    if linktype == LINKTYPE_RAW or linktype in DLT_RAW_VALUES:
        return frame
    if linktype == LINKTYPE_ETHERNET:
        eth = dpkt.ethernet.Ethernet(frame)
        return bytes(eth.data) if isinstance(eth.data, dpkt.ip.IP | dpkt.ip6.IP6) else None
    if linktype == LINKTYPE_LINUX_SLL:
        return frame[16:]
    if linktype == LINKTYPE_LINUX_SLL2:
        return frame[20:]
    raise ValueError(f"unsupported pcap link type {linktype}")


def decode_segment(t: float, packet: bytes) -> Segment | None:
    """The TCP segment in an IPv4 or IPv6 packet, or None (other protocols, fragments,
    truncated headers). The payload length comes from the IP header, so a capture with a
    short snap length still counts every byte."""
    if not packet:
        return None
    try:
        if packet[0] >> 4 == 4:
            ip4 = dpkt.ip.IP(packet)
            if ip4.p != dpkt.ip.IP_PROTO_TCP or ip4.mf or ip4.offset:
                return None
            src, dst = socket.inet_ntoa(ip4.src), socket.inet_ntoa(ip4.dst)
            tcp_len, tcp = ip4.len - ip4.hl * 4, ip4.data
        elif packet[0] >> 4 == 6:
            ip6 = dpkt.ip6.IP6(packet)
            if ip6.nxt != dpkt.ip.IP_PROTO_TCP:
                return None
            src = socket.inet_ntop(socket.AF_INET6, ip6.src)
            dst = socket.inet_ntop(socket.AF_INET6, ip6.dst)
            tcp_len, tcp = ip6.plen, ip6.data
        else:
            return None
    except (dpkt.UnpackError, struct.error):
        return None
    if not isinstance(tcp, dpkt.tcp.TCP):
        return None
    return Segment(t, src, tcp.sport, dst, tcp.dport, tcp.flags, tcp.seq, tcp.ack, tcp.win,
                   max(0, tcp_len - tcp.off * 4), bytes(tcp.opts))


def read_pcap(path: str) -> list[Segment]:
    """Every TCP segment in the capture file at ``path``, in file order."""
    segments = []
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        linktype = reader.datalink()
        for t, frame in reader:
            packet = _ip_packet(linktype, frame)
            seg = decode_segment(float(t), packet) if packet is not None else None
            if seg is not None:
                segments.append(seg)
    return segments


# ---------------------------------------------------------------------------- grouping


@dataclass
class Conversation:
    """The segments of one connection; ``client`` sent the first SYN (or the first
    segment, for a capture that starts mid-connection)."""

    client: str
    server: str
    segments: list[Segment] = field(default_factory=list)


def conversations(segments: Iterable[Segment]) -> list[Conversation]:
    """Group segments by connection, in order of first appearance."""
    result: list[Conversation] = []
    current: dict[frozenset[str], tuple[Conversation, int | None]] = {}
    for seg in segments:
        key = frozenset((seg.source, seg.destination))
        is_syn = seg.flags & (SYN | ACK) == SYN
        found = current.get(key)
        if found is not None:
            conv, client_isn = found
            if is_syn and (seg.source != conv.client or client_isn not in (None, seg.seq)):
                found = None  # a new connection on the same 4-tuple (TIME_WAIT reuse)
            elif is_syn and client_isn is None:
                current[key] = (conv, seg.seq)
        if found is None:
            conv = Conversation(seg.source, seg.destination)
            result.append(conv)
            current[key] = (conv, seg.seq if is_syn else None)
        conv.segments.append(seg)
    return result


# ---------------------------------------------------------------------------- inference


@dataclass
class _Side:
    state: str
    isn: int
    fin_end: int | None = None  # sequence number just after our FIN
    max_end: int | None = None  # highest sequence end sent so far
    last_ack: int | None = None
    last_win: int | None = None
    dup_acks: int = 0


@dataclass(frozen=True)
class Arrow:
    """One segment of a ladder: which way it goes, its label, and the states each side
    entered with it (None: unchanged)."""

    t: float
    rightward: bool
    label: str
    client_state: str | None
    server_state: str | None


@dataclass(frozen=True)
class Ladder:
    client: str
    server: str
    initial: tuple[str, str]
    arrows: list[Arrow]


def _after(a: int, b: int) -> bool:
    return a != b and (a - b) % MOD < MOD // 2


def _flags(flags: int) -> str:
    return ",".join(name for bit, name in _FLAG_NAMES if flags & bit) or "none"


def format_options(raw: bytes, peer_isn: int, *, ts_values: bool = False) -> str:
    """The options as tcpdump lists them (``mss 1460,sackOK,TS,nop,wscale 7``); SACK blocks
    relative to ``peer_isn``; timestamps with their values only if ``ts_values``."""
    parts = []
    try:
        options = dpkt.tcp.parse_opts(raw)
    except (dpkt.UnpackError, struct.error, IndexError):
        return "bad options"
    for kind, data in options:
        if kind == dpkt.tcp.TCP_OPT_NOP:
            parts.append("nop")
        elif kind == dpkt.tcp.TCP_OPT_EOL:
            parts.append("eol")
        elif kind == dpkt.tcp.TCP_OPT_MSS and len(data) == 2:
            parts.append(f"mss {struct.unpack('!H', data)[0]}")
        elif kind == dpkt.tcp.TCP_OPT_WSCALE and len(data) == 1:
            parts.append(f"wscale {data[0]}")
        elif kind == dpkt.tcp.TCP_OPT_SACKOK:
            parts.append("sackOK")
        elif kind == dpkt.tcp.TCP_OPT_TIMESTAMP and len(data) == 8:
            val, ecr = struct.unpack("!II", data)
            parts.append(f"TS val {val} ecr {ecr}" if ts_values else "TS")
        elif kind == dpkt.tcp.TCP_OPT_SACK and len(data) % 8 == 0:
            edges = struct.unpack(f"!{len(data) // 4}I", data)
            blocks = [f"{(edges[i] - peer_isn) % MOD}:{(edges[i + 1] - peer_isn) % MOD}"
                      for i in range(0, len(edges), 2)]
            parts.append("sack " + " ".join(blocks))
        else:
            parts.append(f"opt-{kind}")
    return ",".join(parts)


DUP_ACK = " [dup ack]"


def _mark(seg: Segment, me: _Side, end: int) -> str:
    """Why this segment is special: a retransmission, a probe (keepalive or zero window:
    no data, one below the highest sequence sent), a duplicate ACK; "" if it is not."""
    if seg.flags & RST:
        return ""
    if seg.length or seg.flags & (SYN | FIN):
        if me.max_end is not None and not _after(end, me.max_end):
            return " [retransmission]"
        return ""
    if me.max_end is not None and (me.max_end - seg.seq) % MOD == 1:
        return " [probe]"
    if seg.flags & ACK and seg.ack == me.last_ack and seg.win == me.last_win:
        return DUP_ACK
    return ""


def _advance(seg: Segment, me: _Side, peer: _Side) -> None:
    """Move both sides' states for ``seg`` (sent by ``me``)."""
    flags = seg.flags
    if flags & RST:
        me.state = peer.state = CLOSED
        return
    if flags & SYN:
        if flags & ACK:
            me.state = SYN_RECV
            if peer.state in (SYN_SENT, SYN_RECV):
                peer.state = ESTABLISHED
        else:
            me.state = SYN_SENT
        return
    if flags & ACK:
        if peer.state == SYN_RECV:
            peer.state = ESTABLISHED
        if peer.fin_end is not None and not _after(peer.fin_end, seg.ack):
            peer.state = {FIN_WAIT_1: FIN_WAIT_2, CLOSING: TIME_WAIT,
                          LAST_ACK: CLOSED}.get(peer.state, peer.state)
    if flags & FIN:
        me.fin_end = (seg.seq + seg.length + 1) % MOD
        me.state = {ESTABLISHED: FIN_WAIT_1, SYN_RECV: FIN_WAIT_1,
                    CLOSE_WAIT: LAST_ACK}.get(me.state, me.state)
        peer.state = {ESTABLISHED: CLOSE_WAIT, FIN_WAIT_1: CLOSING,
                      FIN_WAIT_2: TIME_WAIT}.get(peer.state, peer.state)


def _isn(conv: Conversation, endpoint: str) -> int:
    """The side's initial sequence number: its SYN's, else its first sequence number (as
    tcpdump), else the first ACK the other side sent it."""
    for seg in conv.segments:
        if seg.source == endpoint and seg.flags & SYN:
            return seg.seq
    for seg in conv.segments:
        if seg.source == endpoint:
            return seg.seq
    return next((seg.ack for seg in conv.segments if seg.flags & ACK), 0)


def ladder(conv: Conversation, *, ts_values: bool = False, absolute: bool = False) -> Ladder:
    """The arrows of one connection, with inferred states; sequence numbers relative to
    each side's ISN, or as sent with ``absolute`` (tcpdump -S)."""
    first = conv.segments[0]
    handshake = first.flags & (SYN | ACK) == SYN
    client = _Side(CLOSED if handshake else ESTABLISHED,
                   0 if absolute else _isn(conv, conv.client))
    server = _Side(LISTEN if handshake else ESTABLISHED,
                   0 if absolute else _isn(conv, conv.server))
    initial = (client.state, server.state)
    arrows = []
    for seg in conv.segments:
        rightward = seg.source == conv.client
        me, peer = (client, server) if rightward else (server, client)
        end = (seg.seq + seg.length + (1 if seg.flags & SYN else 0)
               + (1 if seg.flags & FIN else 0)) % MOD
        label = f"{_flags(seg.flags)} seq={(seg.seq - me.isn) % MOD}"
        if seg.flags & ACK:
            label += f" ack={(seg.ack - peer.isn) % MOD}"
        label += f" win={seg.win}"
        if seg.length:
            label += f" len={seg.length}"
        options = format_options(seg.options, peer.isn, ts_values=ts_values)
        if options:
            label += f" <{options}>"
        mark = _mark(seg, me, end)
        me.dup_acks = me.dup_acks + 1 if mark == DUP_ACK else 0
        label += f" [dup ack #{me.dup_acks}]" if mark == DUP_ACK else mark
        if me.max_end is None or _after(end, me.max_end):
            me.max_end = end
        if seg.flags & ACK:
            me.last_ack, me.last_win = seg.ack, seg.win
        before = (client.state, server.state)
        _advance(seg, me, peer)
        arrows.append(Arrow(seg.t - first.t, rightward, label,
                            client.state if client.state != before[0] else None,
                            server.state if server.state != before[1] else None))
    return Ladder(conv.client, conv.server, initial, arrows)


def window(lad: Ladder, start: int, stop: int) -> Ladder:
    """Arrows ``start`` to ``stop`` (exclusive) of a ladder, with the states they found as
    the initial ones."""
    states = lad.initial
    for arrow in lad.arrows[:start]:
        states = (arrow.client_state or states[0], arrow.server_state or states[1])
    return Ladder(lad.client, lad.server, states, lad.arrows[start:stop])


# ---------------------------------------------------------------------------- text


def _arrow_text(arrow: Arrow, width: int) -> str:
    fill = "─" * (width - len(arrow.label) - 3)
    return f"──{arrow.label}{fill}>" if arrow.rightward else f"<──{arrow.label}{fill}"


def _elide(arrows: list[Arrow], max_arrows: int | None) -> Iterator[Arrow | int]:
    """The arrows, with the middle ones replaced by their count beyond ``max_arrows``."""
    if max_arrows is None or len(arrows) <= max_arrows:
        yield from arrows
        return
    head = max_arrows - max_arrows // 2
    tail = max_arrows // 2
    yield from arrows[:head]
    yield len(arrows) - head - tail
    yield from arrows[len(arrows) - tail:]


def render_text(lad: Ladder, *, max_arrows: int | None = None) -> str:
    """The ladder as text: a header, the initial states, one line per segment (the time
    since the first segment, the client's new state, the arrow, the server's new state).
    With ``max_arrows``, the middle of a long connection is summarized in one line."""
    width = max((len(a.label) for a in lad.arrows), default=0) + 5
    gap = " " * (TIME_WIDTH + 2)
    lines = [
        f"{'time':>{TIME_WIDTH}}  "
        f"{'client ' + lad.client:<{STATE_WIDTH + 2 + width + 2}}server {lad.server}",
        f"{gap}{lad.initial[0]:<{STATE_WIDTH}}  {'':<{width}}  {lad.initial[1]}",
    ]
    states = list(lad.initial)
    show_all = False
    for item in _elide(lad.arrows, max_arrows):
        if isinstance(item, int):
            lines.append(f"{gap}{'':<{STATE_WIDTH}}  {f'... {item} more segments ...':^{width}}")
            show_all = True
            continue
        client_state = item.client_state or (states[0] if show_all else "")
        server_state = item.server_state or (states[1] if show_all else "")
        states = [item.client_state or states[0], item.server_state or states[1]]
        show_all = False
        lines.append(f"{item.t:>{TIME_WIDTH}.3f}  {client_state:<{STATE_WIDTH}}  "
                     f"{_arrow_text(item, width)}  {server_state}".rstrip())
    return "\n".join(lines) + "\n"


def _replay(lad: Ladder, max_arrows: int | None) -> Iterator[tuple[Arrow | int, list[str]]]:
    states = list(lad.initial)
    for item in _elide(lad.arrows, max_arrows):
        if isinstance(item, Arrow):
            states = [item.client_state or states[0], item.server_state or states[1]]
        yield item, states


# ---------------------------------------------------------------------------- SVG

CHAR_W = 7.2  # px per character of the 12 px monospace font
ROW_H = 30
SLANT = 12
MARGIN = 16
STATE_PX = 110


def render_svg(ladders: list[Ladder], *, max_arrows: int | None = None) -> str:
    """The ladders as one SVG document (stacked, each with its header); every segment is a
    ``<line class="arrow">`` with an arrowhead, its label above it."""
    label_len = max((len(a.label) for lad in ladders for a in lad.arrows), default=20)
    span = max(360.0, label_len * CHAR_W + 40)
    left = MARGIN + 60 + STATE_PX
    right = left + span
    width = right + STATE_PX + MARGIN
    body: list[str] = []
    y = MARGIN

    def text(x: float, y: float, s: str, anchor: str = "start", cls: str = "") -> None:
        body.append(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"'
                    f'{" class=" + quoteattr(cls) if cls else ""}>{escape(s)}</text>')

    for lad in ladders:
        y += 14
        text(left, y, f"client {lad.client}", "middle", "head")
        text(right, y, f"server {lad.server}", "middle", "head")
        y += 18
        text(left - 8, y, lad.initial[0], "end", "state")
        text(right + 8, y, lad.initial[1], "start", "state")
        top = y - 12
        y += 10
        for item, states in _replay(lad, max_arrows):
            y += ROW_H
            if isinstance(item, int):
                text((left + right) / 2, y, f"... {item} more segments ...", "middle", "note")
                continue
            x1, x2 = (left, right) if item.rightward else (right, left)
            body.append(f'<line class="arrow" x1="{x1:.1f}" y1="{y - SLANT:.1f}" '
                        f'x2="{x2:.1f}" y2="{y:.1f}" marker-end="url(#head)"/>')
            text((left + right) / 2, y - SLANT - 4, item.label, "middle")
            text(MARGIN, y, f"{item.t:.3f}", "start", "time")
            if item.client_state:
                text(left - 8, y, states[0], "end", "state")
            if item.server_state:
                text(right + 8, y, states[1], "start", "state")
        y += 14
        for x in (left, right):
            body.append(f'<line class="life" x1="{x:.1f}" y1="{top:.1f}" '
                        f'x2="{x:.1f}" y2="{y:.1f}"/>')
        y += 20
    height = y + MARGIN
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="monospace" font-size="12">',
        "<defs><marker id=\"head\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" "
        "markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\">"
        "<path d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>",
        "<style>.arrow{stroke:#1f4e99;stroke-width:1.4}.life{stroke:#999;"
        "stroke-dasharray:4 3}.state{fill:#a33;font-weight:bold}.time{fill:#777}"
        ".head{font-weight:bold}.note{fill:#777}</style>",
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>',
        *body,
        "</svg>",
        "",
    ])


# ---------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``ustcp ladder``."""
    parser.add_argument("pcap", metavar="FILE.pcap", help="a capture (ustcp serve --pcap)")
    parser.add_argument("--conn", type=int, metavar="N",
                        help="only the Nth connection (1 = the first seen; default all)")
    parser.add_argument("--svg", metavar="OUT.svg", help="also write the diagram as SVG")
    parser.add_argument("--ts", action="store_true", help="show timestamp values")
    parser.add_argument("-S", "--absolute", action="store_true",
                        help="absolute sequence numbers (as tcpdump -S)")
    parser.add_argument("--max", type=int, metavar="N", dest="max_arrows",
                        help="draw at most N segments per connection (the middle is elided)")


def main(args: argparse.Namespace) -> int:
    """``ustcp ladder``: print the diagrams of a capture (and write the SVG)."""
    try:
        convs = conversations(read_pcap(args.pcap))
    except (OSError, ValueError) as exc:
        print(f"ustcp ladder: {args.pcap}: {exc}", file=sys.stderr)
        return 1
    numbered = list(enumerate(convs, 1))
    if args.conn is not None:
        numbered = [(n, c) for n, c in numbered if n == args.conn]
        if not numbered:
            print(f"ustcp ladder: no connection {args.conn} ({len(convs)} in {args.pcap})",
                  file=sys.stderr)
            return 1
    ladders = [ladder(conv, ts_values=args.ts, absolute=args.absolute) for _, conv in numbered]
    for (n, conv), lad in zip(numbered, ladders, strict=True):
        print(f"connection {n}: {conv.client} > {conv.server}, {len(conv.segments)} segments")
        sys.stdout.write(render_text(lad, max_arrows=args.max_arrows))
        print()
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(render_svg(ladders, max_arrows=args.max_arrows))
    return 0
