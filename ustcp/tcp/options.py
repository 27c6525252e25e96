"""Handshake option negotiation as Linux does it (tcp_output.c tcp_syn_options,
tcp_select_initial_window; tcp_input.c tcp_parse_options, tcp_mss_to_mtu)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..config import StackConfig
from ..wire.tcp import ACK, MAX_WSCALE, SYN, TcpOptions, TcpSegment
from .pacing import PACING_UNLIMITED

TCP_MSS_DEFAULT: Final = 536  # RFC 9293 3.7.1: assumed when the SYN carries no MSS option
TCP_MIN_MSS: Final = 88  # Linux TCP_MIN_MSS: smaller MSS options are raised to this
MAX_TCP_OPTION_SPACE: Final = 40  # include/net/tcp.h: the most a TCP header holds of options
TS_OPTION_LEN: Final = 12  # nop,nop,TS: what every segment loses to timestamps
MAX_TCP_WINDOW: Final = 65535  # the 16-bit window field (before scaling)
SOCK_MIN_SNDBUF: Final = 4608  # 2 * (2048 + sizeof(struct sk_buff)), rounded as Linux does
SOCK_MIN_RCVBUF: Final = 2304


@dataclass(slots=True)
class SockOpts:
    """Per-socket options (setsockopt). Accepted connections inherit the listener's."""

    nodelay: bool = False
    cork: bool = False
    keepalive: bool = False
    rcvbuf: int = 0  # 0 = autotuned from tcp_rmem (SO_RCVBUF not set)
    sndbuf: int = 0  # 0 = autotuned from tcp_wmem (SO_SNDBUF not set)
    maxseg: int = 0  # TCP_MAXSEG user clamp, 0 = none
    linger: tuple[bool, int] | None = None  # SO_LINGER (onoff, seconds)
    linger2: int | None = None  # TCP_LINGER2: FIN_WAIT2 lifetime for orphans, seconds
    reuseaddr: bool = False
    defer_accept: int = 0  # TCP_DEFER_ACCEPT, seconds (listeners)
    keepidle: int = 0  # TCP_KEEPIDLE seconds, 0 = net.ipv4.tcp_keepalive_time
    keepintvl: int = 0  # TCP_KEEPINTVL seconds, 0 = net.ipv4.tcp_keepalive_intvl
    keepcnt: int = 0  # TCP_KEEPCNT, 0 = net.ipv4.tcp_keepalive_probes
    congestion: str | None = None  # TCP_CONGESTION, None = net.ipv4.tcp_congestion_control
    fastopen: int = 0  # TCP_FASTOPEN (listeners): the Fast Open queue's length, 0 = off
    fastopen_connect: bool = False  # TCP_FASTOPEN_CONNECT: connect() may wait for the data
    user_timeout: int = 0  # TCP_USER_TIMEOUT, ms: give up after this long unacknowledged
    syncnt: int = 0  # TCP_SYNCNT: SYN (SYN-ACK) retransmissions, 0 = net.ipv4.tcp_syn_retries
    notsent_lowat: int = 0  # TCP_NOTSENT_LOWAT, bytes; 0 = net.ipv4.tcp_notsent_lowat
    recvmsg_inq: bool = False  # TCP_INQ: recvmsg reports the bytes left to read
    v6only: bool = False  # IPV6_V6ONLY: a listener on :: takes IPv6 only, not IPv4 too
    max_pacing_rate: int = PACING_UNLIMITED  # SO_MAX_PACING_RATE, bytes/s; ~0UL = none

    def __init__(self, nodelay: bool = False, cork: bool = False, keepalive: bool = False,
                 rcvbuf: int = 0, sndbuf: int = 0, maxseg: int = 0,
                 linger: tuple[bool, int] | None = None, linger2: int | None = None,
                 reuseaddr: bool = False, defer_accept: int = 0, keepidle: int = 0,
                 keepintvl: int = 0, keepcnt: int = 0, congestion: str | None = None,
                 fastopen: int = 0, fastopen_connect: bool = False, user_timeout: int = 0,
                 syncnt: int = 0, notsent_lowat: int = 0, recvmsg_inq: bool = False,
                 v6only: bool = False, max_pacing_rate: int = PACING_UNLIMITED) -> None:
        # written out for mypyc, as wire.tcp.TcpOptions.__init__ is
        self.nodelay = nodelay
        self.cork = cork
        self.keepalive = keepalive
        self.rcvbuf = rcvbuf
        self.sndbuf = sndbuf
        self.maxseg = maxseg
        self.linger = linger
        self.linger2 = linger2
        self.reuseaddr = reuseaddr
        self.defer_accept = defer_accept
        self.keepidle = keepidle
        self.keepintvl = keepintvl
        self.keepcnt = keepcnt
        self.congestion = congestion
        self.fastopen = fastopen
        self.fastopen_connect = fastopen_connect
        self.user_timeout = user_timeout
        self.syncnt = syncnt
        self.notsent_lowat = notsent_lowat
        self.recvmsg_inq = recvmsg_inq
        self.v6only = v6only
        self.max_pacing_rate = max_pacing_rate

    def copy(self) -> SockOpts:
        """Every field, as a new object (an accepted connection's copy of its listener's
        options). Spelled out: ``dataclasses.replace`` walks the fields at run time, 4.5 µs
        per accepted connection compiled against 0.5 for this
        (tests/unit/test_sock.py checks that no field is left out)."""
        return SockOpts(
            nodelay=self.nodelay, cork=self.cork, keepalive=self.keepalive,
            rcvbuf=self.rcvbuf, sndbuf=self.sndbuf, maxseg=self.maxseg, linger=self.linger,
            linger2=self.linger2, reuseaddr=self.reuseaddr, defer_accept=self.defer_accept,
            keepidle=self.keepidle, keepintvl=self.keepintvl, keepcnt=self.keepcnt,
            congestion=self.congestion, fastopen=self.fastopen,
            fastopen_connect=self.fastopen_connect, user_timeout=self.user_timeout,
            syncnt=self.syncnt,
            notsent_lowat=self.notsent_lowat, recvmsg_inq=self.recvmsg_inq,
            v6only=self.v6only, max_pacing_rate=self.max_pacing_rate)


def secs_to_retrans(seconds: int, timeout: int = 1, rto_max: int = 120) -> int:
    """How many SYN-ACK retransmissions cover ``seconds`` (Linux secs_to_retrans, used
    for TCP_DEFER_ACCEPT)."""
    if seconds <= 0:
        return 0
    res, period = 1, timeout
    while seconds > period and res < 255:
        res += 1
        timeout = min(timeout * 2, rto_max)
        period += timeout
    return res


def retrans_to_secs(retrans: int, timeout: int = 1, rto_max: int = 120) -> int:
    """The seconds ``retrans`` SYN-ACK retransmissions cover (Linux retrans_to_secs): what
    getsockopt(TCP_DEFER_ACCEPT) reads back."""
    period = 0
    if retrans > 0:
        period = timeout
        while retrans > 1:
            retrans -= 1
            timeout = min(timeout * 2, rto_max)
            period += timeout
    return period


def doubled_buf(requested: int, minimum: int) -> int:
    """SO_SNDBUF/SO_RCVBUF as the kernel keeps them: twice the request (for its bookkeeping
    overhead), at least ``minimum`` (__sock_set_sndbuf, __sock_set_rcvbuf)."""
    return max(requested * 2, minimum)


def rcvbuf_size(config: StackConfig, opts: SockOpts) -> int:
    """SO_RCVBUF as Linux doubles it, else the tcp_rmem default."""
    return doubled_buf(opts.rcvbuf, SOCK_MIN_RCVBUF) if opts.rcvbuf else config.tcp_rmem[1]


def sndbuf_size(opts: SockOpts) -> int:
    """SO_SNDBUF as Linux doubles it; 0 when not set (autotuned by the connection)."""
    return doubled_buf(opts.sndbuf, SOCK_MIN_SNDBUF) if opts.sndbuf else 0


def rcv_wscale_for(config: StackConfig, opts: SockOpts) -> int:
    """Our window scale: the smallest shift that lets the largest receive buffer
    (tcp_rmem[2], or a locked SO_RCVBUF) be advertised (tcp_select_initial_window)."""
    space = rcvbuf_size(config, opts) if opts.rcvbuf else config.tcp_rmem[2]
    wscale = 0
    while space > 65535 and wscale < MAX_WSCALE:
        space >>= 1
        wscale += 1
    return wscale


def initial_rcv_wnd(config: StackConfig, opts: SockOpts, advmss: int) -> int:
    """The window of a SYN or SYN-ACK: the receive buffer, never more than 65535 (a SYN's
    window is never scaled, RFC 7323 2.2), rounded down to a multiple of the advertised MSS
    (tcp_select_initial_window). Our buffers count payload bytes only, so the whole buffer
    is window (Linux scales by the skb overhead it measures: tcp_win_from_space)."""
    space = min(rcvbuf_size(config, opts), 65535)
    if advmss and space > advmss:
        space = (space // advmss) * advmss
    return space


def clamped_advmss(mss_for_mtu: int, opts: SockOpts) -> int:
    """The MSS we announce: the route's, clamped by TCP_MAXSEG (tcp_mss_clamp). The
    listener, the syncookie path and connect() all use it."""
    return min(mss_for_mtu, opts.maxseg) if opts.maxseg else mss_for_mtu


def peer_mss(opts: TcpOptions) -> int:
    """The MSS the peer announced, with Linux's floor (tcp_parse_options)."""
    if opts.mss is None:
        return TCP_MSS_DEFAULT
    return max(opts.mss, TCP_MIN_MSS)


@dataclass(slots=True)
class Negotiated:
    """What a handshake agreed: each option on only when both sides offered it. (Not
    frozen: a frozen dataclass's __init__ costs a setattr call per field, and a SYN flood
    builds one per SYN.)"""

    ts_ok: bool
    sack_ok: bool
    snd_wscale: int | None  # the peer's shift; None when window scaling is off
    snd_mss: int  # the peer's MSS: what we may send
    advmss: int  # the MSS we announce
    rcv_wscale: int  # our shift (0 when off)
    rcv_wnd: int  # the window our SYN-ACK announces

    def __init__(self, ts_ok: bool, sack_ok: bool, snd_wscale: int | None, snd_mss: int,
                 advmss: int, rcv_wscale: int, rcv_wnd: int) -> None:
        # written out for mypyc, as wire.tcp.TcpOptions.__init__ is
        self.ts_ok = ts_ok
        self.sack_ok = sack_ok
        self.snd_wscale = snd_wscale
        self.snd_mss = snd_mss
        self.advmss = advmss
        self.rcv_wscale = rcv_wscale
        self.rcv_wnd = rcv_wnd


def negotiate(config: StackConfig, sockopts: SockOpts, mss_for_mtu: int, *, ts: bool,
              sack: bool, wscale: int | None, mss: int) -> Negotiated:
    """The one rule for a handshake's options, given the peer's offer (its SYN's options,
    or what a syncookie ACK brings back): timestamps, SACK and window scaling only when
    both sides want them, the peer's shift clamped to 14 (tcp_parse_options), our shift
    only with the peer's, the MSS we announce clamped by TCP_MAXSEG, the first window in
    multiples of the payload MSS (tcp_openreq_init, tcp_select_initial_window). The
    listener (a SYN), its syncookie path (cookie_v4_check) and an active open's SYN-ACK or
    simultaneous SYN (tcp_rcv_synsent_state_process) all call it."""
    ts_ok = bool(config.tcp_timestamps) and ts
    wscale_ok = bool(config.tcp_window_scaling) and wscale is not None
    advmss = clamped_advmss(mss_for_mtu, sockopts)
    return Negotiated(
        ts_ok=ts_ok, sack_ok=bool(config.tcp_sack) and sack,
        snd_wscale=min(wscale or 0, 14) if wscale_ok else None, snd_mss=mss, advmss=advmss,
        rcv_wscale=rcv_wscale_for(config, sockopts) if wscale_ok else 0,
        rcv_wnd=initial_rcv_wnd(config, sockopts, advmss - (TS_OPTION_LEN if ts_ok else 0)))


def peer_offer(config: StackConfig, sockopts: SockOpts, mss_for_mtu: int,
               opts: TcpOptions) -> Negotiated:
    """:func:`negotiate` for the options of a SYN or SYN-ACK."""
    return negotiate(config, sockopts, mss_for_mtu, ts=opts.ts_val is not None,
                     sack=opts.sack_permitted, wscale=opts.wscale, mss=peer_mss(opts))


def syn_segment(local_port: int, remote_port: int, iss: int, ack: int | None, *,
                rcv_wnd: int, mss: int, rcv_wscale: int, ts_val: int | None, ts_ecr: int,
                sack: bool, wscale: bool) -> TcpSegment:
    """Our SYN (``ack`` None) or SYN-ACK (tcp_make_synack): the options in Linux's layout
    (see wire.tcp), the window never scaled (RFC 7323 2.2)."""
    opts = TcpOptions(
        mss=mss,
        wscale=rcv_wscale if wscale else None,
        sack_permitted=sack,
        ts_val=ts_val,
        ts_ecr=ts_ecr if ts_val is not None else 0,
    )
    flags = SYN if ack is None else SYN | ACK
    return TcpSegment(local_port, remote_port, iss, ack or 0, flags,
                      min(rcv_wnd, MAX_TCP_WINDOW), opts)
