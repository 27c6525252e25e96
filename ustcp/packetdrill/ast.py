"""The syntax tree of a packetdrill script (google/packetdrill parser.y, syntax.md).

A script is ``--option=value`` lines, an optional init command in backticks, timed events and
an optional cleanup command. Every event carries the line of its time column.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class TimeKind(Enum):
    ABSOLUTE = "absolute"  # 0.1
    RELATIVE = "relative"  # +0.1
    ANY = "any"  # *            (outbound packets only)
    ABSOLUTE_RANGE = "absolute_range"  # 0.3~0.4   (outbound packets only)
    RELATIVE_RANGE = "relative_range"  # +.3~+.4   (outbound packets only)


@dataclass(frozen=True, slots=True)
class EventTime:
    kind: TimeKind
    start: float = 0.0  # seconds
    end: float | None = None  # the end of a range

    @property
    def is_relative(self) -> bool:
        return self.kind in (TimeKind.RELATIVE, TimeKind.RELATIVE_RANGE, TimeKind.ANY)


# ------------------------------------------------------------------ packets


@dataclass(frozen=True, slots=True)
class TcpOptionSpec:
    """One option of a ``<...>`` list: ``name`` is the script spelling (``nop``, ``eol``,
    ``mss``, ``wscale``, ``sackOK``, ``sack``, ``TS``, ``FO``, ``FOEXP``, ``md5``, ``ECN``)."""

    name: str
    values: tuple[int, ...] = ()  # mss/wscale value, TS (val, ecr), sack (l1, r1, l2, r2...),
    # AccECN counters in the order written
    blob: str = ""  # FO cookie, md5 key, or the AccECN field names ("e1b ceb e0b")


@dataclass(frozen=True, slots=True)
class PacketSpec:
    direction: str  # "<" inbound (injected), ">" outbound (expected)
    flags: str  # letters as written, "." for ACK; "" for "-"
    start_seq: int
    end_seq: int
    payload_len: int
    ack: int | None  # None when the script has no "ack N" (the field is then 0)
    window: int | None  # None: not given (outbound: unchecked)
    urg_ptr: int = 0
    options: tuple[TcpOptionSpec, ...] | None = ()  # None for "<...>" (unchecked)
    ip_info: str = ""  # "(tos 0x4)", "[ect0]", ... as written; "" when absent
    ports: tuple[int, int] | None = None  # "src>dst" port info before the flags
    ace: int | None = None  # AccECN ACE field written after the ACK dot ("S.5"), 0..7


@dataclass(frozen=True, slots=True)
class IcmpSpec:
    """``< icmp unreachable frag_needed mtu 1200 [1:1461(1460)]`` (parser.y
    icmp_packet_spec): type and code as packetdrill names them (``type_N``/``code_N`` for
    others), the MTU of a "fragmentation needed" or "packet too big", and the TCP segment the
    error quotes, in the local sequence space (seq 0, no payload when not written)."""

    direction: str
    icmp_type: str
    code: str | None  # None: code 0
    mtu: int | None
    echoed_seq: int = 0
    echoed_len: int = 0
    ip_info: str = ""


# ------------------------------------------------------------------ system call expressions


@dataclass(frozen=True, slots=True)
class IntExpr:
    value: int


@dataclass(frozen=True, slots=True)
class EllipsisExpr:
    """``...``: any value (arguments), not checked (results)."""


@dataclass(frozen=True, slots=True)
class WordExpr:
    name: str  # a symbol such as SOL_SOCKET, NULL, O_NONBLOCK


@dataclass(frozen=True, slots=True)
class StringExpr:
    value: str


@dataclass(frozen=True, slots=True)
class ListExpr:
    """``[a, b]``: an array, or a pointer to an int (``[1]``)."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class BraceExpr:
    """``{..., 40}``: a struct with positional members (an iovec)."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    value: Expr
    arg: Expr | None = None  # msg_iov(1)=[...] carries 1 here


@dataclass(frozen=True, slots=True)
class StructExpr:
    """``{onoff=1, linger=0}``, ``{msg_name(...)=..., msg_iov(1)=[...], msg_flags=0}``."""

    fields: tuple[Field, ...]

    def get(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


@dataclass(frozen=True, slots=True)
class BinaryExpr:
    op: str  # "|"
    lhs: Expr
    rhs: Expr


@dataclass(frozen=True, slots=True)
class CallExpr:
    """``htons(8080)``, ``inet_addr("192.0.2.1")``."""

    name: str
    args: tuple[Expr, ...]


Expr = (IntExpr | EllipsisExpr | WordExpr | StringExpr | ListExpr | BraceExpr | StructExpr
        | BinaryExpr | CallExpr)


@dataclass(frozen=True, slots=True)
class SyscallSpec:
    name: str
    args: tuple[Expr, ...]
    result: Expr
    errno: str | None = None  # EAGAIN, ...
    note: str | None = None  # the "(text)" after the errno
    end_time: float | None = None  # "...0.2": a blocking call that returns at this time


@dataclass(frozen=True, slots=True)
class CommandSpec:
    text: str  # the shell text between backticks


@dataclass(frozen=True, slots=True)
class CodeSpec:
    text: str  # the Python between %{ and }%


Action = PacketSpec | IcmpSpec | SyscallSpec | CommandSpec | CodeSpec


@dataclass(frozen=True, slots=True)
class Event:
    line: int
    time: EventTime
    action: Action


@dataclass(frozen=True, slots=True)
class Command:
    line: int
    spec: CommandSpec


@dataclass(slots=True)
class Script:
    options: list[tuple[str, str | None]]
    init_command: Command | None
    events: list[Event]
    cleanup_command: Command | None
