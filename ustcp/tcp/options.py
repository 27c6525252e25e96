"""Handshake option negotiation as Linux does it (tcp_output.c tcp_syn_options,
tcp_select_initial_window; tcp_input.c tcp_parse_options, tcp_mss_to_mtu)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import StackConfig
from ..wire.tcp import ACK, MAX_WSCALE, SYN, TcpOptions, TcpSegment

TCP_MSS_DEFAULT = 536  # RFC 9293 3.7.1: assumed when the SYN carries no MSS option
TCP_MIN_MSS = 88  # Linux TCP_MIN_MSS: smaller MSS options are raised to this
TS_OPTION_LEN = 12  # nop,nop,TS: what every segment loses to timestamps
MAX_TCP_WINDOW = 65535  # the 16-bit window field (before scaling)


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

    def copy(self) -> SockOpts:
        return dataclasses.replace(self)


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


def rcvbuf_size(config: StackConfig, opts: SockOpts) -> int:
    """SO_RCVBUF as Linux doubles it, else the tcp_rmem default."""
    return max(opts.rcvbuf * 2, 2304) if opts.rcvbuf else config.tcp_rmem[1]


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


def peer_mss(opts: TcpOptions) -> int:
    """The MSS the peer announced, with Linux's floor (tcp_parse_options)."""
    if opts.mss is None:
        return TCP_MSS_DEFAULT
    return max(opts.mss, TCP_MIN_MSS)


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
