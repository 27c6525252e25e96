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

    @property
    def key(self) -> tuple[bytes, int, bytes, int]:
        return (self.local_ip, self.local_port, self.remote_ip, self.remote_port)
