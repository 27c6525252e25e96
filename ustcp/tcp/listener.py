"""A listening socket: the SYN queue, the accept queue and syncookies.

Linux's listen path (tcp_input.c tcp_conn_request, tcp_minisocks.c tcp_check_req,
inet_connection_sock.c, syncookies.c), with the same knobs and counters:

- a SYN creates a small :class:`RequestSock` in the SYN (half-open) queue and is answered
  with a SYN-ACK, retransmitted 1, 2, 4, ... s up to tcp_synack_retries times;
- the final ACK turns it into a full :class:`Connection` in the accept queue, which holds at
  most min(backlog, somaxconn) connections (ListenOverflows when full; tcp_abort_on_overflow
  chooses between dropping the ACK and answering RST);
- the SYN queue is bounded by the same backlog; when it is full, tcp_syncookies=1 answers
  with a cookie instead of queuing (tcp_syncookies=2 always does), and without cookies the
  SYN is dropped (TCPReqQFullDrop). With cookies off, the last quarter of
  tcp_max_syn_backlog is kept for peers already proven.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import structlog

from ..debuglog import DEBUG
from ..mib import Mib
from ..wire.addr import endpoint
from ..wire.tcp import ACK, CWR, ECE, FIN, RST, SYN, TcpSegment
from . import ecn, fastopen, syncookies
from .connection import Connection
from .options import (
    Negotiated,
    SockOpts,
    negotiate,
    peer_offer,
    secs_to_retrans,
    syn_segment,
)
from .request import RequestSock
from .rto import TCP_TIMEOUT_INIT
from .seq import after, seq_add
from .states import State
from .tables import Shrinker
from .timers import TimerHeap

if TYPE_CHECKING:
    from .host import Host

log = structlog.get_logger("ustcp.tcp")

TCP_SYNCOOKIE_VALID: Final = 120.0  # cookies are checked only this long after the last overflow


class Listener:
    def __init__(self, host: Host, local_ip: bytes, port: int, backlog: int,
                 sockopts: SockOpts, *, register: Callable[[Connection], None]) -> None:
        self.host = host
        self.register = register  # a new connection into the host's demultiplexing table
        self.local_ip = local_ip
        self.port = port
        self.sockopts = sockopts
        self.backlog = 0
        self.set_backlog(backlog)
        self.syn_queue: dict[tuple[bytes, int, bytes, int], RequestSock] = {}
        self._syn_queue_size = Shrinker()
        self.accept_queue: deque[Connection] = deque()
        self.waiter: Any = None
        self.closed = False
        self.last_overflow = -1e9  # tcp_synq_overflow: when cookies were last needed
        # Fast Open children not yet past SYN_RECV: the Fast Open queue (fastopenq.qlen)
        self.fastopen_pending: list[Connection] = []
        self.heap_when: float | None = None
        self._timers: TimerHeap[tuple[bytes, int, bytes, int]] = TimerHeap()  # SYN queue
        self.name = endpoint(local_ip, port)

    def set_backlog(self, backlog: int) -> None:
        """listen(2): the accept queue holds min(backlog, somaxconn) (Linux
        sk_max_ack_backlog; a second listen() call just changes it)."""
        self.backlog = max(0, min(backlog, self.host.config.somaxconn))

    @property
    def defer_accept_retrans(self) -> int:
        return secs_to_retrans(self.sockopts.defer_accept)

    @property
    def accept_queue_len(self) -> int:
        return len(self.accept_queue)

    @property
    def syn_queue_len(self) -> int:
        return len(self.syn_queue)

    @property
    def readable(self) -> bool:
        return bool(self.accept_queue) or self.closed

    def accept(self) -> Connection | None:
        if not self.accept_queue:
            return None
        return self.accept_queue.popleft()

    def _accept_queue_full(self) -> bool:
        return len(self.accept_queue) > self.backlog  # sk_acceptq_is_full

    # ------------------------------------------------------------------ SYN

    def on_syn(self, now: float, remote_ip: bytes, seg: TcpSegment, local_ip: bytes,
               tw_isn: int | None = None) -> None:
        """tcp_conn_request."""
        e = self.host
        cfg = e.config
        c = e.counters
        key = (local_ip, self.port, remote_ip, seg.src_port)
        existing = self.syn_queue.get(key)
        if existing is not None:
            self._check_req(now, existing, seg)
            return
        qlen = len(self.syn_queue)
        want_cookie = False
        if (cfg.tcp_syncookies == 2 or qlen >= self.backlog) and tw_isn is None:
            # tcp_syn_flood_action: cookies if allowed, else drop. A SYN that reopens a
            # TIME_WAIT entry is never answered with a cookie (its ISN is chosen).
            if cfg.tcp_syncookies:
                want_cookie = True
                c.inc(Mib.TcpExtTCPReqQFullDoCookies)
            else:
                c.inc(Mib.TcpExtTCPReqQFullDrop)
                c.inc(Mib.TcpExtListenDrops)
                log.debug("drop", reason="syn_queue_full", listener=self.name)
                return
        if self._accept_queue_full():
            c.inc(Mib.TcpExtListenOverflows)
            c.inc(Mib.TcpExtListenDrops)
            log.debug("drop", reason="accept_queue_full", listener=self.name)
            return
        if not want_cookie and not cfg.tcp_syncookies and \
                cfg.tcp_max_syn_backlog - qlen < (cfg.tcp_max_syn_backlog >> 2):
            # Keep the last quarter of the queue for proven peers (tcp_conn_request).
            c.inc(Mib.TcpExtListenDrops)
            log.debug("drop", reason="syn_queue_reserved", listener=self.name)
            return
        if cfg.tcp_tw_recycle and not want_cookie and tw_isn is None \
                and not e.peer_is_proven(now, remote_ip, seg.options.ts_val):
            # tcp_tw_recycle (Linux < 4.12): per-host PAWS on the SYN, which drops the
            # SYNs of a second client behind the same NAT whose clock is behind the first's.
            c.inc(Mib.TcpExtPAWSPassive)  # LINUX_MIB_PAWSPASSIVEREJECTED
            return
        req = self._make_request(now, local_ip, remote_ip, seg)
        if not want_cookie and (seg.options.fastopen is not None or seg.payload) \
                and self._try_fastopen(now, req, seg):
            return  # a Fast Open child (never with syncookies: tcp_conn_request)
        if want_cookie:
            req.iss, req.snd_mss = syncookies.cookie_init_sequence(
                e.cookie_secrets, now, remote_ip, seg.src_port, local_ip, self.port, seg.seq,
                req.snd_mss)
            req.from_cookie = True
            self.last_overflow = now
            c.inc(Mib.TcpExtSyncookiesSent)
            self._send_synack(now, req)
            return
        if tw_isn is not None:
            req.iss = tw_isn
        self.syn_queue[key] = req
        req.expires = now + TCP_TIMEOUT_INIT
        self._timers.push(req.expires, key)
        self._send_synack(now, req)

    def fastopen_max_qlen(self) -> int:
        cfg = self.host.config
        return fastopen.listener_queue_len(cfg.tcp_fastopen, self.sockopts.fastopen,
                                           self.backlog, cfg.somaxconn)

    def _try_fastopen(self, now: float, req: RequestSock, seg: TcpSegment) -> bool:
        """tcp_try_fastopen: a cookie request gets a cookie on the SYN-ACK of an ordinary
        handshake; a valid cookie (or none, with 0x200) makes the connection at once.
        False: go on with the ordinary handshake (``req`` then says what the SYN-ACK
        carries). The SYN's data is acknowledged only by a Fast Open child's SYN-ACK."""
        e = self.host
        c = e.counters
        cfg = e.config
        foc = seg.options.fastopen
        if foc is not None and not foc:
            c.inc(Mib.TcpExtTCPFastOpenCookieReqd)
        if not fastopen.server_enabled(cfg.tcp_fastopen) or not self._fastopen_queue_ok():
            return False
        keys = e.fastopen_keys()
        req.fastopen_exp = seg.options.fastopen_exp
        alt_key = False
        if not cfg.tcp_fastopen & fastopen.TFO_SERVER_COOKIE_NOT_REQD:
            if foc is None:
                return False
            if not foc:
                req.fastopen_cookie = keys.cookie(req.remote_ip, req.local_ip)
                return False
            check = keys.check(foc, req.remote_ip, req.local_ip)
            if not check.valid:
                c.inc(Mib.TcpExtTCPFastOpenPassiveFail)
                req.fastopen_cookie = keys.cookie(req.remote_ip, req.local_ip)
                return False
            alt_key = check.alt_key
        child = Connection(e, req.local_ip, req.local_port, req.remote_ip, req.remote_port,
                           req.sockopts, now)
        self.register(child)
        if alt_key:
            c.inc(Mib.TcpExtTCPFastOpenPassiveAltKey)
        c.inc(Mib.TcpExtTCPFastOpenPassive)
        c.inc(Mib.TcpPassiveOpens)
        child.adopt_fastopen(req, seg, now,
                             keys.cookie(req.remote_ip, req.local_ip) if alt_key else None,
                             req.fastopen_exp)
        self.fastopen_pending.append(child)
        self.accept_queue.append(child)
        log.debug("fastopen", conn=child.name, data=len(seg.payload))
        e.wake(self)
        return True

    def _fastopen_queue_ok(self) -> bool:
        """tcp_fastopen_queue_check: room in the Fast Open queue of this listener."""
        max_qlen = self.fastopen_max_qlen()
        if not max_qlen:
            return False
        self.fastopen_pending = [conn for conn in self.fastopen_pending
                                 if conn.state == State.SYN_RECV]
        if len(self.fastopen_pending) >= max_qlen:
            self.host.counters.inc(Mib.TcpExtTCPFastOpenListenOverflow)
            return False
        return True

    def _make_request(self, now: float, local_ip: bytes, remote_ip: bytes,
                      seg: TcpSegment) -> RequestSock:
        e = self.host
        neg = peer_offer(e.config, self.sockopts, e.mss_for(remote_ip), seg.options)
        return self._request(now, local_ip, remote_ip, seg,
                             e.isn.isn(now, local_ip, self.port, remote_ip, seg.src_port),
                             seg.seq, neg)

    def _request(self, now: float, local_ip: bytes, remote_ip: bytes, seg: TcpSegment,
                 iss: int, irs: int, neg: Negotiated, *,
                 from_cookie: bool = False) -> RequestSock:
        """A SYN-queue entry (or a cookie's rebuilt one) for what the handshake agreed."""
        return RequestSock(
            local_ip=local_ip, local_port=self.port, remote_ip=remote_ip,
            remote_port=seg.src_port, iss=iss, irs=irs, snd_mss=neg.snd_mss,
            advmss=neg.advmss, snd_wscale=neg.snd_wscale, rcv_wscale=neg.rcv_wscale,
            sack_ok=neg.sack_ok, ts_ok=neg.ts_ok, ts_recent=seg.options.ts_val or 0,
            ts_offset=self.host.isn.ts_offset(local_ip, remote_ip), rcv_wnd=neg.rcv_wnd,
            sockopts=self.sockopts.copy(), created=now, from_cookie=from_cookie,
            ecn_ok=not from_cookie and ecn.server_accepts_ecn(
                self.host.config, seg.flags & (ECE | CWR) == ECE | CWR, seg.ecn))

    def _send_synack(self, now: float, req: RequestSock) -> None:
        """tcp_make_synack: options in Linux's order, window never scaled."""
        e = self.host
        ts_val = None
        if req.ts_ok:
            ts_val = int(now * 1000) & 0xFFFFFFFF
            if req.from_cookie:
                # cookie_init_timestamp: wscale and SACK ride in TSval's low bits.
                ts_val = syncookies.encode_ts_options(
                    ts_val, req.snd_wscale, req.sack_ok, False)
            ts_val = (ts_val + req.ts_offset) & 0xFFFFFFFF
        seg = syn_segment(self.port, req.remote_port, req.iss, seq_add(req.irs, 1),
                          rcv_wnd=req.rcv_wnd, mss=req.advmss, rcv_wscale=req.rcv_wscale,
                          ts_val=ts_val, ts_ecr=req.ts_recent, sack=req.sack_ok,
                          wscale=req.snd_wscale is not None)
        seg.options.fastopen, seg.options.fastopen_exp = req.fastopen_cookie, req.fastopen_exp
        if req.ecn_ok and not req.from_cookie:
            seg.flags |= ECE  # tcp_ecn_make_synack
        req.synack_sent = now
        e.emit(req.local_ip, req.remote_ip, seg)

    # ------------------------------------------------------------------ ACK

    def on_segment(self, now: float, remote_ip: bytes, local_ip: bytes,
                   seg: TcpSegment) -> None:
        """A segment for the listening socket that is not a plain SYN (tcp_v4_do_rcv on a
        LISTEN socket and tcp_check_req for SYN-queue entries)."""
        key = (local_ip, self.port, remote_ip, seg.src_port)
        req = self.syn_queue.get(key)
        if req is not None:
            self._check_req(now, req, seg)
            return
        self._no_request(now, remote_ip, local_ip, seg, seq_add(seg.seq, -1))

    def _no_request(self, now: float, remote_ip: bytes, local_ip: bytes,
                    seg: TcpSegment, peer_isn: int) -> None:
        """tcp_v4_do_rcv on the LISTEN socket itself: a valid cookie ACK completes a
        connection, a RST is dropped, anything else is answered with RST. ``peer_isn`` is
        the ISN the cookie must have been made for."""
        e = self.host
        c = e.counters
        flags = seg.flags
        if flags & RST:
            c.inc(Mib.UstcpListenRst)  # nothing to reset (Linux: discarded in LISTEN)
            return
        if flags & ACK and not flags & SYN and e.config.tcp_syncookies and \
                now - self.last_overflow < TCP_SYNCOOKIE_VALID:
            req = self._cookie_check(now, local_ip, remote_ip, seg, peer_isn)
            if req is not None:
                self._complete(now, req, seg)
                return
        c.inc(Mib.UstcpListenUnexpected)
        e.send_reset_for(local_ip, remote_ip, seg)

    def _cookie_check(self, now: float, local_ip: bytes, remote_ip: bytes,
                      seg: TcpSegment, peer_isn: int) -> RequestSock | None:
        """cookie_v4_check: rebuild the request from a valid cookie ACK."""
        e = self.host
        c = e.counters
        cookie = seq_add(seg.ack, -1)
        mss = syncookies.cookie_check(e.cookie_secrets, now, remote_ip, seg.src_port,
                                      local_ip, self.port, peer_isn, cookie)
        if mss is None:
            c.inc(Mib.TcpExtSyncookiesFailed)
            return None
        c.inc(Mib.TcpExtSyncookiesRecv)
        opts = seg.options
        ts = sack = False
        snd_wscale: int | None = None
        if opts.ts_val is not None and e.config.tcp_timestamps:
            # cookie_v4_check: the options ride in our TSval, echoed back as TSecr.
            decoded = syncookies.decode_ts_options(
                (opts.ts_ecr - e.isn.ts_offset(local_ip, remote_ip)) & 0xFFFFFFFF,
                tcp_sack=bool(e.config.tcp_sack),
                tcp_window_scaling=bool(e.config.tcp_window_scaling))
            if decoded is None:
                return None  # cookie_timestamp_decode failed: Linux drops it, RST follows
            ts, sack, snd_wscale = True, decoded.sack_ok, decoded.snd_wscale
        neg = negotiate(e.config, self.sockopts, e.mss_for(remote_ip), ts=ts, sack=sack,
                        wscale=snd_wscale, mss=mss)
        return self._request(now, local_ip, remote_ip, seg, cookie, peer_isn, neg,
                             from_cookie=True)

    def _check_req(self, now: float, req: RequestSock, seg: TcpSegment) -> None:
        """tcp_check_req: the segment belongs to a half-open connection."""
        e = self.host
        c = e.counters
        flags = seg.flags
        if flags & SYN and not flags & (ACK | RST) and seg.seq == req.irs:
            # A retransmitted SYN: the SYN-ACK was lost, send it again. A SYN with another
            # ISN goes on to the window check below, as in tcp_check_req.
            c.inc(Mib.UstcpSynRetransmitted)
            self._send_synack(now, req)
            return
        if flags & ACK and seg.ack != seq_add(req.iss, 1):
            # Not this entry's SYN-ACK: tcp_check_req hands it back to the listener ("return
            # sk"), where it may be the ACK of a cookie sent for an earlier copy of the SYN
            # while the queue was full (cookie_v4_check); if not, it gets RST there. The
            # entry knows the peer's ISN: a duplicate ACK sent after data (seq past ISN + 1)
            # still completes, and the connection starts where the peer's data does.
            self._no_request(now, req.remote_ip, req.local_ip, seg, req.irs)
            return
        rcv_nxt = seq_add(req.irs, 1)
        end = seq_add(seg.seq, seg.seg_len)
        in_window = not after(seg.seq, seq_add(rcv_nxt, req.rcv_wnd)) and \
            not after(rcv_nxt, end if end != seg.seq else seg.seq)
        if not in_window:
            if not flags & RST:
                c.inc(Mib.UstcpReqOutOfWindow)
                self._send_synack(now, req)
            return
        if flags & RST or flags & SYN:
            if flags & SYN:
                e.send_reset_for(req.local_ip, req.remote_ip, seg)
            self._drop_request(req)
            c.inc(Mib.TcpAttemptFails)
            return
        if not flags & ACK:
            c.inc(Mib.UstcpDropNoAck)
            return
        if not seg.payload and not flags & FIN and req.num_timeout < self.defer_accept_retrans:
            # TCP_DEFER_ACCEPT: wait for data before completing (tcp_check_req).
            req.acked = True
            c.inc(Mib.TcpExtTCPDeferAcceptDrop)
            return
        self._complete(now, req, seg)

    def _complete(self, now: float, req: RequestSock, seg: TcpSegment) -> None:
        """The third ACK: a full connection into the accept queue, if there is room."""
        e = self.host
        c = e.counters
        if self._accept_queue_full():
            c.inc(Mib.TcpExtListenOverflows)
            c.inc(Mib.TcpExtListenDrops)
            log.debug("drop", reason="accept_queue_full", listener=self.name)
            if e.config.tcp_abort_on_overflow:
                self._drop_request(req)
                e.send_reset_for(req.local_ip, req.remote_ip, seg)
            # Otherwise the ACK is dropped; the SYN-ACK timer will try again.
            return
        self._drop_request(req)
        conn = Connection(e, req.local_ip, req.local_port, req.remote_ip, req.remote_port,
                          req.sockopts, now)
        conn.adopt_request(req, seg, now)
        self.register(conn)
        self.accept_queue.append(conn)
        c.inc(Mib.TcpPassiveOpens)
        if DEBUG.on:
            log.debug("accepted", conn=conn.name, queue=len(self.accept_queue))
        if seg.payload or seg.flags & ~(ACK | 0x08):
            conn.on_segment(now, seg)
        e.wake(self)

    def on_icmp_error(self, now: float, key: tuple[bytes, int, bytes, int], seq: int,
                      fatal: bool) -> bool:
        """tcp_req_err: an ICMP error about our SYN-ACK. It must quote the request's ISN
        (else TcpExtOutOfWindowIcmps); a fatal one drops the request (TcpExtListenDrops),
        others leave it to its SYN-ACK timer. False when no request matches."""
        req = self.syn_queue.get(key)
        if req is None:
            return False
        c = self.host.counters
        if seq != req.iss:
            c.inc(Mib.TcpExtOutOfWindowIcmps)
        elif fatal:
            self._drop_request(req)
            c.inc(Mib.TcpExtListenDrops)
        return True

    def _drop_request(self, req: RequestSock) -> None:
        self.syn_queue.pop(req.key, None)
        self.syn_queue = self._syn_queue_size.after_delete(self.syn_queue)

    # ------------------------------------------------------------------ timers

    def _live(self, key: tuple[bytes, int, bytes, int], when: float) -> bool:
        req = self.syn_queue.get(key)
        return req is not None and req.expires == when

    @property
    def deadline(self) -> float | None:
        return self._timers.next_deadline(self._live)

    def on_timer(self, now: float) -> None:
        """SYN-ACK retransmission (reqsk_timer_handler): 1, 2, 4, ... s; the entry goes
        after tcp_synack_retries retransmissions."""
        e = self.host
        retries = e.config.tcp_synack_retries
        for key in self._timers.pop_due(now, self._live):
            req = self.syn_queue[key]
            # syn_ack_recalc: with TCP_DEFER_ACCEPT, an ACKed entry waits quietly for
            # data until the deferral period ends.
            defer = self.defer_accept_retrans
            expire = req.num_timeout >= retries and (
                not defer or not req.acked or req.num_timeout >= defer)
            resend = not defer or not req.acked or req.num_timeout >= defer - 1
            if expire:
                self._drop_request(req)
                e.counters.inc(Mib.UstcpSynRecvTimeout)
                log.debug("syn_recv_timeout", listener=self.name,
                          peer=endpoint(req.remote_ip, req.remote_port))
                continue
            req.num_timeout += 1
            if resend:
                e.counters.inc(Mib.TcpRetransSegs)
                self._send_synack(now, req)
            req.expires = now + min(TCP_TIMEOUT_INIT * (1 << req.num_timeout), 120.0)
            self._timers.push(req.expires, key)

    def close(self, now: float) -> None:
        """close(2) on a listener (inet_csk_listen_stop): half-open entries vanish (their
        final ACK will meet a closed port and get RST); accepted but not yet accept()ed
        connections are reset."""
        if self.closed:
            return
        self.closed = True
        self.syn_queue.clear()
        self._timers.clear()
        while self.accept_queue:
            self.accept_queue.popleft().abort(now)
        self.host.unlisten(self.local_ip, self.port, self)
        self.host.wake(self)


