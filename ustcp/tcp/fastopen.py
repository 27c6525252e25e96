"""TCP Fast Open cookies and the server's decision (RFC 7413; Linux tcp_fastopen.c).

A Fast Open server hands each client a cookie, a keyed hash of the client's address, in
the SYN-ACK of an ordinary handshake when the client asks for one (an empty Fast Open
option in its SYN). A later SYN that carries a valid cookie may carry data too: the
server creates the connection at once, hands the data to ``accept()``, and its SYN-ACK
acknowledges it. A wrong or missing cookie falls back to the ordinary handshake, the
SYN's data is not acknowledged and the client sends it again.

Cookies as Linux makes them (``__tcp_fastopen_cookie_gen_cipher``): SipHash-2-4, keyed
with the 128-bit ``tcp_fastopen_key``, over the IPv4 source and destination addresses of
the SYN as they sit in the header; the 64-bit result, little-endian, is the 8-byte cookie.
A second (backup) key lets keys rotate: cookies made with either are accepted, and one
made with the backup key is answered with a fresh cookie from the primary key
(``TcpExtTCPFastOpenPassiveAltKey``). The key text is Linux's: four 32-bit hex words
``a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4``, each stored little-endian, and a backup key after
a comma.

``net.ipv4.tcp_fastopen`` bits (Documentation/networking/ip-sysctl.rst): 0x1 client,
0x2 server, 0x4 client sends data in the SYN without a cookie, 0x200 server accepts data
without a cookie, 0x400 every listener is a Fast Open listener without TCP_FASTOPEN
(its queue then as long as its backlog).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from secrets import token_bytes
from typing import Final

from ..config import parse_fastopen_keys

TFO_CLIENT_ENABLE: Final = 0x1
TFO_SERVER_ENABLE: Final = 0x2
TFO_CLIENT_NO_COOKIE: Final = 0x4
TFO_SERVER_COOKIE_NOT_REQD: Final = 0x200
TFO_SERVER_WO_SOCKOPT1: Final = 0x400

COOKIE_SIZE: Final = 8  # TCP_FASTOPEN_COOKIE_SIZE
KEY_LENGTH: Final = 16  # TCP_FASTOPEN_KEY_LENGTH

_M64: Final = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M64


def siphash24(key: bytes, data: bytes) -> int:
    """SipHash-2-4 (Aumasson and Bernstein) of ``data`` under a 16-byte key, as Linux's
    ``siphash()``: the key and the message read as little-endian 64-bit words."""
    k0: int
    k1: int
    k0, k1 = struct.unpack("<QQ", key)
    v0: int = k0 ^ 0x736F6D6570736575
    v1: int = k1 ^ 0x646F72616E646F6D
    v2: int = k0 ^ 0x6C7967656E657261
    v3: int = k1 ^ 0x7465646279746573

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & _M64
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _M64
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _M64
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _M64
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    whole = len(data) - len(data) % 8
    for (m,) in struct.iter_unpack("<Q", data[:whole]):
        v3 ^= m
        rounds(2)
        v0 ^= m
    last = (len(data) & 0xFF) << 56 | int.from_bytes(data[whole:], "little")
    v3 ^= last
    rounds(2)
    v0 ^= last
    v2 ^= 0xFF
    rounds(4)
    return v0 ^ v1 ^ v2 ^ v3


def format_key(key: bytes) -> str:
    return "-".join(f"{word:08x}" for (word,) in struct.iter_unpack("<I", key))


@dataclass(frozen=True, slots=True)
class CookieCheck:
    valid: bool
    alt_key: bool = False  # made with the backup key: answer with a fresh cookie


class FastOpenKeys:
    """The server's cookie keys (struct tcp_fastopen_context): the primary makes cookies,
    both are accepted. ``text`` is the sysctl's value; empty takes ``default`` or draws a
    random primary key, as Linux does on first use (tcp_fastopen_init_key_once)."""

    def __init__(self, text: str = "", default: bytes | None = None) -> None:
        self.text = text
        self.keys: tuple[bytes, ...] = parse_fastopen_keys(text) if text else \
            (default or token_bytes(KEY_LENGTH),)

    def cookie(self, saddr: bytes, daddr: bytes) -> bytes:
        """The cookie for a client at ``saddr`` talking to ``daddr`` (the SYN's addresses)."""
        return _cookie(self.keys[0], saddr, daddr)

    def check(self, cookie: bytes, saddr: bytes, daddr: bytes) -> CookieCheck:
        """tcp_fastopen_cookie_gen_check: which key, if any, made this cookie."""
        for i, key in enumerate(self.keys):
            if cookie == _cookie(key, saddr, daddr):
                return CookieCheck(True, alt_key=i > 0)
        return CookieCheck(False)


def _cookie(key: bytes, saddr: bytes, daddr: bytes) -> bytes:
    return siphash24(key, saddr + daddr).to_bytes(COOKIE_SIZE, "little")


class FastOpenCacheEntry:
    """What a client remembers of a server for Fast Open (Linux's tcp_fastopen_metrics in
    tcp_metrics): the MSS its SYN-ACK announced, its cookie and whether that came in the
    experimental option, and ``try_exp``: 1 after a cookie request in the RFC 7413 form got
    no Fast Open option back (ask in the experimental form next), 2 after that failed too."""

    __slots__ = ("cookie", "exp", "mss", "try_exp")

    def __init__(self) -> None:
        self.mss = 0
        self.cookie: bytes | None = None
        self.exp = False
        self.try_exp = 0

    def update(self, mss: int, cookie: bytes | None, exp: bool, try_exp: int) -> None:
        """tcp_fastopen_cache_set: a new MSS and cookie replace the old; ``try_exp`` only
        rises, and only while no cookie is known."""
        if mss:
            self.mss = mss
        if cookie:
            self.cookie, self.exp = cookie, exp
        elif try_exp > self.try_exp and self.cookie is None and not self.exp:
            self.try_exp = try_exp


class FastOpenBlackhole:
    """Active Fast Open paused host-wide after middleboxes seem to drop it (Linux's
    tfo_active_disable_times and _stamp, per network namespace): a connection that used Fast
    Open and timed out on its third RTO (or gave up before) pauses it for
    tcp_fastopen_blackhole_timeout_sec, twice as long each time it happens again (at most
    64 times); a FIN received by a connection opened after a pause clears the count."""

    __slots__ = ("disable_stamp", "disable_times")

    def __init__(self) -> None:
        self.disable_times = 0
        self.disable_stamp = 0.0

    def detect(self, now: float, timeout_sec: int, timeouts: int, expired: bool) -> bool:
        """tcp_fastopen_active_detect_blackhole, at an RTO of a connection that used Fast
        Open (``timeouts`` retransmissions so far): True when Fast Open is paused now
        (tcp_fastopen_active_disable, only with the sysctl set)."""
        if not timeout_sec or not (timeouts == 2 or (timeouts < 2 and expired)):
            return False
        self.disable_stamp = now
        self.disable_times += 1
        return True

    def paused(self, now: float, timeout_sec: int) -> bool:
        """tcp_fastopen_active_should_disable: is active Fast Open paused at ``now``?"""
        if not timeout_sec or not self.disable_times:
            return False
        multiplier = 1 << min(self.disable_times - 1, 6)
        return now < self.disable_stamp + multiplier * timeout_sec

    def clear(self) -> None:
        """A connection opened after a pause got its FIN: Fast Open works again."""
        self.disable_times = 0


def server_enabled(tcp_fastopen: int) -> bool:
    return bool(tcp_fastopen & TFO_SERVER_ENABLE)


def listener_queue_len(tcp_fastopen: int, sockopt_qlen: int, backlog: int,
                       somaxconn: int) -> int:
    """The listener's Fast Open queue limit (fastopenq.max_qlen): TCP_FASTOPEN's value, or
    with 0x400 (and the server bit) the backlog, capped by somaxconn (fastopen_queue_tune);
    0 means the listener takes no Fast Open."""
    if sockopt_qlen:
        return min(sockopt_qlen, somaxconn)
    if tcp_fastopen & TFO_SERVER_WO_SOCKOPT1 and tcp_fastopen & TFO_SERVER_ENABLE:
        return min(backlog, somaxconn)
    return 0
