"""SYN cookies as Linux makes them (net/ipv4/syncookies.c), pure and sans-IO.

When the SYN queue is full (or ``tcp_syncookies=2``) a listener keeps no state for a SYN: it
encodes what it must remember in the ISN of its SYN-ACK, and rebuilds the request from the
ACK that echoes it. Layout of the 32-bit cookie (secure_tcp_syn_cookie)::

    cookie = H0(4-tuple) + peer_isn + (count << 24)
             + ((H1(4-tuple, count, peer_isn) + mss_index) mod 2^24)

all mod 2^32. ``count`` is a minute counter (tcp_cookie_time: jiffies / (60 * HZ), here
``now // 60``); its low 8 bits sit in the top 8 bits of the cookie once H0 and peer_isn are
subtracted, so the check recovers the counter, rejects it when it is MAX_SYNCOOKIE_AGE or
more minutes old, and then recovers the 2-bit MSS index from the low 24 bits.

One departure from Linux: Linux's H1 does not cover peer_isn, so an ACK whose sequence is one
past the ISN's successor (a duplicate ACK sent after one byte of data) recovers the
neighbouring MSS index and passes; the connection then starts one byte late and that byte is
lost without a trace. ustcp puts peer_isn into H1, so such an ACK fails the check (counted
SyncookiesFailed, answered with RST) instead. A 10,000-connection burst (tools/burst.py)
lost the one byte of 507 connections so before the listener checked the cookie against the
ISN it knew (listener.py, _no_request).

The keyed hash: Linux uses SipHash-2-4 over (saddr, daddr, sport << 16 | dport, count) with
two 128-bit keys drawn once at first use (net_get_random_once) and never changed. Python's
stdlib has no keyed SipHash, so ``H0``/``H1`` are keyed BLAKE2b with a 4-byte digest over
the same fields; like SipHash it is a PRF, so without the key a cookie cannot be forged.
The keys live as long as the ``SyncookieSecrets`` object (one per engine); cookies expire
through the counter they carry, not through key rotation.

Direction: all addresses are those of the *received* segment. For the SYN and for the ACK
that completes the handshake, ``src`` is the peer and ``dst`` is us (cookie_v4_init_sequence,
__cookie_v4_check).

Timestamps (cookie_init_timestamp, cookie_timestamp_decode): with timestamps on, the options
that a cookie cannot carry are hidden in the low 6 bits of our SYN-ACK's TSval, which the
peer echoes back in TSecr::

    | 31 ... 6 |  5  |  4   | 3 2 1 0 |
    |  ms clock| ECN | SACK |  wscale |   (wscale 0xF = no window scaling)

The caller works in the timestamp clock *before* its per-connection offset
(secure_tcp_ts_off): add the offset after ``encode_ts_options`` and subtract it from TSecr
before ``decode_ts_options``, as cookie_v4_check does. Without timestamps the ACK carries
none of this, so window scaling and SACK are off for a cookie connection, as in Linux.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from secrets import token_bytes
from typing import Final

# msstab (syncookies.c): the four MSS values a 2-bit index can name, IPv4; msstab for IPv6
# (net/ipv6/syncookies.c): the common MTUs 1280, 1480, 1500 and 9000 less 60 bytes of headers.
MSSTAB: tuple[int, ...] = (536, 1300, 1440, 1460)
MSSTAB6: tuple[int, ...] = (1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60)

COOKIEBITS: Final = 24  # the low 24 bits carry H1 + mss index; the top 8 the minute counter
COOKIEMASK: Final = (1 << COOKIEBITS) - 1
SYNCOOKIE_PERIOD: Final = 60.0  # seconds per counter tick (TCP_SYNCOOKIE_PERIOD = 60 * HZ)
# include/net/tcp.h: a cookie is valid while (count_now - count_cookie) < MAX_SYNCOOKIE_AGE,
# i.e. for at most 2 * 60 s (less when the counter ticks just after it was made).
MAX_SYNCOOKIE_AGE: Final = 2

TSBITS: Final = 6  # low TSval bits holding the options (syncookies.c TSBITS)
TSMASK: Final = (1 << TSBITS) - 1
TS_OPT_WSCALE_MASK: Final = 0xF
TS_OPT_SACK: Final = 1 << 4
TS_OPT_ECN: Final = 1 << 5
TCP_MAX_WSCALE: Final = 14  # RFC 7323; tcp_parse_options clamps a larger shift to this

_U32: Final = 0xFFFFFFFF


def tcp_cookie_time(now: float) -> int:
    """The cookie minute counter (tcp_cookie_time), as a 32-bit value."""
    return int(now // SYNCOOKIE_PERIOD) & _U32


class SyncookieSecrets:
    """The two cookie keys (Linux syncookie_secret[2]) and the keyed hash over a 4-tuple.

    ``seed=None`` draws both keys from ``secrets.token_bytes``; a seed derives them
    deterministically (tests, the packetdrill runner). Keys are 128 bits, as SipHash's.
    """

    def __init__(self, seed: bytes | None = None) -> None:
        self._keys: tuple[bytes, ...]
        if seed is None:
            self._keys = (token_bytes(16), token_bytes(16))
        else:
            self._keys = tuple(
                hashlib.blake2b(seed, digest_size=16, person=b"ustcp-cookie", salt=bytes([c]))
                .digest()
                for c in (0, 1)
            )

    def cookie_hash(self, src_ip: bytes, src_port: int, dst_ip: bytes, dst_port: int,
                    count: int, c: int, peer_isn: int = 0) -> int:
        """cookie_hash: a 32-bit keyed hash of the 4-tuple, ``count`` and ``peer_isn``
        under key ``c``."""
        msg = (src_ip + dst_ip + ((src_port << 16) | dst_port).to_bytes(4, "big")
               + (count & _U32).to_bytes(4, "big") + (peer_isn & _U32).to_bytes(4, "big"))
        return int.from_bytes(
            hashlib.blake2b(msg, key=self._keys[c], digest_size=4).digest(), "big")


def msstab_for(ip: bytes) -> tuple[int, ...]:
    """The MSS table of ``ip``'s version (cookie_v4_init_sequence, cookie_v6_init_sequence)."""
    return MSSTAB6 if len(ip) == 16 else MSSTAB


def mss_index(mss: int, table: tuple[int, ...] = MSSTAB) -> int:
    """Index of the largest table entry <= ``mss``; 0 when ``mss`` is smaller still.

    As in __cookie_v4_init_sequence / __cookie_v6_init_sequence, a peer MSS below the first
    entry still encodes it (536 for IPv4, 1220 for IPv6).
    """
    for idx in range(len(table) - 1, 0, -1):
        if mss >= table[idx]:
            return idx
    return 0


def cookie_init_sequence(secrets: SyncookieSecrets, now: float,
                         src_ip: bytes, src_port: int, dst_ip: bytes, dst_port: int,
                         peer_isn: int, mss: int) -> tuple[int, int]:
    """Our ISN for a SYN answered with a cookie, and the MSS the cookie encodes.

    The 4-tuple and ``peer_isn`` are those of the received SYN (cookie_v4_init_sequence,
    secure_tcp_syn_cookie).
    """
    table = msstab_for(src_ip)
    idx = mss_index(mss, table)
    count = tcp_cookie_time(now)
    h0 = secrets.cookie_hash(src_ip, src_port, dst_ip, dst_port, 0, 0)
    h1 = secrets.cookie_hash(src_ip, src_port, dst_ip, dst_port, count, 1, peer_isn)
    cookie = h0 + peer_isn + (count << COOKIEBITS) + ((h1 + idx) & COOKIEMASK)
    return cookie & _U32, table[idx]


def cookie_check(secrets: SyncookieSecrets, now: float,
                 src_ip: bytes, src_port: int, dst_ip: bytes, dst_port: int,
                 peer_isn: int, cookie: int) -> int | None:
    """The MSS a cookie encodes, or None when it is stale or forged.

    The caller passes the completing ACK's 4-tuple, ``peer_isn = seq - 1`` and
    ``cookie = ack_seq - 1`` (__cookie_v4_check, check_tcp_syn_cookie).
    """
    count = tcp_cookie_time(now)
    rest = (cookie - secrets.cookie_hash(src_ip, src_port, dst_ip, dst_port, 0, 0)
            - peer_isn) & _U32
    # check_tcp_syn_cookie: the counter's age, modulo the 8 bits the cookie holds
    diff = (count - (rest >> COOKIEBITS)) & (_U32 >> COOKIEBITS)
    if diff >= MAX_SYNCOOKIE_AGE:
        return None
    h1 = secrets.cookie_hash(src_ip, src_port, dst_ip, dst_port, count - diff, 1, peer_isn)
    idx = (rest - h1) & COOKIEMASK
    table = msstab_for(src_ip)
    return table[idx] if idx < len(table) else None


@dataclass(frozen=True, slots=True)
class CookieTsOptions:
    """The SYN options recovered from a cookie ACK's TSecr."""

    snd_wscale: int | None  # the peer's window shift; None = no window scaling
    sack_ok: bool
    ecn_ok: bool


def encode_ts_options(ts_now: int, wscale: int | None, sack_ok: bool, ecn_ok: bool) -> int:
    """TSval for a cookie SYN-ACK: ``ts_now`` with its low 6 bits replaced by the options.

    cookie_init_timestamp: the result must not lie in the future of ``ts_now`` (later
    segments use the plain clock and TSval must not go backwards), so when replacing the low
    bits raised it, one 64-tick step is taken off. ``wscale`` is the peer's shift from its SYN.
    """
    if wscale is not None and not 0 <= wscale <= TCP_MAX_WSCALE:
        raise ValueError(f"window scale {wscale} outside 0..{TCP_MAX_WSCALE}")
    options = TS_OPT_WSCALE_MASK if wscale is None else wscale
    if sack_ok:
        options |= TS_OPT_SACK
    if ecn_ok:
        options |= TS_OPT_ECN
    ts = (ts_now & ~TSMASK) | options
    if ts > ts_now:
        ts -= 1 << TSBITS
    return ts & _U32


def decode_ts_options(tsecr: int, *, tcp_sack: bool = True,
                      tcp_window_scaling: bool = True) -> CookieTsOptions | None:
    """The options hidden in a cookie ACK's TSecr (offset already removed), or None.

    cookie_timestamp_decode fails, and the ACK is dropped, when the cookie says SACK but
    ``tcp_sack`` is now off, or window scaling but ``tcp_window_scaling`` is now off. (The
    4-bit field cannot hold a shift above 15, and 15 means "none", so no other value is
    invalid; tcp_parse_options clamped the SYN's shift to 14 before it was encoded.)
    """
    sack_ok = bool(tsecr & TS_OPT_SACK)
    if sack_ok and not tcp_sack:
        return None
    wscale_bits = tsecr & TS_OPT_WSCALE_MASK
    snd_wscale = None if wscale_bits == TS_OPT_WSCALE_MASK else wscale_bits
    if snd_wscale is not None and not tcp_window_scaling:
        return None
    # cookie_ecn_ok: bit 5 says the SYN asked for ECN; the caller applies tcp_ecn / the route
    return CookieTsOptions(snd_wscale=snd_wscale, sack_ok=sack_ok,
                           ecn_ok=bool(tsecr & TS_OPT_ECN))
