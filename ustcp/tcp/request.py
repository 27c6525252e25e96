"""A half-open connection: what the SYN queue holds (Linux struct tcp_request_sock).

It is small on purpose: no buffers, no congestion state, just what the SYN-ACK and the
final ACK need. A SYN flood fills the SYN queue with these, not with full connections.
"""

from __future__ import annotations

from dataclasses import dataclass

from .options import SockOpts


@dataclass(slots=True)
class RequestSock:
    local_ip: bytes
    local_port: int
    remote_ip: bytes
    remote_port: int
    iss: int  # our ISN (a syncookie when made from one)
    irs: int  # the peer's ISN
    snd_mss: int  # the peer's MSS, what we may send
    advmss: int  # the MSS we announced
    snd_wscale: int | None  # the peer's shift; None when window scaling is off
    rcv_wscale: int  # our shift (0 when off)
    sack_ok: bool
    ts_ok: bool
    ts_recent: int  # the peer's TSval from the SYN
    ts_offset: int  # added to our millisecond clock for TSval
    rcv_wnd: int  # the window our SYN-ACK announced
    sockopts: SockOpts
    created: float
    synack_sent: float | None = None  # last SYN-ACK sent, for the handshake RTT sample
    num_timeout: int = 0  # SYN-ACK retransmissions so far
    expires: float = 0.0  # next SYN-ACK retransmission
    from_cookie: bool = False
    fastopen_cookie: bytes | None = None  # a Fast Open cookie for the SYN-ACK to carry
    fastopen_exp: bool = False  # in the experimental option form, as the client asked
    ecn_ok: bool = False  # the SYN asked for ECN and we agree (inet_rsk(req)->ecn_ok)
    acked: bool = False  # a bare final ACK was held back by TCP_DEFER_ACCEPT

    def __init__(self, local_ip: bytes, local_port: int, remote_ip: bytes, remote_port: int,
                 iss: int, irs: int, snd_mss: int, advmss: int, snd_wscale: int | None,
                 rcv_wscale: int, sack_ok: bool, ts_ok: bool, ts_recent: int, ts_offset: int,
                 rcv_wnd: int, sockopts: SockOpts, created: float,
                 synack_sent: float | None = None, num_timeout: int = 0, expires: float = 0.0,
                 from_cookie: bool = False, fastopen_cookie: bytes | None = None,
                 fastopen_exp: bool = False, ecn_ok: bool = False, acked: bool = False) -> None:
        # written out for mypyc, as wire.tcp.TcpOptions.__init__ is
        self.local_ip = local_ip
        self.local_port = local_port
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.iss = iss
        self.irs = irs
        self.snd_mss = snd_mss
        self.advmss = advmss
        self.snd_wscale = snd_wscale
        self.rcv_wscale = rcv_wscale
        self.sack_ok = sack_ok
        self.ts_ok = ts_ok
        self.ts_recent = ts_recent
        self.ts_offset = ts_offset
        self.rcv_wnd = rcv_wnd
        self.sockopts = sockopts
        self.created = created
        self.synack_sent = synack_sent
        self.num_timeout = num_timeout
        self.expires = expires
        self.from_cookie = from_cookie
        self.fastopen_cookie = fastopen_cookie
        self.fastopen_exp = fastopen_exp
        self.ecn_ok = ecn_ok
        self.acked = acked

    @property
    def key(self) -> tuple[bytes, int, bytes, int]:
        return (self.local_ip, self.local_port, self.remote_ip, self.remote_port)
