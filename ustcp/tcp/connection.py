"""One TCP connection: the state machine and the user calls.

Sans-IO: every method takes ``now`` and reports what it does through its host
(``host.Host``: segments to send, objects to wake, timers to arm). The structure follows
RFC 9293 3.10 ("Event Processing") with Linux's choices where the RFCs leave room; comments
name the Linux function a rule comes from (net/ipv4/tcp_input.c, tcp_output.c, tcp_timer.c).

The connection owns the state (:meth:`Connection.set_state`, Linux tcp_set_state), the
handshake's option negotiation, the segment-arrival checks (tcp_validate_incoming: PAWS,
sequence, RST, SYN), header prediction, the keepalive and FIN_WAIT2 timers, the close path
and the user calls. The send half is a :class:`~ustcp.tcp.sender.Sender` (``conn.snd``)
and the receive half a :class:`~ustcp.tcp.receiver.Receiver` (``conn.rcv``), as gVisor's
endpoint holds its snd and rcv: each alone writes its own fields.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import TYPE_CHECKING, Any, Final

import structlog

from ..debuglog import DEBUG
from ..mib import Mib
from ..pmtu import IPV6_MIN_MTU
from ..wire.addr import conn_name
from ..wire.tcp import ACK, CWR, ECE, FIN, PSH, RST, SYN, TcpSegment
from . import ack, ecn, recovery
from .ack import ACK_CHALLENGE, ACK_OK
from .fastopen import TFO_CLIENT_ENABLE
from .options import (
    TS_OPTION_LEN,
    SockOpts,
    clamped_advmss,
    initial_rcv_wnd,
    peer_offer,
    rcv_wscale_for,
)
from .receiver import DATA_FIN, Receiver
from .rto import RtoEstimator
from .rtxqueue import TxRecord
from .sender import SEND_STATES, Sender
from .seq import after, before, before_eq, between, seq_add, seq_diff
from .states import LEGAL, SYNCHRONIZED, State
from .timers import XmitTimer
from .timewait import TCP_TIMEWAIT_LEN, TimeWaitEntry

if TYPE_CHECKING:
    from .host import Host
    from .request import RequestSock

log = structlog.get_logger("ustcp.tcp")

TCP_PAWS_24DAYS: Final = 24 * 86400.0  # RFC 7323 5.5: an idle connection's TS.Recent expires
TCP_PAWS_WINDOW: Final = 1  # ticks of TSval lag PAWS tolerates
_DATA_STATES: Final = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
_RCV_DATA_STATES: Final = frozenset({State.ESTABLISHED, State.FIN_WAIT1, State.FIN_WAIT2})
# A read may send the ACK arrival left pending (tcp_cleanup_rbuf): also after the FIN
_READ_ACK_STATES: Final = _RCV_DATA_STATES | {State.CLOSE_WAIT}


class Connection:
    """A TCP connection from SYN_SENT (or SYN_RECV completed) until CLOSE."""

    def __init__(self, host: Host, local_ip: bytes, local_port: int, remote_ip: bytes,
                 remote_port: int, sockopts: SockOpts, now: float) -> None:
        cfg = host.config
        self.host = host
        self.config = cfg
        self.local_ip = local_ip
        self.local_port = local_port
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.key = (local_ip, local_port, remote_ip, remote_port)
        self.sockopts = sockopts
        self.state = State.CLOSE
        self.waiter: Any = None  # owned by the API layer
        self.error: OSError | None = None
        # sk_write_pending: a writer blocks until the handshake completes (Fast Open's
        # inet_wait_for_connect with data left over, sk_stream_wait_connect); the SYN-ACK's
        # ACK then waits for its data (set by the socket's user: the packetdrill runner)
        self.write_pending = False
        self.err_soft = 0  # sk_err_soft: the last ICMP error, reported if we time out
        self.orphan = False  # the application closed it (Linux SOCK_DEAD)
        self.orphan_counted = False  # counted against tcp_max_orphans
        # Opened with Fast Open after a blackhole pause: its FIN ends the pauses
        # (tp->syn_fastopen_ch)
        self.fastopen_after_pause = False
        self.rcv_shutdown = False  # SHUT_RD or close()
        self.created = now
        self.wscale_ok = False  # window scaling agreed (tcpi_options)
        self.last_oow_ack = -1e9  # the last out-of-window or challenge ACK we sent
        self.t_keepalive: float | None = None
        self.t_linger: float | None = None  # orphaned FIN_WAIT2 lifetime
        self.heap_when: float | None = None  # the host's bookkeeping
        self.segs_in = 0
        # The two halves (gVisor's snd/rcv): each alone writes its fields. The RTT
        # estimator is the sender's; the receiver reads it (ATO, autotuning).
        rtt = RtoEstimator()
        self.rcv = Receiver(host, self, sockopts, now, advmss=host.mss_for(remote_ip),
                            rtt=rtt, rto_value=self._rto_value)
        self.snd = Sender(host, self, self.rcv, rtt, self.key, sockopts, now)

    @property
    def name(self) -> str:
        return conn_name(self.key)

    # ------------------------------------------------------------------ set-up

    def start_connect(self, now: float, reused: TimeWaitEntry | None = None,
                      fastopen: bytes | None = None) -> None:
        """Active open (RFC 9293 3.10.1): send SYN, enter SYN_SENT. Taking over a
        TIME_WAIT entry (tcp_tw_reuse), start after everything the old incarnation sent
        and keep its TS.Recent (tcp_twsk_unique). ``fastopen`` (MSG_FASTOPEN's data, or
        b"" for TCP_FASTOPEN_CONNECT): a Fast Open SYN when tcp_fastopen allows the
        client (RFC 7413 4.1: the data rides in the SYN if a cookie is cached)."""
        e = self.host
        if reused is not None:
            iss = seq_add(reused.snd_nxt, 65535 + 2) or 1
            self.rcv.inherit_ts_recent(reused.ts_recent, reused.ts_recent_stamp)
        else:
            iss = e.isn.isn(now, self.local_ip, self.local_port, self.remote_ip,
                            self.remote_port)
        self.snd.init_seq(iss)
        cfg, opts = self.config, self.sockopts
        self.rcv.start_active(e.isn.ts_offset(self.local_ip, self.remote_ip),
                              # TCP_MAXSEG set before connect clamps the route's MSS
                              clamped_advmss(e.mss_for(self.remote_ip), opts),
                              rcv_wscale_for(cfg, opts),
                              lambda mss: initial_rcv_wnd(cfg, opts, mss))
        snd = self.snd
        blackhole = e.fastopen_blackhole
        if fastopen is not None and cfg.tcp_fastopen & TFO_CLIENT_ENABLE and \
                not blackhole.paused(now, cfg.tcp_fastopen_blackhole_timeout_sec):
            # Paused (tcp_fastopen_active_should_disable): a plain SYN, no option, no data
            snd.fastopen_req = True
            self.fastopen_after_pause = bool(blackhole.disable_times)
            if fastopen:  # what the SYN carries; the caller sends the rest once connected
                n = min(len(fastopen), snd.sndbuf(), snd.fastopen_syn_space())
                snd.snd_buf.append(fastopen[:n])
                snd.write_seq = seq_add(snd.write_seq, n)
                snd.psh_mark = snd.write_seq
        self.set_state(now, State.SYN_SENT)
        e.counters.inc(Mib.TcpActiveOpens)
        snd.start(now)

    def adopt_request(self, req: RequestSock, ack_seg: TcpSegment, now: float) -> None:
        """Passive open completed: take over a SYN-queue entry whose handshake the final
        ACK has just completed (Linux tcp_create_openreq_child, tcp_rcv_synrecv_state)."""
        self._take_request(req, now)
        self.rcv.replace_ts_recent(now, ack_seg)  # the ACK is acceptable (tcp_ack)
        self.snd.adopt(req.iss, req.sack_ok, req.snd_wscale or 0, req.snd_mss, ack_seg)
        self.snd.ecn_flags = ecn.TCP_ECN_OK if req.ecn_ok else 0
        if not req.num_timeout and req.synack_sent is not None:
            # tcp_synack_rtt_meas
            self.snd.rtt.on_sample(max(1, int((now - req.synack_sent) * 1e6)))
        self._init_transfer(now)
        self.snd.update_pacing_rate()  # tcp_rcv_state_process, SYN_RECV
        # The child is born in SYN_RECV (inet_csk_clone_lock) and the ACK makes it
        # ESTABLISHED: both show in the trace, as in Linux's inet_sock_set_state.
        self.set_state(now, State.SYN_RECV)
        self.set_state(now, State.ESTABLISHED)

    def adopt_fastopen(self, req: RequestSock, syn: TcpSegment, now: float,
                       cookie: bytes | None, exp: bool) -> None:
        """A Fast Open SYN with a valid cookie (tcp_fastopen_create_child): the connection
        exists at once, in SYN_RECV, its SYN's data readable; our SYN-ACK acknowledges the
        data and, when the cookie was made with the backup key, hands a fresh one."""
        rcv = self.rcv
        self._take_request(req, now)
        snd = self.snd
        snd.init_seq(req.iss)
        snd.peer_syn_options(req.sack_ok, req.snd_wscale or 0, req.snd_mss)
        snd.fastopen_child = True
        snd.syn_wscale_ok = self.wscale_ok
        snd.ecn_flags = ecn.TCP_ECN_OK if req.ecn_ok else 0
        snd.rtx.add(TxRecord(req.iss, seq_add(req.iss, 1), 1, now, syn=True), timed=False)
        snd.snd_nxt = seq_add(req.iss, 1)
        snd.simultaneous_syn(syn)  # the window is the SYN's, never scaled (RFC 7323 2.2)
        snd.max_window = snd.snd_wnd
        self._init_transfer(now)
        self.set_state(now, State.SYN_RECV)
        if syn.payload:
            rcv.add_syn_data(now, syn)
            snd.syn_data_acked = True
        snd.send_synack(now, self.wscale_ok, cookie, exp)
        rcv.ack_sent()

    def _take_request(self, req: RequestSock, now: float) -> None:
        """What a child's receive side takes from its request (tcp_create_openreq_child)."""
        self.wscale_ok = req.snd_wscale is not None
        self.rcv.start_passive(req.irs, req.ts_offset, req.advmss,
                               req.rcv_wscale if self.wscale_ok else 0, req.rcv_wnd,
                               req.ts_ok, req.ts_recent, now)

    def _init_transfer(self, now: float) -> None:
        """Buffers, windows and congestion state once synchronized (tcp_init_transfer)."""
        self.rcv.init_transfer(now, self.snd.mss)
        self.snd.init_transfer(now)
        if self.sockopts.keepalive:
            self.t_keepalive = now + self.keepalive_time

    # ------------------------------------------------------------------ user calls

    @property
    def readable(self) -> bool:
        return bool(len(self.rcv.rcv_buf)) or self.rcv.fin_received or self.error is not None \
            or self.state == State.CLOSE

    @property
    def _may_send(self) -> bool:
        """ESTABLISHED or CLOSE_WAIT, or a Fast Open child before the handshake's ACK
        (tcp_sendmsg: tcp_passive_fastopen may send in SYN_RECV)."""
        return self.state in _DATA_STATES or (self.snd.fastopen_child
                                              and self.state == State.SYN_RECV)

    @property
    def writable(self) -> bool:
        if self.error is not None or self.snd.fin_queued or self.state == State.CLOSE:
            return True
        return self._may_send and self.snd.send_space > 0

    def send(self, now: float, data: bytes | bytearray | memoryview, more: bool = False,
             eor: bool = False) -> int:
        """Queue application data; returns how many bytes were taken (0 when full).
        ``more``: MSG_MORE, ``eor``: MSG_EOR (Sender.write)."""
        self._raise_pending_error()
        if self.snd.fin_queued or not self._may_send:
            if self.state in (State.SYN_SENT, State.SYN_RECV):
                raise BlockingIOError(errno.EAGAIN, "connection not yet established")
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
        return self.snd.write(now, data, more, eor)

    def recv(self, now: float, max_bytes: int) -> bytes:
        """Read up to ``max_bytes``; ``b""`` at end of stream; BlockingIOError when empty."""
        if len(self.rcv.rcv_buf):
            data, ack_due = self.rcv.read(now, max_bytes, self.state in _READ_ACK_STATES)
            if ack_due:
                self.snd.send_ack(now)
            return data
        self._raise_pending_error()
        if self.rcv.fin_received or self.rcv_shutdown or self.state == State.CLOSE:
            return b""
        if self.state in (State.SYN_SENT, State.SYN_RECV):
            raise BlockingIOError(errno.EAGAIN, "connection not yet established")
        raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    def take_error(self) -> OSError | None:
        """The pending error, cleared as it is read (sock_error: SO_ERROR, and the error a
        read, write or connect reports once)."""
        err, self.error = self.error, None
        return err

    def _raise_pending_error(self) -> None:
        if self.error is not None:
            raise self.take_error()  # type: ignore[misc]

    def shutdown(self, now: float, how: int) -> None:
        """shutdown(2): SHUT_WR sends FIN after the queued data and keeps receiving."""
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self.rcv_shutdown = True
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            if self.state in (State.SYN_SENT,):
                self.finish(now)
            elif self.state in _DATA_STATES and not self.snd.fin_queued:
                self._queue_fin(now)
        self.host.wake(self)

    def close(self, now: float) -> None:
        """close(2): the application lets go. Unread data means RST (RFC 2525 2.17, Linux
        tcp_close); otherwise FIN after the queued data, and the connection lives on as an
        orphan until the close completes (or is reset over tcp_max_orphans)."""
        if self.orphan:
            return
        self.orphan = True
        self.rcv_shutdown = True
        e = self.host
        unread = self.rcv.discard()
        linger = self.sockopts.linger
        if self.state in (State.CLOSE, State.TIME_WAIT):
            return
        if self.state == State.SYN_SENT:
            self.finish(now)
        elif unread or (self.rcv.fin_received and self.rcv.ofo_fin is not None):
            e.counters.inc(Mib.TcpExtTCPAbortOnClose)
            self.snd.send_active_reset(now)
            self.finish(now)
        elif linger is not None and linger[0] and linger[1] == 0:
            e.counters.inc(Mib.TcpExtTCPAbortOnData)
            self.snd.send_active_reset(now)
            self.finish(now)
        elif e.orphan_count >= self.config.tcp_max_orphans:
            # tcp_close: the FIN goes first, then tcp_check_oom finds too many orphans and
            # the connection is reset and dropped at once.
            if self.state in _DATA_STATES and not self.snd.fin_queued:
                self._queue_fin(now)
            e.counters.inc(Mib.TcpExtTCPAbortOnMemory)
            self.snd.send_active_reset(now)
            self.finish(now)
        else:
            e.orphan_count += 1
            self.orphan_counted = True
            if self.state in _DATA_STATES and not self.snd.fin_queued:
                self._queue_fin(now)
            elif self.state == State.FIN_WAIT2:
                self.arm_linger(now)

    def abort(self, now: float) -> None:
        """close() with SO_LINGER {on, 0}: send RST, skip TIME_WAIT (Linux tcp_disconnect)."""
        if self.state not in (State.CLOSE, State.SYN_SENT, State.TIME_WAIT):
            self.snd.send_active_reset(now)
        self.orphan = True
        self.rcv.discard()
        if self.state != State.CLOSE:
            self.finish(now)

    def _queue_fin(self, now: float) -> None:
        """Queue our FIN behind the data (tcp_send_fin) and move on in the state diagram."""
        self.snd.queue_fin()
        self.set_state(now, State.FIN_WAIT1 if self.state == State.ESTABLISHED
                        else State.LAST_ACK)
        self.snd.push(now)

    # ------------------------------------------------------------------ state and helpers

    def set_state(self, now: float, new: State) -> None:
        """The one place the state changes (tcp_set_state); a change the state diagram
        (states.TRANSITIONS) does not have is a bug."""
        old = self.state
        if old == new:
            return
        if new not in LEGAL[old]:
            raise IllegalTransition(f"{self.name}: {old.name} -> {new.name}")
        self.state = new
        c = self.host.counters
        if new == State.ESTABLISHED:
            c.inc(Mib.TcpCurrEstab)
        elif old in (State.ESTABLISHED, State.CLOSE_WAIT) and new not in (
                State.ESTABLISHED, State.CLOSE_WAIT):
            c.dec(Mib.TcpCurrEstab)
        if DEBUG.on:  # the arguments cost more than the filtered call
            log.debug("state_change", conn=self.name, old=old.name, new=new.name,
                      t=round(now, 6))
        self.host.wake(self)

    def _rto_value(self) -> float:
        return self.snd.rto_value()

    def finish(self, now: float) -> None:
        """The connection is finished (tcp_done): forget it, stop every timer."""
        if self.state in (State.SYN_SENT, State.SYN_RECV):
            self.host.counters.inc(Mib.TcpAttemptFails)
        self.set_state(now, State.CLOSE)
        self.t_keepalive = self.t_linger = None
        self.snd.stop_timers()
        self.rcv.stop_delack()
        if self.orphan_counted:
            self.orphan_counted = False
            self.host.orphan_count -= 1
        self.host.forget(self.key, self)
        self.host.wake(self)

    def _set_error(self, err: int) -> None:
        if err == errno.ETIMEDOUT and self.err_soft:
            err = self.err_soft  # tcp_write_err: the ICMP error that explains the timeout
        self.error = OSError(err, os.strerror(err)) if err not in _ERRNO_TYPES \
            else _ERRNO_TYPES[err](err, os.strerror(err))

    # ------------------------------------------------------------------ timers

    @property
    def deadline(self) -> float | None:
        if self.state == State.CLOSE:
            return None
        best: float | None = None
        snd = self.snd
        for t in (snd.t_rto, self.rcv.t_delack, snd.t_probe0, self.t_keepalive, self.t_linger,
                  snd.pacing_timer):
            if t is not None and (best is None or t < best):
                best = t
        return best

    def on_timer(self, now: float) -> None:
        if self.rcv.t_delack is not None and self.rcv.t_delack <= now:
            self._delack_timer(now)
        snd = self.snd
        if snd.t_rto is not None and snd.t_rto <= now:
            kind = snd.take_xmit_timer()
            if kind == XmitTimer.LOSS_PROBE:
                recovery.send_loss_probe(snd, now)
            elif kind == XmitTimer.REO_TIMEOUT:
                recovery.rack_reo_timeout(snd, now)
            else:
                self._retransmit_timer(now)
        if snd.t_probe0 is not None and snd.t_probe0 <= now:
            self._probe_timer(now)
        if self.t_keepalive is not None and self.t_keepalive <= now:
            self.t_keepalive = None
            self._keepalive_timer(now)
        if self.t_linger is not None and self.t_linger <= now:
            self.t_linger = None
            if self.state == State.FIN_WAIT2:
                self.host.counters.inc(Mib.TcpExtTCPAbortOnLinger)
                self.finish(now)
        if snd.pacing_timer is not None and snd.pacing_timer <= now:
            snd.pacing_timer = None  # tcp_pace_kick
            self.tsq_write(now)

    def tsq_write(self, now: float) -> None:
        """tcp_tsq_write, run by the pacing timer and when a qdisc released a packet of a
        connection TCP Small Queues held back: retransmit what is lost if cwnd allows, then
        send new data."""
        snd = self.snd
        if self.state not in SEND_STATES:
            return
        if snd.rtx.lost_out > snd.rtx.retrans_out and \
                snd.ccs.snd_cwnd > snd.rtx.in_flight():
            recovery.xmit_retransmit_queue(snd, now)
        snd.push(now)

    def _delack_timer(self, now: float) -> None:
        """tcp_delack_timer_handler: send the delayed ACK and adapt ATO."""
        if self.state == State.CLOSE:
            self.rcv.stop_delack()
        elif self.rcv.delack_timer():
            self.snd.send_ack(now)

    def _retransmit_timer(self, now: float) -> None:
        """The RTO fired: the sender retransmits, or it has tried long enough and the
        connection ends (tcp_retransmit_timer, tcp_write_err)."""
        if not self.snd.retransmit_timer(now):
            return
        self.host.counters.inc(Mib.TcpExtTCPAbortOnTimeout)
        if self.orphan and self.state != State.SYN_SENT:
            self.snd.send_active_reset(now)
        self._set_error(errno.ETIMEDOUT)
        log.info("timeout", conn=self.name, state=self.state.name,
                 retransmits=self.snd.retransmits)
        self.finish(now)

    def _probe_timer(self, now: float) -> None:
        """The persist timer fired: the sender probes the window, or the probes ran out
        and the connection ends (tcp_probe_timer)."""
        if self.snd.probe_timer(now):
            self.host.counters.inc(Mib.TcpExtTCPAbortOnTimeout)
            self._set_error(errno.ETIMEDOUT)
            self.finish(now)

    def _keepalive_timer(self, now: float) -> None:
        """SO_KEEPALIVE probes (tcp_keepalive_timer), RFC 9293 3.8.4."""
        if not self.sockopts.keepalive or self.state != State.ESTABLISHED:
            return
        idle = now - max(self.rcv.last_data_recv, self.snd.last_ack_recv)
        keepalive_time = self.keepalive_time
        if self.snd.rtx.packets_out or seq_diff(self.snd.write_seq, self.snd.snd_nxt) > 0 \
                or idle < keepalive_time:
            self.t_keepalive = now + max(keepalive_time - idle, 1.0)
            return
        if self.snd.probes_out >= (self.sockopts.keepcnt or self.config.tcp_keepalive_probes):
            self.snd.send_active_reset(now)
            self._set_error(errno.ETIMEDOUT)
            self.finish(now)
            return
        self.snd.keepalive_probe(now)
        self.t_keepalive = now + (self.sockopts.keepintvl or self.config.tcp_keepalive_intvl)

    @property
    def keepalive_time(self) -> int:
        """TCP_KEEPIDLE, else net.ipv4.tcp_keepalive_time (keepalive_time_when)."""
        return self.sockopts.keepidle or self.config.tcp_keepalive_time

    # ------------------------------------------------------------------ socket options

    def keepalive_changed(self, now: float) -> None:
        """SO_KEEPALIVE or TCP_KEEPIDLE changed: re-arm the keepalive timer for what is left
        of the idle time, or stop it (tcp_set_keepalive, tcp_sock_set_keepidle_locked)."""
        if not self.sockopts.keepalive:
            self.t_keepalive = None
        elif self.state not in (State.CLOSE, State.LISTEN, State.SYN_SENT, State.SYN_RECV):
            elapsed = now - max(self.rcv.last_data_recv, self.snd.last_ack_recv)
            self.t_keepalive = now + max(self.keepalive_time - elapsed, 0.0)

    def push_pending(self, now: float, nagle_push: bool) -> None:
        """TCP_NODELAY set or TCP_CORK cleared: send what Nagle or the cork held back
        (tcp_push_pending_frames). ``nagle_push`` (TCP_NAGLE_PUSH: NODELAY set, or the
        cork removed with NODELAY on) sends even what a MSG_MORE write held back."""
        self.snd.nagle_push = self.snd.nagle_push or nagle_push
        self.snd.push(now)

    def set_quickack(self, now: float, value: int) -> None:
        """TCP_QUICKACK (__tcp_sock_set_quickack): 0 enters pingpong (delayed ACKs); any other
        value leaves it and sends an ACK that is due (tcp_cleanup_rbuf with ICSK_ACK_PUSHED);
        an even value re-enters pingpong after that ACK."""
        send = self.rcv.quickack(value, self.state in (State.ESTABLISHED, State.CLOSE_WAIT))
        if not value:
            return
        if send:
            self.snd.send_ack(now)

    def arm_linger(self, now: float) -> None:
        """An orphan in FIN_WAIT2 waits tcp_fin_timeout (or TCP_LINGER2) for the peer's FIN,
        then is dropped (tcp_rcv_state_process, tcp_keepalive_timer)."""
        linger2 = self.sockopts.linger2
        if linger2 is not None and linger2 < 0:
            self.finish(now)
            return
        self.t_linger = now + (linger2 if linger2 else self.config.tcp_fin_timeout)

    # ------------------------------------------------------------------ input

    def on_segment(self, now: float, seg: TcpSegment) -> None:
        """A segment for this connection (RFC 9293 3.10.7)."""
        self.segs_in += 1
        state = self.state
        if self.snd.ecn_flags & ecn.TCP_ECN_OK and seg.payload and state != State.SYN_SENT:
            self._ecn_rcv(seg)
        if state == State.ESTABLISHED and self._header_predicted(seg):
            self._rcv_predicted(now, seg)
        elif state == State.SYN_SENT:
            self._rcv_syn_sent(now, seg)
        elif state != State.CLOSE:
            self._rcv_synchronized(now, seg)

    def _ecn_rcv(self, seg: TcpSegment) -> None:
        """The peer's CWR ends our ECE echo (tcp_ecn_accept_cwr); a CE mark starts it,
        with quick ACKs, since the sender may have a tiny cwnd (tcp_ecn_check_ce)."""
        snd = self.snd
        if seg.flags & CWR:
            snd.ecn_flags &= ~ecn.TCP_ECN_DEMAND_CWR
            self.rcv.ack_now = True
        if seg.ecn == ecn.CE:
            if not snd.ecn_flags & ecn.TCP_ECN_DEMAND_CWR:
                self.rcv.enter_quickack()
                snd.ecn_flags |= ecn.TCP_ECN_DEMAND_CWR
            snd.ecn_flags |= ecn.TCP_ECN_SEEN
        elif seg.ecn:
            snd.ecn_flags |= ecn.TCP_ECN_SEEN

    def _header_predicted(self, seg: TcpSegment) -> bool:
        """Header prediction (Van Jacobson's, Linux tcp_rcv_established's fast path): the
        segment is the next one in order, carries only ACK (and PSH), leaves the window
        as it was, holds no SACK blocks and passes PAWS, its data fits the window and the
        buffer, and nothing is out of order. Such a segment needs none of the acceptability
        checks."""
        rcv = self.rcv
        if seg.flags & ~PSH != ACK or seg.seq != rcv.rcv_nxt or rcv.rcv_buf.ofo:
            return False
        snd = self.snd
        if (seg.window << snd.snd_wscale) != snd.snd_wnd or not snd.snd_wnd:
            return False
        opts = seg.options
        if opts.sack_blocks:
            return False
        if rcv.ts_ok and (opts.ts_val is None or seq_diff(opts.ts_val, rcv.ts_recent) < 0):
            return False
        if after(seg.ack, snd.snd_nxt) or before(seg.ack, snd.snd_una):
            return False
        # Its data fits the window and the buffer (Linux checks sk_forward_alloc); else
        # the slow path applies the receiver's _rcv_room.
        size = len(seg.payload)
        return size <= rcv.receive_window() and len(rcv.rcv_buf) + size <= rcv.rcvbuf

    def _rcv_predicted(self, now: float, seg: TcpSegment) -> None:
        """The fast path: the ACK as always, then the data straight onto the queue."""
        ack.process_ack(self.snd, now, seg)  # never ACK_DROP here: the ACK was predicted
        if seg.payload:
            self.rcv.queue_in_order(now, seg, seg.payload)
        self.snd.push(now)
        self.snd.check_space(now)  # tcp_data_snd_check
        self._ack_snd_check(now)

    def _rcv_syn_sent(self, now: float, seg: TcpSegment) -> None:
        """RFC 9293 3.10.7.3 (tcp_rcv_synsent_state_process)."""
        flags = seg.flags
        e = self.host
        snd = self.snd
        if flags & ACK and not (after(seg.ack, snd.iss) and before_eq(seg.ack, snd.snd_nxt)):
            if not flags & RST:
                e.send_reset_for(self.local_ip, self.remote_ip, seg)
            return
        ecr = seg.options.ts_ecr
        if flags & ACK and ecr and self.config.tcp_timestamps and snd.rtx.records:
            # The echo must fall between our first SYN's TSval and now, or the SYN-ACK
            # answers something else: RST (tcp_rcv_synsent_state_process, PAWSActive).
            rcv = self.rcv
            if not between(rcv.ts_now(snd.rtx.records[0].first_xmit), ecr, rcv.ts_now(now)):
                e.counters.inc(Mib.TcpExtPAWSActive)
                if not flags & RST:
                    e.send_reset_for(self.local_ip, self.remote_ip, seg)
                return
        if flags & RST:
            if flags & ACK:
                self._set_error(errno.ECONNREFUSED)
                log.info("connection_refused", conn=self.name)
                self.finish(now)
            return
        if not flags & SYN:
            return
        opts = seg.options
        rcv = self.rcv
        rcv.init_seq(seg.seq)
        cfg = self.config
        # The window and MSS we announced went out with our SYN; the rest is agreed now.
        neg = peer_offer(cfg, self.sockopts, self.host.mss_for(self.remote_ip), opts)
        rcv.set_timestamps(neg.ts_ok, opts.ts_val or 0, now)
        self.wscale_ok = neg.snd_wscale is not None
        if not self.wscale_ok:
            rcv.no_wscale()
        snd.peer_syn_options(neg.sack_ok, neg.snd_wscale or 0, neg.snd_mss)
        if flags & ACK and (not flags & ECE or flags & CWR):
            snd.ecn_flags = 0  # tcp_ecn_rcv_synack: the server did not agree
        if flags & ACK:
            # SYN-ACK: our SYN is acknowledged (RFC 9293 3.10.7.3 fourth check); a SYN's
            # window is never scaled (RFC 7323 2.2).
            # All of our SYN's data, or what is left of it goes again (tcp_rcv_fastopen_synack)
            syn_data_acked = bool(snd.fastopen_syn_data) and not before(
                seg.ack, seq_add(snd.iss, 1 + snd.fastopen_syn_data))
            ack.clean_rtx(snd, now, seg.ack, seg, snd.snd_una)
            snd.handshake_acked(seg, seg.window, synsent=True)
            snd.update_pacing_rate()  # tcp_ack's tcp_cong_control on the SYN-ACK
            self._init_transfer(now)
            self.set_state(now, State.ESTABLISHED)
            fastopen = snd.fastopen_req
            if fastopen and snd.rcv_fastopen_synack(now, seg, syn_data_acked):
                recovery.non_congestion_loss_retransmit(snd, now)
                snd.arm_rto(now)  # tcp_rearm_rto
            else:
                if fastopen and (seg.payload or flags & FIN):
                    # Data (and a FIN) in a Fast Open SYN-ACK is taken (tcp_fastopen_add_skb)
                    rcv.take_syn_data(now, seg)
                    self.host.wake(self)
                    if flags & FIN:
                        self._fin_state(now)
                # tcp_rcv_synsent_state_process: quickack mode and a saved ACK only for a
                # waiting writer, TCP_DEFER_ACCEPT or an interactive socket; else the ACK
                # goes now and ATO stays 0 until data comes (a FIN first is ACKed at once)
                if rcv.pingpong or self.write_pending or self.sockopts.defer_accept:
                    rcv.save_synack_ack(now)
                else:
                    snd.send_ack(now)  # else the data sent again carries the ACK
            snd.push(now)
        else:
            # Simultaneous open (RFC 9293 3.10.7.3, figure 8): SYN_RECV, send SYN-ACK.
            snd.simultaneous_syn(seg)
            self.set_state(now, State.SYN_RECV)
            snd.send_synack(now, self.wscale_ok)

    def _send_dupack_limited(self, now: float, seg: TcpSegment) -> None:
        """ACK an unacceptable segment, rate-limited for pure ACKs, a lone FIN and SYNs
        (tcp_send_dupack, tcp_oow_rate_limited with tcp_invalid_ratelimit); old data or
        a FIN again is D-SACKed (``Receiver.dupack``)."""
        if not seg.payload or seg.flags & SYN:
            if now - self.last_oow_ack < self.config.tcp_invalid_ratelimit / 1000.0:
                self.host.counters.inc(Mib.TcpExtTCPACKSkippedSeq)
                return
            self.last_oow_ack = now
        self.rcv.dupack(seg, self._dsack_ok())
        self.snd.send_ack(now)

    def _dsack_ok(self) -> bool:
        """D-SACKs may be sent: SACK negotiated and tcp_dsack on (tcp_dsack_set)."""
        return self.snd.sack_ok and bool(self.config.tcp_dsack)

    def send_challenge_ack(self, now: float) -> None:
        """RFC 5961 challenge ACK (tcp_send_challenge_ack), per-socket and global limits."""
        c = self.host.counters
        if now - self.last_oow_ack < self.config.tcp_invalid_ratelimit / 1000.0:
            c.inc(Mib.TcpExtTCPACKSkippedChallenge)
            return
        if not self.host.challenge_ack_allowed(now):
            c.inc(Mib.TcpExtTCPChallengeACK)
            return
        self.last_oow_ack = now
        c.inc(Mib.TcpExtTCPChallengeACK)
        self.snd.send_ack(now)

    def _paws_reject(self, now: float, seg: TcpSegment) -> bool:
        """RFC 7323 5.3 R1: a TSval older than TS.Recent marks an old duplicate, unless
        TS.Recent was never set, is older than 24 days (5.5), lags by one tick only
        (TCP_PAWS_WINDOW), or the segment is a reordered duplicate ACK (tcp_paws_discard,
        tcp_disordered_ack)."""
        opts = seg.options
        if not self.rcv.ts_ok or opts.ts_val is None or not self.rcv.ts_recent:
            return False
        lag = seq_diff(self.rcv.ts_recent, opts.ts_val)
        if lag <= TCP_PAWS_WINDOW or now - self.rcv.ts_recent_stamp > TCP_PAWS_24DAYS:
            return False
        disordered_ack = (seg.flags & (ACK | SYN | FIN | RST) == ACK and not seg.payload
                          and seg.seq == self.rcv.rcv_nxt and seg.ack == self.snd.snd_una
                          and (seg.window << self.snd.snd_wscale) == self.snd.snd_wnd
                          and lag <= self.snd.rto_value() * 1024)
        return not disordered_ack

    def _rcv_synchronized(self, now: float, seg: TcpSegment) -> None:
        flags = seg.flags
        c = self.host.counters
        # 1. PAWS (RFC 7323 5.3), not for RST (tcp_validate_incoming).
        if not flags & RST and self._paws_reject(now, seg):
            c.inc(Mib.TcpExtPAWSEstab)
            self._send_dupack_limited(now, seg)
            return
        # 2. Sequence number acceptable?
        if not self.rcv.sequence_ok(seg):
            if flags & RST:
                c.inc(Mib.UstcpDropRstOutOfWindow)
                return
            if flags & SYN:
                c.inc(Mib.TcpInErrs)
                c.inc(Mib.TcpExtTCPSYNChallenge)
                self.send_challenge_ack(now)
                return
            c.inc(Mib.UstcpDropOutOfWindow)
            self._send_dupack_limited(now, seg)
            return
        # 3. RST (RFC 5961 3.2): only an exact match resets; else a challenge ACK.
        if flags & RST:
            if seg.seq == self.rcv.rcv_nxt:
                self._reset_by_peer(now)
            else:
                self.send_challenge_ack(now)
            return
        # 4. SYN in a synchronized state (RFC 5961 4.2): challenge ACK; but in a
        # simultaneous open, the peer's SYN-ACK repeating the SYN already taken is the
        # handshake's ACK (tcp_validate_incoming's exception): it passes, and its SYN is a
        # duplicate (D-SACKed below).
        if flags & SYN and not (
                self.state == State.SYN_RECV and not self.snd.fastopen_child
                and flags & ACK and seg.seg_len == 1
                and seq_add(seg.seq, 1) == self.rcv.rcv_nxt and seg.ack == self.snd.snd_nxt):
            c.inc(Mib.TcpExtTCPSYNChallenge)
            self.send_challenge_ack(now)
            return
        # 5. ACK.
        if not flags & ACK:
            c.inc(Mib.UstcpDropNoAck)
            return
        if self.state == State.SYN_RECV:
            if not (after(seg.ack, self.snd.snd_una) and before_eq(seg.ack, self.snd.snd_nxt)):
                self.host.send_reset_for(self.local_ip, self.remote_ip, seg)
                return
            snd = self.snd
            ack.clean_rtx(snd, now, seg.ack, seg, snd.snd_una)
            snd.handshake_acked(seg, seg.window << snd.snd_wscale, synsent=False)
            if not snd.fastopen_child:  # a Fast Open child began its transfer at birth
                self._init_transfer(now)
            self.set_state(now, State.ESTABLISHED)
        verdict = ack.process_ack(self.snd, now, seg)
        if verdict != ACK_OK:
            if verdict == ACK_CHALLENGE:
                self.send_challenge_ack(now)  # RFC 5961 5.2
            return
        self._state_after_ack(now)
        if self.state == State.CLOSE:
            return
        # 6/7. Data and FIN.
        end = seq_add(seg.seq, len(seg.payload))
        if self.rcv_shutdown and self.state in (State.FIN_WAIT1, State.FIN_WAIT2) \
                and seg.payload and after(end, self.rcv.rcv_nxt):
            # Data for a socket that can no longer read it (tcp_rcv_state_process): the
            # connection is reset (tcp_reset) and the segment answered as one nobody
            # wants (tcp_v4_do_rcv's tcp_v4_send_reset: SEQ = its ACK, no ACK bit).
            c.inc(Mib.TcpExtTCPAbortOnData)
            self.host.send_reset_for(self.local_ip, self.remote_ip, seg)
            self._set_error(errno.ECONNRESET)
            self.finish(now)
            return
        if (seg.payload or flags & (FIN | SYN)) and self.rcv.data_queue(
                now, seg, self.state in _RCV_DATA_STATES, self._dsack_ok()) == DATA_FIN:
            self._fin_state(now)
        self.snd.push(now)
        self.snd.check_space(now)  # tcp_data_snd_check
        self._ack_snd_check(now)

    def _state_after_ack(self, now: float) -> None:
        """Transitions driven by the ACK of our FIN (RFC 9293 3.10.7.4)."""
        if not self.snd.fin_acked:
            return
        if self.state == State.FIN_WAIT1:
            self.set_state(now, State.FIN_WAIT2)
            self.snd.stop_rto()
            if self.orphan:
                self.arm_linger(now)
        elif self.state == State.CLOSING:
            self.enter_time_wait(now)
        elif self.state == State.LAST_ACK:
            self.finish(now)

    def _reset_by_peer(self, now: float) -> None:
        """A valid RST (RFC 9293 3.10.7.4, Linux tcp_reset): the error as BSD gives it
        (ECONNREFUSED only for a connect in SYN_SENT; a Fast Open child in SYN_RECV is
        reset). Unsent data goes; data already received stays readable before the error,
        as tcp_reset purges the write queue only."""
        if self.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            self.host.counters.inc(Mib.TcpEstabResets)
        if self.state == State.SYN_SENT:
            self._set_error(errno.ECONNREFUSED)
        elif self.state == State.CLOSE_WAIT:
            self._set_error(errno.EPIPE)
        elif not self.orphan:
            self._set_error(errno.ECONNRESET)
        log.info("reset_received", conn=self.name, state=self.state.name)
        if self.orphan:
            self.rcv.discard()  # nobody will read it
        self.finish(now)

    def enter_time_wait(self, now: float) -> None:
        """Hand the connection to the TIME_WAIT table (tcp_time_wait) and finish it."""
        if State.TIME_WAIT not in LEGAL[self.state]:
            raise IllegalTransition(f"{self.name}: {self.state.name} -> TIME_WAIT")
        rcv = self.rcv
        self.host.enter_time_wait(now, TimeWaitEntry(
            key=self.key, snd_nxt=self.snd.snd_nxt, rcv_nxt=rcv.rcv_nxt,
            rcv_wnd=min(rcv.rcv_wnd >> rcv.rcv_wscale, 65535), rcv_wscale=rcv.rcv_wscale,
            ts_ok=rcv.ts_ok, ts_recent=rcv.ts_recent, ts_recent_stamp=rcv.ts_recent_stamp,
            ts_offset=rcv.ts_offset, last_seen=now - 1.0, expires=now + TCP_TIMEWAIT_LEN),
            self.snd.rtt.rto)
        self.finish(now)

    # ------------------------------------------------------------------ receiving data

    def _fin_state(self, now: float) -> None:
        """The peer's FIN is in order (tcp_fin): where it moves the state."""
        if self.fastopen_after_pause:
            self.host.fastopen_blackhole.clear()  # tcp_fastopen_active_disable_ofo_check
        if self.state == State.ESTABLISHED:
            self.set_state(now, State.CLOSE_WAIT)
            self.rcv.set_pingpong(True)
        elif self.state == State.FIN_WAIT1:
            # Simultaneous close (RFC 9293 3.6): our FIN is not yet acknowledged.
            self.rcv.schedule_ack_now()
            self.set_state(now, State.CLOSING)
        elif self.state == State.FIN_WAIT2:
            self.snd.send_ack(now)
            self.enter_time_wait(now)

    def _ack_snd_check(self, now: float) -> None:
        """Send the ACK now or delay it (__tcp_ack_snd_check, the receiver decides)."""
        if self.state != State.CLOSE and self.rcv.ack_snd_check(now):
            self.snd.send_ack(now)

    # ------------------------------------------------------------------ introspection

    # ------------------------------------------------------------------ ICMP errors

    def on_icmp_error(self, now: float, seq: int, err: int) -> None:
        """An ICMP error quoting our segment ``seq`` (tcp_v4_err, tcp_v6_err; RFC 5927 4.1):
        outside SND.UNA..SND.NXT it is dropped (TcpExtOutOfWindowIcmps). During the
        handshake any error ends the attempt with its errno, as Linux does (RFC 5461 4.1:
        connect() fails at once, EHOSTUNREACH, ECONNREFUSED); later it is only remembered
        (sk_err_soft) and reported if the connection times out."""
        if not self._icmp_in_window(seq):
            return
        if self.state in (State.SYN_SENT, State.SYN_RECV):
            self._set_error(err)
            log.info("icmp_error", conn=self.name, state=self.state.name,
                     error=errno.errorcode.get(err, str(err)))
            self.finish(now)
            return
        self.err_soft = err

    def on_packet_too_big(self, now: float, seq: int, mtu: int) -> None:
        """ICMP "fragmentation needed" / ICMPv6 "packet too big" quoting ``seq``
        (tcp_v4_err's ICMP_FRAG_NEEDED, tcp_v6_err's ICMPV6_PKT_TOOBIG): in the window, it
        lowers the path MTU, in any state (it never ends a handshake)."""
        if not self._icmp_in_window(seq):
            return
        if len(self.remote_ip) == 16 and mtu < IPV6_MIN_MTU:
            return  # tcp_v6_err: below the minimum IPv6 link MTU, a forgery
        self.mtu_reduced(now, mtu)

    def _icmp_in_window(self, seq: int) -> bool:
        """RFC 5927 4.1: the quoted sequence number lies in SND.UNA..SND.NXT."""
        if between(self.snd.snd_una, seq, self.snd.snd_nxt):
            return True
        self.host.counters.inc(Mib.TcpExtOutOfWindowIcmps)
        return False

    def mtu_reduced(self, now: float, mtu: int) -> None:
        """tcp_v4_mtu_reduced / tcp_v6_mtu_reduced: tell the route, and if the path MTU fell
        below what the MSS was made for, the sender lowers the MSS and resends at once what
        no longer fits (the "fast" path MTU discovery)."""
        if self.state == State.CLOSE:
            return
        pmtu = self.host.update_pmtu(now, self.remote_ip, mtu)
        if mtu < pmtu:
            self.err_soft = errno.EMSGSIZE  # held at min_pmtu: may not recover
        if self.snd.pmtu_lowered(pmtu):
            recovery.simple_retransmit(self.snd, now)

    def sync_mss(self, now: float) -> None:
        """The path MTU changed (back up when a learned value expired): the send MSS
        follows once synchronized (tcp_sync_mss)."""
        if self.state in SYNCHRONIZED:
            self.snd.sync_mss(self.snd.mss_clamp)

    def tcp_info(self, now: float) -> dict[str, int]:
        """A struct tcp_info snapshot with Linux's field names (include/uapi/linux/tcp.h)."""
        ccs = self.snd.ccs
        options = 0
        if self.rcv.ts_ok:
            options |= 1  # TCPI_OPT_TIMESTAMPS
        if self.snd.sack_ok:
            options |= 2  # TCPI_OPT_SACK
        if self.wscale_ok:
            options |= 4  # TCPI_OPT_WSCALE
        if self.snd.ecn_flags & ecn.TCP_ECN_OK:
            options |= ecn.TCPI_OPT_ECN
        if self.snd.ecn_flags & ecn.TCP_ECN_SEEN:
            options |= ecn.TCPI_OPT_ECN_SEEN
        if self.snd.syn_data_acked:
            options |= 32  # TCPI_OPT_SYN_DATA
        rto = self.snd.rto_value()
        return {
            "tcpi_state": int(self.state),
            "tcpi_ca_state": ccs.ca_state,
            "tcpi_retransmits": self.snd.retransmits,
            "tcpi_probes": self.snd.probes_out,
            "tcpi_backoff": self.snd.backoff,
            "tcpi_options": options,
            "tcpi_snd_wscale": self.snd.snd_wscale,
            "tcpi_rcv_wscale": self.rcv.rcv_wscale,
            "tcpi_rto": int(rto * 1e6),
            "tcpi_ato": int(self.rcv.ato * 1e6),
            "tcpi_snd_mss": self.snd.mss,
            "tcpi_rcv_mss": self.rcv.rcv_mss,
            "tcpi_unacked": self.snd.rtx.packets_out,
            "tcpi_sacked": self.snd.rtx.sacked_out,
            "tcpi_lost": self.snd.rtx.lost_out,
            "tcpi_retrans": self.snd.rtx.retrans_out,
            "tcpi_last_data_recv": int((now - self.rcv.last_data_recv) * 1000),
            "tcpi_last_ack_recv": int((now - self.snd.last_ack_recv) * 1000),
            "tcpi_pmtu": self.host.path_mtu(self.remote_ip),
            "tcpi_rcv_ssthresh": self.rcv.rcv_ssthresh,
            "tcpi_rtt": self.snd.rtt.srtt_us,
            "tcpi_rttvar": self.snd.rtt.rttvar_us,
            "tcpi_snd_ssthresh": ccs.snd_ssthresh,
            "tcpi_snd_cwnd": ccs.snd_cwnd,
            "tcpi_advmss": self.rcv.advmss - (TS_OPTION_LEN if self.rcv.ts_ok else 0),
            "tcpi_reordering": self.snd.reordering,
            "tcpi_rcv_space": self.rcv.rcv_wnd,
            "tcpi_total_retrans": self.snd.total_retrans,
            "tcpi_bytes_acked": self.snd.bytes_acked,
            "tcpi_bytes_received": self.rcv.bytes_received,
            "tcpi_bytes_sent": self.snd.bytes_sent,
            "tcpi_bytes_retrans": self.snd.bytes_retrans,
            "tcpi_segs_out": self.snd.segs_out,
            "tcpi_segs_in": self.segs_in,
            "tcpi_data_segs_in": self.rcv.data_segs_in,
            "tcpi_data_segs_out": self.snd.data_segs_out,
            "tcpi_notsent_bytes": max(0, seq_diff(self.snd.write_seq, self.snd.snd_nxt)),
            "tcpi_min_rtt": self.snd.rtt.min_rtt_us,
            "tcpi_delivered": self.snd.delivered,
            "tcpi_snd_wnd": self.snd.snd_wnd,
            "tcpi_rcv_wnd": self.rcv.rcv_wnd,
            "tcpi_reord_seen": self.snd.reord_seen,
            "tcpi_dsack_dups": self.snd.dsack_dups,
            "tcpi_pacing_rate": ccs.pacing_rate,  # ~0 (2**64 - 1) while unlimited
            "tcpi_max_pacing_rate": self.sockopts.max_pacing_rate,
            **self.snd.chrono.info(now),
        }


class IllegalTransition(Exception):
    """A state change the state diagram does not have: a bug in the engine. (An Exception,
    not an AssertionError: mypyc compiles subclasses of Exception, not of AssertionError.)"""


_ERRNO_TYPES: dict[int, type[OSError]] = {
    errno.ECONNRESET: ConnectionResetError,
    errno.ECONNREFUSED: ConnectionRefusedError,
    errno.ETIMEDOUT: TimeoutError,
    errno.EPIPE: BrokenPipeError,
}
