"""Seeded, reproducible link impairments in the manner of tc-netem.

A spec is a comma-separated list of ``key=value`` settings::

    loss=2%,delay=10ms,jitter=2ms,reorder=2%,duplicate=1%,corrupt=0.5%,rate=100mbit,seed=11

- ``loss``: probability a frame is dropped (``%``);
- ``duplicate``: probability a frame is delivered twice (``%``);
- ``corrupt``: probability one byte of a frame is flipped (``%``): usually after the IP
  header, one time in eight inside it, so the TCP or the IPv4 header checksum must catch it;
- ``delay``: fixed one-way delay (``s``, ``ms``, ``us``);
- ``jitter``: uniform +/- variation of the delay; like netem's, it may reorder frames;
- ``reorder``: probability a frame is held ``reorder_delay`` (default 1ms) longer, so that
  later frames overtake it (``%``);
- ``ce``: probability an ECN-capable packet (ECT(0) or ECT(1)) is marked Congestion
  Experienced instead (``%``), as a router running AQM with ECN would (netem's ``ecn``);
  per wire segment: a GSO super-packet the stack sends, marked whole, is marked with the
  chance that one of the segments it is cut into would be, so that ``ce=3%`` means the
  same with offloads on or off (a 64 KB super-packet of 45 segments: 75 %); a received
  frame counts as one (the link keeps no GSO size for what it reads);
- ``rate``: link rate (``bit``, ``kbit``, ``mbit``, ``gbit``): each frame occupies the link
  for its serialization time and later frames queue behind it;
- ``limit``: frames that may wait in the delay queue; more are dropped (default 1000);
- ``seed``: seed of the random generator (default 1): same seed, same decisions.
- ``pmtu``: a path MTU below the link's, for frames the stack sends (``out:`` only): a
  frame (a GSO super-packet: each segment it would be cut into) longer than it, IPv6 or
  IPv4 with DF, is dropped as a router would drop it and answered towards the stack with
  an ICMP "fragmentation needed" / ICMPv6 "packet too big" carrying the MTU;
  ``pmtu=1280:blackhole`` drops it silently (a black hole, RFC 2923 2.1). Counted as
  ``UstcpImpairPmtuDrops``.

A GSO super-packet is one frame to the impairer: lost, duplicated, corrupted or delayed
whole; ``ce`` and ``pmtu`` judge it by the segments the device cuts it into.

For a wrapped link, a setting applies to both directions unless prefixed with ``in:``
(frames the stack receives) or ``out:`` (frames it sends): ``loss=1%,out:delay=20ms``.
:func:`parse_impairments` splits such a string; :meth:`ImpairmentSpec.parse` reads a spec
for one direction. Malformed specs raise :class:`ValueError` with a one-line reason.

:class:`Impairer` is the pure decision stage (no clock, no I/O): given ``now`` and a frame,
it returns when each copy of the frame should be delivered, and the copy's bytes.
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass
from typing import NamedTuple

from ..mib import Counters, Mib
from ..wire import icmp, icmpv6
from ..wire.ipv4 import PROTO_ICMP, build_ipv4_header
from ..wire.ipv6 import NEXTHDR_ICMP, build_ipv6_header

_PERCENT_KEYS = ("loss", "duplicate", "corrupt", "reorder", "ce")
_TIME_KEYS = ("delay", "jitter", "reorder_delay")
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_PERCENT_RE = re.compile(_NUMBER + r"%")
_TIME_RE = re.compile(_NUMBER + r"(s|ms|us)")
_RATE_RE = re.compile(_NUMBER + r"(bit|kbit|mbit|gbit)")
HEADER_CORRUPT_ODDS = 8  # one corruption in this many lands in the IP header


@dataclass(frozen=True, slots=True)
class ImpairmentSpec:
    """One direction's impairments. Probabilities are fractions, times seconds, rate bit/s
    (0 = unlimited)."""

    loss: float = 0.0
    duplicate: float = 0.0
    corrupt: float = 0.0
    reorder: float = 0.0
    ce: float = 0.0  # probability an ECN-capable frame is marked CE (netem's ecn with loss)
    delay: float = 0.0
    jitter: float = 0.0
    reorder_delay: float = 0.001
    rate: float = 0.0
    limit: int = 1000
    seed: int = 1
    pmtu: int = 0  # 0: none
    pmtu_blackhole: bool = False

    @classmethod
    def parse(cls, text: str) -> ImpairmentSpec:
        """Parse ``key=value,...`` for one direction (no ``in:``/``out:`` prefixes)."""
        values: dict[str, float | int] = {}
        for key, value in _settings(text):
            if key.partition(":")[1]:
                raise ValueError(f"bad impairment {key}={value}: direction prefixes are only "
                                 "allowed where both directions are configured")
            values.update(_parse_setting(key, value))
        return cls(**values)  # type: ignore[arg-type]

    @property
    def is_null(self) -> bool:
        """True when the spec changes nothing (every frame passes at once, unchanged)."""
        return self == ImpairmentSpec(seed=self.seed, limit=self.limit,
                                      reorder_delay=self.reorder_delay)

    @property
    def only_pmtu(self) -> bool:
        """True when the spec does nothing but the path MTU (no impairer needed)."""
        return dataclasses.replace(self, pmtu=0, pmtu_blackhole=False).is_null


def parse_impairments(text: str) -> tuple[ImpairmentSpec | None, ImpairmentSpec | None]:
    """Split a two-direction spec into ``(inbound, outbound)``; a direction with no
    setting of its own or shared is ``None``."""
    shared: dict[str, float | int] = {}
    per_dir: dict[str, dict[str, float | int]] = {"in": {}, "out": {}}
    for key, value in _settings(text):
        direction, colon, name = key.rpartition(":")
        if colon and direction not in per_dir:
            raise ValueError(f"bad impairment {key}={value}: prefix must be 'in:' or 'out:'")
        if name == "pmtu" and direction == "in":
            raise ValueError(f"bad impairment {key}={value}: pmtu applies to the frames the "
                             "stack sends (out:)")
        (per_dir[direction] if colon else shared).update(_parse_setting(name, value))
    for name in ("pmtu", "pmtu_blackhole"):  # outbound only, wherever it was written
        if name in shared:
            per_dir["out"].setdefault(name, shared.pop(name))
    result: list[ImpairmentSpec | None] = []
    for direction in ("in", "out"):
        merged = {**shared, **per_dir[direction]}
        keys = set(merged) - {"seed", "limit"}
        result.append(ImpairmentSpec(**merged) if keys else None)  # type: ignore[arg-type]
    return result[0], result[1]


def _settings(text: str) -> list[tuple[str, str]]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip():
        raise ValueError("empty impairment spec")
    settings = []
    for item in items:
        key, eq, value = item.partition("=")
        key, value = key.strip().lower(), value.strip().lower()
        if not eq or not key or not value:
            raise ValueError(f"bad impairment {item!r}: expected key=value")
        settings.append((key, value))
    return settings


def _parse_setting(key: str, value: str) -> dict[str, float | int]:
    """One ``key=value`` as the spec's fields (``pmtu`` sets two)."""
    if key != "pmtu":
        return {key: _parse_value(key, value)}
    mtu, colon, mode = value.partition(":")
    if not mtu.isdigit() or not 68 <= int(mtu) <= 65535 or (colon and mode != "blackhole"):
        raise ValueError(f"bad impairment pmtu={value}: expected an MTU of 68..65535, "
                         "optionally followed by :blackhole")
    return {"pmtu": int(mtu), "pmtu_blackhole": bool(colon)}


def _headers_len(frame: bytes | memoryview) -> int:
    """The IP and TCP headers of a super-packet (what each segment cut from it repeats)."""
    ihl = 40 if frame[0] >> 4 == 6 else (frame[0] & 0x0F) * 4
    return ihl + (frame[ihl + 12] >> 4) * 4


def frame_pcount(frame: bytes | memoryview, gso_size: int) -> int:
    """How many wire segments the device cuts an outgoing frame into (tcp_skb_pcount):
    its TCP payload over ``gso_size``, 1 when it is not a super-packet."""
    if not gso_size:
        return 1
    return max(1, -(-(len(frame) - _headers_len(frame)) // gso_size))


def too_big(frame: bytes | memoryview, gso_size: int, pmtu: int) -> bool:
    """Whether a router with next-hop MTU ``pmtu`` would refuse ``frame``: over IPv6, any
    packet longer; over IPv4, one longer with DF set (without DF it would fragment it). A
    GSO super-packet is judged by the segments the device cuts it into."""
    if len(frame) < 20:
        return False
    version = frame[0] >> 4
    if version == 4 and not frame[6] & 0x40:
        return False
    return (_headers_len(frame) + gso_size if gso_size else len(frame)) > pmtu


def too_big_reply(frame: bytes | memoryview, pmtu: int) -> bytes:
    """What the router says about ``frame`` to its sender: ICMP destination unreachable,
    fragmentation needed, with the next-hop MTU (RFC 1191 4), or ICMPv6 packet too big
    (RFC 4443 3.2); from the frame's destination address, for want of a router's."""
    if frame[0] >> 4 == 6:
        src, dst = bytes(frame[24:40]), bytes(frame[8:24])
        message = icmpv6.build_error(src, dst, icmpv6.PKT_TOOBIG, 0, pmtu, frame)
        return build_ipv6_header(src, dst, NEXTHDR_ICMP, len(message)) + message
    src, dst = bytes(frame[16:20]), bytes(frame[12:16])
    message = icmp.build_error(icmp.DEST_UNREACH, icmp.FRAG_NEEDED, pmtu, frame)
    return build_ipv4_header(src, dst, PROTO_ICMP, len(message), ttl=64, ident=0,
                             dont_fragment=False) + message


def _parse_value(key: str, value: str) -> float | int:
    where = f"bad impairment {key}={value}"
    if key in _PERCENT_KEYS:
        m = _PERCENT_RE.fullmatch(value)
        if m is None:
            raise ValueError(f"{where}: {key} takes a percentage such as 2%")
        fraction = float(m[1]) / 100
        if fraction > 1:
            raise ValueError(f"{where}: a percentage above 100%")
        return fraction
    if key in _TIME_KEYS:
        m = _TIME_RE.fullmatch(value)
        if m is None:
            raise ValueError(f"{where}: {key} takes a time such as 10ms, 500us or 1s")
        return float(m[1]) * _TIME_UNITS[m[2]]
    if key == "rate":
        m = _RATE_RE.fullmatch(value)
        if m is None:
            raise ValueError(f"{where}: rate takes a bit rate such as 100mbit, 512kbit, 1gbit")
        rate = float(m[1]) * _RATE_UNITS[m[2]]
        if rate <= 0:
            raise ValueError(f"{where}: rate must be positive")
        return rate
    if key in ("seed", "limit"):
        if not value.isdigit():
            raise ValueError(f"{where}: {key} takes a non-negative integer")
        if key == "limit" and int(value) == 0:
            raise ValueError(f"{where}: limit must be at least 1")
        return int(value)
    known = ", ".join(f.name for f in dataclasses.fields(ImpairmentSpec))
    raise ValueError(f"{where}: unknown setting {key!r} (known: {known})")


class Delivery(NamedTuple):
    """One copy of a frame that survives: deliver ``data`` at time ``at``."""

    at: float
    data: bytes | memoryview
    corrupted: bool


class Impairer:
    """The per-direction decision stage. Deterministic for a given spec and ``stream``
    name, so a failing run replays exactly. ``header_only_corruption`` confines flipped
    bytes to the IPv4 header: use it where the receiver would not verify the transport
    checksum (a frame sent with a partial checksum that the kernel completes)."""

    def __init__(self, spec: ImpairmentSpec, *, stream: str = "",
                 counters: Counters | None = None,
                 header_only_corruption: bool = False) -> None:
        self.spec = spec
        self.counters = counters if counters is not None else Counters()
        self.header_only_corruption = header_only_corruption
        self._rng = random.Random(f"{spec.seed}:{stream}" if stream else spec.seed)
        self._busy_until = 0.0  # when the rate-limited link finishes its last frame

    def process(self, now: float, frame: bytes | memoryview,
                segments: int = 1) -> list[Delivery]:
        """Decide the fate of one frame (of ``segments`` wire segments, a GSO
        super-packet's count): [] when lost, two deliveries when duplicated."""
        spec, rng = self.spec, self._rng
        if spec.loss and rng.random() < spec.loss:
            self.counters.inc(Mib.UstcpImpairLoss)
            return []
        copies = 1
        if spec.duplicate and rng.random() < spec.duplicate:
            self.counters.inc(Mib.UstcpImpairDuplicate)
            copies = 2
        depart = now
        if spec.rate:
            depart = max(now, self._busy_until) + len(frame) * 8 / spec.rate
            self._busy_until = depart
        deliveries = []
        for _ in range(copies):
            data: bytes | memoryview = frame
            if spec.ce and _ect(frame) and rng.random() < 1 - (1 - spec.ce) ** segments:
                self.counters.inc(Mib.UstcpImpairCE)
                data = mark_ce(frame)
            corrupted = bool(spec.corrupt) and rng.random() < spec.corrupt
            if corrupted:
                self.counters.inc(Mib.UstcpImpairCorrupt)
                data = self._corrupt(data)
            at = depart + spec.delay
            if spec.jitter:
                at = max(depart, at + rng.uniform(-spec.jitter, spec.jitter))
            if spec.reorder and rng.random() < spec.reorder:
                self.counters.inc(Mib.UstcpImpairReorder)
                at += spec.reorder_delay
            deliveries.append(Delivery(at, data, corrupted))
        return deliveries

    def _corrupt(self, frame: bytes | memoryview) -> bytes:
        """Flip one byte (XOR with a random non-zero value)."""
        buf = bytearray(frame)
        if not buf:
            return bytes(buf)
        ihl = min(len(buf), (buf[0] & 0x0F) * 4) or len(buf)
        rng = self._rng
        in_header = (self.header_only_corruption or ihl == len(buf)
                     or rng.randrange(HEADER_CORRUPT_ODDS) == 0)
        pos = rng.randrange(ihl) if in_header else rng.randrange(ihl, len(buf))
        buf[pos] ^= rng.randrange(1, 256)
        return bytes(buf)


def _ect(frame: bytes | memoryview) -> bool:
    """An IPv4 frame whose ECN field says ECN-capable (ECT(0) or ECT(1))."""
    return len(frame) >= 20 and frame[0] >> 4 == 4 and frame[1] & 0x3 in (1, 2)


def mark_ce(frame: bytes | memoryview) -> bytes:
    """The frame with its ECN field set to CE (RFC 3168 5) and the IPv4 header checksum
    updated incrementally (RFC 1624 3: HC' = ~(~HC + ~m + m'), m the header's first
    16-bit word, whose low byte is the TOS)."""
    buf = bytearray(frame)
    old = buf[0] << 8 | buf[1]
    buf[1] |= 0x3
    csum = (~int.from_bytes(buf[10:12], "big") & 0xFFFF) + (~old & 0xFFFF) \
        + (buf[0] << 8 | buf[1])
    csum = (csum & 0xFFFF) + (csum >> 16)
    csum = (csum & 0xFFFF) + (csum >> 16)
    buf[10:12] = (~csum & 0xFFFF).to_bytes(2, "big")
    return bytes(buf)
