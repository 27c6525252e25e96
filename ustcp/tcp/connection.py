"""One TCP connection: the transmission control block and its state machine.

Sans-IO: every method takes ``now`` and reports what it does through its host
(``host.Host``: segments to send, objects to wake, timers to arm). The structure follows
RFC 9293 3.10 ("Event Processing") with Linux's choices where the RFCs leave room; comments
name the Linux function a rule comes from (net/ipv4/tcp_input.c, tcp_output.c, tcp_timer.c).

Sequence space on the send side::

      SND.UNA            SND.NXT                 write_seq
    ----|------------------|-----------------------|-------
        | sent, unacked    | written, not yet sent |
        |<------- send_buf (bytes from SND.UNA) ------>|

Congestion accounting is in packets like Linux (tcpi_snd_cwnd): a transmitted segment of
``n`` bytes counts ceil(n / MSS) packets, so a 64 KB GSO segment is many packets.
"""

from __future__ import annotations

import errno
import os
import socket
from collections import deque
from typing import TYPE_CHECKING, Any

import structlog

from ..debuglog import DEBUG
from ..mib import Mib
from ..wire.tcp import ACK, FIN, PSH, RST, SYN, TcpOptions, TcpSegment
from . import ack, recovery
from .buffers import ReceiveBuffer, SendBuffer
from .congestion import make_congestion_control
from .congestion.base import (
    CA_RECOVERY,
    CcState,
    CwndEvent,
)
from .options import (
    MAX_TCP_WINDOW,
    TS_OPTION_LEN,
    SockOpts,
    clamped_advmss,
    initial_rcv_wnd,
    peer_mss,
    rcv_wscale_for,
    rcvbuf_size,
    sndbuf_size,
    syn_segment,
)
from .rto import TCP_RTO_MAX, TCP_RTO_MIN, RtoEstimator
from .seq import after, before, before_eq, seq_add, seq_diff
from .states import State
from .timers import XmitTimer
from .timewait import TCP_TIMEWAIT_LEN, TimeWaitEntry

if TYPE_CHECKING:
    from .host import Host
    from .request import RequestSock

log = structlog.get_logger("ustcp.tcp")

TCP_DELACK_MIN = 0.04
TCP_DELACK_MAX = 0.2
TCP_ATO_MIN = 0.04
TCP_MAX_QUICKACKS = 16
TCP_PAWS_24DAYS = 24 * 86400.0  # RFC 7323 5.5: an idle connection's TS.Recent expires
TCP_PAWS_WINDOW = 1  # ticks of TSval lag PAWS tolerates
TCP_INIT_CWND = 10  # RFC 6928
TCP_RESOURCE_PROBE_INTERVAL = 0.5
_DATA_STATES = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
_RCV_DATA_STATES = frozenset({State.ESTABLISHED, State.FIN_WAIT1, State.FIN_WAIT2})
# States with data or a FIN that may still be waiting to go out: after close() or
# shutdown(SHUT_WR) the FIN follows queued data, and the peer's FIN may arrive before it
# leaves (CLOSING, LAST_ACK).
_SEND_STATES = frozenset({State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT1,
                          State.CLOSING, State.LAST_ACK})


class TxRecord:
    """One transmitted segment in the retransmission queue (Linux: an skb in the rtx queue
    with its TCP_SKB_CB sacked bits)."""

    __slots__ = (
        "done",
        "end",
        "ever_retrans",
        "fin",
        "first_xmit",
        "lost",
        "pcount",
        "retrans",
        "sacked",
        "start",
        "syn",
        "xmit",
    )

    def __init__(self, start: int, end: int, pcount: int, now: float, *, syn: bool = False,
                 fin: bool = False) -> None:
        self.start = start
        self.end = end
        self.pcount = pcount
        self.xmit = now
        self.first_xmit = now
        self.syn = syn
        self.fin = fin
        self.sacked = False
        self.lost = False
        self.retrans = False  # retransmitted and not yet acknowledged or SACKed
        self.ever_retrans = False  # Karn's rule: no RTT sample from this record
        self.done = False  # acknowledged and gone from the retransmission queue


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
        self.name = (f"{socket.inet_ntoa(local_ip)}:{local_port}>"
                     f"{socket.inet_ntoa(remote_ip)}:{remote_port}")
        self.sockopts = sockopts
        self.state = State.CLOSE
        self.waiter: Any = None  # owned by the API layer
        self.error: OSError | None = None
        self.orphan = False  # the application closed it (Linux SOCK_DEAD)
        self.orphan_counted = False  # counted against tcp_max_orphans
        self.rcv_shutdown = False  # SHUT_RD or close()
        self.created = now
        # Send sequence space (RFC 9293 3.3.1).
        self.iss = 0
        self.snd_una = 0
        self.snd_nxt = 0
        self.write_seq = 0  # sequence number after the last byte the application wrote
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_window = 0
        self.snd_wscale = 0
        self.snd_buf = SendBuffer()
        self.fin_queued = False  # shutdown(SHUT_WR) or close(): FIN follows the data
        self.fin_sent = False
        self.fin_acked = False
        self.snd_sml = 0  # end of the last small segment sent (Nagle, Minshall's variant)
        self.rtx: deque[TxRecord] = deque()
        self.packets_out = 0
        self.sacked_out = 0
        self.lost_out = 0
        self.retrans_out = 0
        # Receive sequence space.
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_wnd = 0
        self.rcv_wup = 0  # RCV.NXT when the window was last announced
        self.rcv_wscale = 0
        self.rcv_buf = ReceiveBuffer()
        self.rcvbuf = rcvbuf_size(cfg, sockopts)
        self.rcv_ssthresh = 0
        self.window_clamp = 0
        # Receive-buffer autotuning (Linux rcvq_space, tcp_rcv_space_adjust).
        self.copied = 0  # bytes the application has read
        self.rcvq_space = 0
        self.rcvq_copied = 0
        self.rcvq_time = now
        self.rcv_rtt = 0.0  # the receiver's RTT estimate, from TSecr
        self.fin_received = False
        self.ofo_fin: int | None = None  # sequence number of an out-of-order FIN
        self.pending_dsack: tuple[int, int] | None = None
        # MSS.
        self.mss_clamp = 536  # what the peer announced
        self.advmss = host.mss_for_mtu  # what we announced
        self.mss = 536  # effective send MSS: payload bytes per segment, options excluded
        self.rcv_mss = 536  # estimate of the peer's segment size (icsk_ack.rcv_mss)
        # Options.
        self.ts_ok = False
        self.ts_recent = 0
        self.ts_recent_stamp = 0.0
        self.ts_offset = 0
        self.sack_ok = False
        self.wscale_ok = False
        # ACK scheduling (Linux icsk_ack).
        self.ato = 0.0
        self.quick = 0
        self.pingpong = 0
        self.lrcvtime = now
        self.ack_now = False  # ICSK_ACK_NOW: a one-time immediate ACK is due
        self.ack_scheduled = False
        self.last_oow_ack = -1e9
        # Retransmission and persist timers.
        self.rtt = RtoEstimator()
        self.backoff = 0
        self.retransmits = 0  # consecutive timeouts (icsk_retransmits)
        self.retrans_stamp = 0.0
        self.probes_out = 0
        self.t_rto: float | None = None  # the retransmit timer, which also serves as
        self.xmit_timer = XmitTimer.RTO  # ... the loss probe and the RACK reorder timer
        self.t_delack: float | None = None
        self.t_probe0: float | None = None
        self.t_keepalive: float | None = None
        self.t_linger: float | None = None  # orphaned FIN_WAIT2 lifetime
        self.heap_when: float | None = None  # the host's bookkeeping
        # Congestion control (Linux tcp_sock fields, in packets).
        self.cc = make_congestion_control(sockopts.congestion or cfg.tcp_congestion_control)
        self.ccs = CcState(mss=536)
        self.high_seq = 0
        self.prior_cwnd = 0
        # RACK (RFC 8985, Linux tcp_recovery.c) and TLP.
        self.tsorted: deque[tuple[float, TxRecord]] = deque()  # records by send time
        self.rack_mstamp = -1.0  # send time of the most recently sent delivered record
        self.rack_end_seq = 0
        self.rack_rtt_us = 0
        self.rack_advanced = False
        self.reord_seen = 0
        self.highest_sack = 0  # end of the highest SACKed record
        self.tlp_high_seq: int | None = None
        self.tlp_retrans = False
        self.prr_delivered = 0
        self.prr_out = 0
        self.reordering = cfg.tcp_reordering
        self.last_send = now
        self.cwnd_limited = False
        self.max_packets_out = 0
        self.cwnd_usage_seq = 0
        # Statistics (tcp_info, ss).
        self.bytes_acked = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.bytes_retrans = 0
        self.segs_in = 0
        self.segs_out = 0
        self.data_segs_in = 0
        self.data_segs_out = 0
        self.total_retrans = 0
        self.delivered = 0
        self.last_data_recv = now
        self.last_ack_recv = now

    # ------------------------------------------------------------------ set-up

    def start_connect(self, now: float, reused: TimeWaitEntry | None = None) -> None:
        """Active open (RFC 9293 3.10.1): send SYN, enter SYN_SENT. Taking over a
        TIME_WAIT entry (tcp_tw_reuse), start after everything the old incarnation sent
        and keep its TS.Recent (tcp_twsk_unique)."""
        e = self.host
        if reused is not None:
            self.iss = seq_add(reused.snd_nxt, 65535 + 2) or 1
            self.ts_recent = reused.ts_recent
            self.ts_recent_stamp = reused.ts_recent_stamp
        else:
            self.iss = e.isn.isn(now, self.local_ip, self.local_port, self.remote_ip,
                                 self.remote_port)
        self.ts_offset = e.isn.ts_offset(self.local_ip, self.remote_ip)
        self._init_send_seq(self.iss)
        self.advmss = clamped_advmss(e.mss_for_mtu, self.sockopts)  # TCP_MAXSEG before connect
        self.rcv_wscale = rcv_wscale_for(self.config, self.sockopts)
        self.rcv_wnd = initial_rcv_wnd(self.config, self.sockopts, self._advmss_payload())
        self.set_state(now, State.SYN_SENT)
        e.counters.inc(Mib.TcpActiveOpens)
        self.retrans_stamp = now
        self._send_syn(now)

    def adopt_request(self, req: RequestSock, ack_seg: TcpSegment, now: float) -> None:
        """Passive open completed: take over a SYN-queue entry whose handshake the final
        ACK has just completed (Linux tcp_create_openreq_child, tcp_rcv_synrecv_state)."""
        self.iss, self.irs = req.iss, req.irs
        self._init_send_seq(req.iss)
        self.snd_una = seq_add(req.iss, 1)
        self.snd_nxt = self.snd_una
        self.write_seq = self.snd_una
        self.rcv_nxt = seq_add(req.irs, 1)
        self.rcv_wup = self.rcv_nxt
        self.rcv_wnd = req.rcv_wnd
        self.advmss = req.advmss
        self.ts_ok = req.ts_ok
        self.ts_offset = req.ts_offset
        self.ts_recent = req.ts_recent
        self.ts_recent_stamp = now
        self.sack_ok = req.sack_ok
        self.wscale_ok = req.snd_wscale is not None
        self.snd_wscale = req.snd_wscale or 0
        self.rcv_wscale = req.rcv_wscale if self.wscale_ok else 0
        self.mss_clamp = req.snd_mss
        self._set_mss()
        self.snd_wnd = ack_seg.window << self.snd_wscale
        self.max_window = self.snd_wnd
        self.snd_wl1 = ack_seg.seq
        self.snd_wl2 = ack_seg.ack
        if not req.num_timeout and req.synack_sent is not None:
            self.rtt.on_sample(max(1, int((now - req.synack_sent) * 1e6)))  # tcp_synack_rtt_meas
        self._init_transfer(now)
        # The child is born in SYN_RECV (inet_csk_clone_lock) and the ACK makes it
        # ESTABLISHED: both show in the trace, as in Linux's inet_sock_set_state.
        self.set_state(now, State.SYN_RECV)
        self.set_state(now, State.ESTABLISHED)

    def _init_send_seq(self, iss: int) -> None:
        self.snd_una = iss
        self.snd_nxt = iss
        self.write_seq = seq_add(iss, 1)
        self.snd_sml = iss
        self.high_seq = iss

    def _advmss_payload(self) -> int:
        return self.advmss - (TS_OPTION_LEN if self.config.tcp_timestamps else 0)

    def _set_mss(self) -> None:
        """Effective send MSS (tcp_sync_mss / tcp_current_mss): the peer's MSS, the user's
        TCP_MAXSEG clamp, less the timestamp option every segment carries."""
        mss = min(self.mss_clamp, self.advmss)
        if self.sockopts.maxseg:
            mss = min(mss, self.sockopts.maxseg)
        if self.ts_ok:
            mss -= TS_OPTION_LEN
        self.mss = max(mss, 48)
        self.ccs.mss = self.mss

    def _init_transfer(self, now: float) -> None:
        """Buffers, windows and congestion state once synchronized (tcp_init_transfer)."""
        self.rcv_ssthresh = self.rcv_wnd
        self.window_clamp = self.rcvbuf
        self.rcvq_space = min(self.rcv_wnd, TCP_INIT_CWND * self.advmss)
        self.rcvq_time = now
        rcv_mss = min(self.advmss, self.mss, self.rcv_wnd // 2, 536)
        self.rcv_mss = max(rcv_mss, 88)  # tcp_initialize_rcv_mss
        self.ccs.snd_cwnd = TCP_INIT_CWND
        self.ccs.snd_una = self.snd_una
        self.ccs.snd_nxt = self.snd_nxt
        self.cc.init(self.ccs, now)
        self.last_send = now
        self.last_data_recv = now
        if self.sockopts.keepalive:
            self.t_keepalive = now + self.keepalive_time

    # ------------------------------------------------------------------ user calls

    @property
    def readable(self) -> bool:
        return bool(len(self.rcv_buf)) or self.fin_received or self.error is not None \
            or self.state == State.CLOSE

    @property
    def send_space(self) -> int:
        return max(0, self.sndbuf() - len(self.snd_buf))

    @property
    def writable(self) -> bool:
        if self.error is not None or self.fin_queued or self.state == State.CLOSE:
            return True
        return self.state in _DATA_STATES and self.send_space > 0

    def sndbuf(self) -> int:
        """SO_SNDBUF, or Linux's autotuning (tcp_sndbuf_expand): room for twice the
        congestion window, between tcp_wmem[1] and tcp_wmem[2]."""
        locked = sndbuf_size(self.sockopts)
        if locked:
            return locked
        _, default, hi = self.config.tcp_wmem
        want = 2 * max(self.ccs.snd_cwnd, self.reordering + 1) * (self.mss + 200)
        return max(default, min(hi, want * 2))

    def send(self, now: float, data: bytes | bytearray | memoryview) -> int:
        """Queue application data; returns how many bytes were taken (0 when full)."""
        self._raise_pending_error()
        if self.fin_queued or self.state not in _DATA_STATES:
            if self.state in (State.SYN_SENT, State.SYN_RECV):
                raise BlockingIOError(errno.EAGAIN, "connection not yet established")
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
        n = min(len(data), self.send_space)
        if n:
            self.snd_buf.append(data if n == len(data) else memoryview(data)[:n])
            self.write_seq = seq_add(self.write_seq, n)
            self._push(now)
        self.host.touch(self)
        return n

    def recv(self, now: float, max_bytes: int) -> bytes:
        """Read up to ``max_bytes``; ``b""`` at end of stream; BlockingIOError when empty."""
        if len(self.rcv_buf):
            was_window = self._receive_window()
            data = self.rcv_buf.pull(max_bytes)
            self.copied += len(data)
            self._rcv_space_adjust(now)
            self._cleanup_rbuf(now, was_window)
            self.host.touch(self)
            return data
        self._raise_pending_error()
        if self.fin_received or self.rcv_shutdown or self.state == State.CLOSE:
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

    def _rcv_space_adjust(self, now: float) -> None:
        """Dynamic right-sizing (Linux tcp_rcv_space_adjust, tcp_moderate_rcvbuf): once
        per receiver RTT, if the application read more than last time, grow the receive
        buffer to twice that (plus headroom), up to tcp_rmem[2], so the window never
        limits a reader that keeps up."""
        rtt = self.rcv_rtt or (self.rtt.srtt_us / 1e6 if self.rtt.has_sample else 0.0)
        if not rtt or now - self.rcvq_time < rtt:
            return
        copied = self.copied - self.rcvq_copied
        if copied > self.rcvq_space > 0:
            if self.config.tcp_moderate_rcvbuf and not self.sockopts.rcvbuf:
                rcvwin = 2 * copied + 16 * self.advmss
                rcvwin += 2 * (rcvwin * (copied - self.rcvq_space) // self.rcvq_space)
                rcvbuf = min(rcvwin, self.config.tcp_rmem[2])
                if rcvbuf > self.rcvbuf:
                    self.rcvbuf = rcvbuf
                    self.window_clamp = rcvbuf
            self.rcvq_space = copied
        self.rcvq_copied = self.copied
        self.rcvq_time = now

    def _cleanup_rbuf(self, now: float, was_window: int) -> None:
        """After the application read (tcp_cleanup_rbuf): send the once-per-two-segments
        ACK that arrival skipped because the data was still unread, or a window update when
        reading opened the window a lot (at least twice what the peer sees)."""
        if self.state not in _RCV_DATA_STATES:
            return
        if self.ack_scheduled and seq_diff(self.rcv_nxt, self.rcv_wup) > self.rcv_mss:
            self._send_ack(now)
            return
        if was_window * 2 > self.window_clamp:
            return
        new_window = self._select_window_raw()
        if new_window and new_window >= 2 * was_window:
            self._send_ack(now)

    def shutdown(self, now: float, how: int) -> None:
        """shutdown(2): SHUT_WR sends FIN after the queued data and keeps receiving."""
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self.rcv_shutdown = True
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            if self.state in (State.SYN_SENT,):
                self.finish(now)
            elif self.state in _DATA_STATES and not self.fin_queued:
                self._queue_fin(now)
        self.host.wake(self)
        self.host.touch(self)

    def close(self, now: float) -> None:
        """close(2): the application lets go. Unread data means RST (RFC 2525 2.17, Linux
        tcp_close); otherwise FIN after the queued data, and the connection lives on as an
        orphan until the close completes (or is reset over tcp_max_orphans)."""
        if self.orphan:
            return
        self.orphan = True
        self.rcv_shutdown = True
        e = self.host
        unread = self.rcv_buf.discard()
        linger = self.sockopts.linger
        if self.state in (State.CLOSE, State.TIME_WAIT):
            e.touch(self)
            return
        if self.state == State.SYN_SENT:
            self.finish(now)
        elif unread or (self.fin_received and self.ofo_fin is not None):
            e.counters.inc(Mib.TcpExtTCPAbortOnClose)
            self._send_active_reset(now)
            self.finish(now)
        elif linger is not None and linger[0] and linger[1] == 0:
            e.counters.inc(Mib.TcpExtTCPAbortOnData)
            self._send_active_reset(now)
            self.finish(now)
        elif e.orphan_count >= self.config.tcp_max_orphans:
            # tcp_close: the FIN goes first, then tcp_check_oom finds too many orphans and
            # the connection is reset and dropped at once.
            if self.state in _DATA_STATES and not self.fin_queued:
                self._queue_fin(now)
            e.counters.inc(Mib.TcpExtTCPAbortOnMemory)
            self._send_active_reset(now)
            self.finish(now)
        else:
            e.orphan_count += 1
            self.orphan_counted = True
            if self.state in _DATA_STATES and not self.fin_queued:
                self._queue_fin(now)
            elif self.state == State.FIN_WAIT2:
                self.arm_linger(now)
        e.touch(self)

    def abort(self, now: float) -> None:
        """close() with SO_LINGER {on, 0}: send RST, skip TIME_WAIT (Linux tcp_disconnect)."""
        if self.state not in (State.CLOSE, State.SYN_SENT, State.TIME_WAIT):
            self._send_active_reset(now)
        self.orphan = True
        self.rcv_buf.discard()
        if self.state != State.CLOSE:
            self.finish(now)
        self.host.touch(self)

    def _queue_fin(self, now: float) -> None:
        """Queue our FIN behind the data (tcp_send_fin) and move on in the state diagram."""
        self.fin_queued = True
        self.set_state(now, State.FIN_WAIT1 if self.state == State.ESTABLISHED
                        else State.LAST_ACK)
        self._push(now)

    # ------------------------------------------------------------------ state and helpers

    def set_state(self, now: float, new: State) -> None:
        old = self.state
        if old == new:
            return
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

    def finish(self, now: float) -> None:
        """The connection is finished (tcp_done): forget it, stop every timer."""
        if self.state in (State.SYN_SENT, State.SYN_RECV):
            self.host.counters.inc(Mib.TcpAttemptFails)
        self.set_state(now, State.CLOSE)
        self.t_rto = self.t_delack = self.t_probe0 = self.t_keepalive = self.t_linger = None
        if self.orphan_counted:
            self.orphan_counted = False
            self.host.orphan_count -= 1
        self.host.forget(self.key, self)
        self.host.wake(self)

    def _set_error(self, err: int) -> None:
        self.error = OSError(err, os.strerror(err)) if err not in _ERRNO_TYPES \
            else _ERRNO_TYPES[err](err, os.strerror(err))

    def ts_now(self, now: float) -> int:
        """Our TSval: a millisecond clock plus a per-connection offset (RFC 7323 5.4)."""
        return (int(now * 1000) + self.ts_offset) & 0xFFFFFFFF

    def _receive_window(self) -> int:
        """What the peer may still send (tcp_receive_window)."""
        win = seq_diff(seq_add(self.rcv_wup, self.rcv_wnd), self.rcv_nxt)
        return max(win, 0)

    def _free_space(self) -> int:
        used = len(self.rcv_buf) + self.rcv_buf.ofo_bytes
        return max(0, self.rcvbuf - used)

    def _select_window_raw(self) -> int:
        """The window we would offer now, in bytes (Linux __tcp_select_window)."""
        mss = self.rcv_mss
        free_space = self._free_space()
        allowed_space = self.rcvbuf
        full_space = min(self.window_clamp, allowed_space)
        if free_space < full_space // 2:
            self.quick = 0
            # Never let the window grow by the scale's rounding once space is short.
            free_space &= ~((1 << self.rcv_wscale) - 1)
            if free_space < mss or free_space < allowed_space >> 4:
                # Receiver-side SWS avoidance (RFC 9293 3.8.6.2.2); with a large buffer
                # Linux moves to a zero window below 1/16 of it, before memory runs out.
                return 0
        free_space = min(free_space, self.rcv_ssthresh)
        if self.rcv_wscale:
            unit = 1 << self.rcv_wscale
            return (free_space + unit - 1) & ~(unit - 1)
        window = self.rcv_wnd
        if window <= free_space - mss or window > free_space:
            window = (free_space // mss) * mss
        elif mss == full_space and free_space > window + (full_space >> 1):
            window = free_space
        return window

    def _select_window(self) -> int:
        """The 16-bit window field for a segment we send; the window never shrinks
        (RFC 9293 3.8.6.2.2, tcp_select_window)."""
        cur_win = self._receive_window()
        new_win = self._select_window_raw()
        if new_win < cur_win:
            unit = 1 << self.rcv_wscale
            new_win = (cur_win + unit - 1) & ~(unit - 1)
        if not new_win:
            c = self.host.counters
            c.inc(Mib.TcpExtTCPWantZeroWindowAdv)
            if self.rcv_wnd:
                c.inc(Mib.TcpExtTCPToZeroWindowAdv)
        elif not self.rcv_wnd and self.state != State.SYN_SENT:
            self.host.counters.inc(Mib.TcpExtTCPFromZeroWindowAdv)
        self.rcv_wnd = new_win
        self.rcv_wup = self.rcv_nxt
        new_win = min(new_win, MAX_TCP_WINDOW << self.rcv_wscale)
        return new_win >> self.rcv_wscale

    # ------------------------------------------------------------------ output

    def _segment(self, now: float, flags: int, seq: int, payload: bytes | memoryview = b"",
                 *, with_sack: bool = True) -> TcpSegment:
        opts = TcpOptions()
        if self.ts_ok:
            opts.ts_val = self.ts_now(now)
            opts.ts_ecr = self.ts_recent
        if with_sack and self.sack_ok and flags & ACK and (
                self.rcv_buf.ofo or self.pending_dsack is not None):
            blocks = []
            if self.pending_dsack is not None and self.config.tcp_dsack:
                blocks.append(self.pending_dsack)
            blocks += self.rcv_buf.sack_blocks(4)
            if blocks:
                opts.sack_blocks = tuple(blocks[:3 if self.ts_ok else 4])
        window = self._select_window() if flags & ACK else 0
        return TcpSegment(self.local_port, self.remote_port, seq,
                          self.rcv_nxt if flags & ACK else 0, flags, window, opts, payload)

    def _emit(self, now: float, seg: TcpSegment) -> None:
        self.segs_out += seg.pcount  # tcpi_segs_out counts wire segments, as Linux's
        if seg.flags & ACK:
            self._ack_sent(now)
        self.host.emit(self.local_ip, self.remote_ip, seg)

    def _ack_sent(self, now: float) -> None:
        """Every segment we send carries the ACK (tcp_event_ack_sent)."""
        self.pending_dsack = None
        if self.quick:
            self.quick -= 1
            if not self.quick:
                self.ato = TCP_ATO_MIN
        self.ack_now = False
        self.ack_scheduled = False
        self.t_delack = None

    def _send_ack(self, now: float) -> None:
        self._emit(now, self._segment(now, ACK, self.snd_nxt))

    def _send_active_reset(self, now: float) -> None:
        """RST for a connection we abort (tcp_send_active_reset): carries ACK and TS."""
        self.host.counters.inc(Mib.TcpOutRsts)
        seg = self._segment(now, RST | ACK, self.snd_nxt, with_sack=False)
        self.host.emit(self.local_ip, self.remote_ip, seg)

    def _send_syn(self, now: float) -> None:
        cfg = self.config
        ts_val = self.ts_now(now) if cfg.tcp_timestamps else None
        seg = syn_segment(self.local_port, self.remote_port, self.iss, None,
                          rcv_wnd=self.rcv_wnd, mss=self.advmss, rcv_wscale=self.rcv_wscale,
                          ts_val=ts_val, ts_ecr=0, sack=bool(cfg.tcp_sack),
                          wscale=bool(cfg.tcp_window_scaling))
        if not self.rtx:
            self.rtx.append(TxRecord(self.iss, seq_add(self.iss, 1), 1, now, syn=True))
            self.packets_out = 1
            self.snd_nxt = seq_add(self.iss, 1)
        self.segs_out += 1
        self.host.emit(self.local_ip, self.remote_ip, seg)
        self.arm_rto(now)

    def _current_mss(self) -> int:
        """Payload room of the next segment: the MSS less the SACK blocks it will carry,
        so that no frame outgrows the path MTU (tcp_current_mss)."""
        if not self.sack_ok:
            return self.mss
        blocks = len(self.rcv_buf.ofo) + (self.pending_dsack is not None)
        if not blocks:
            return self.mss
        return self.mss - 4 - 8 * min(blocks, 3 if self.ts_ok else 4)

    def in_flight(self) -> int:
        """Packets in flight (tcp_packets_in_flight, RFC 6675 "pipe")."""
        return self.packets_out - (self.sacked_out + self.lost_out) + self.retrans_out

    def _push(self, now: float) -> None:
        """Send what the windows allow (tcp_write_xmit)."""
        if self.state not in _SEND_STATES:
            return
        ccs = self.ccs
        if self.write_seq == self.snd_nxt and not (self.fin_queued and not self.fin_sent):
            # Nothing queued (most calls after an ACK): only the bookkeeping below.
            self._cwnd_validate(self.in_flight() >= ccs.snd_cwnd)
            self._check_probe_timer(now)
            return
        mss = self._current_mss()
        gso_max = self.host.gso_max_size
        sent_any = False
        last: TcpSegment | None = None
        first_seq = self.snd_nxt
        idle = not self.packets_out
        while True:
            unsent = seq_diff(self.write_seq, self.snd_nxt)
            want_fin = self.fin_queued and not self.fin_sent
            if unsent <= 0 and not want_fin:
                break
            quota = ccs.snd_cwnd - self.in_flight()
            if quota <= 0 and not (want_fin and unsent <= 0):
                break  # a lone FIN is not held by cwnd (tcp_cwnd_test)
            wnd_end = seq_add(self.snd_una, self.snd_wnd)
            avail = seq_diff(wnd_end, self.snd_nxt)
            max_segs = min(quota, max(1, gso_max // mss)) if gso_max else 1
            size = min(unsent, mss * max_segs)
            if size > avail:
                # The first MSS must fit in the window (tcp_snd_wnd_test).
                if avail < min(mss, unsent) or avail <= 0:
                    break
                size = avail if avail < mss else (avail // mss) * mss
            if size and size < mss and size == unsent and not want_fin \
                    and self._nagle_holds(size):
                break
            fin = want_fin and size == unsent
            if not size and not fin:
                break
            if fin and not size and avail <= 0 and self.snd_wnd == 0 and self.packets_out:
                break
            if idle and not sent_any and self.config.tcp_slow_start_after_idle:
                self._cwnd_restart_after_idle(now)
            last = self._send_new(now, size, fin)
            if not sent_any:
                first_seq = last.seq
            sent_any = True
        if last is not None and len(last.payload) and last.seq != first_seq:
            # A burst of several segments leaves as one GSO packet in Linux, and the
            # packet's PSH ends up on its last segment (tcp_gso_segment).
            last.flags |= PSH
        if sent_any:
            self.last_send = now
            ccs.lsndtime = now
            recovery.schedule_loss_probe(self, now, advancing_rto=False)
        self._cwnd_validate(self.in_flight() >= ccs.snd_cwnd)
        self._check_probe_timer(now)

    def _cwnd_validate(self, is_cwnd_limited: bool) -> None:
        """Remember whether this flight was limited by cwnd rather than by the application
        (tcp_cwnd_validate, RFC 7661): only then may cwnd grow."""
        if not before(self.snd_una, self.cwnd_usage_seq) or is_cwnd_limited or (
                not self.cwnd_limited and self.packets_out > self.max_packets_out):
            self.cwnd_limited = is_cwnd_limited
            self.max_packets_out = self.packets_out
            self.cwnd_usage_seq = self.snd_nxt

    def is_cwnd_limited(self) -> bool:
        """tcp_is_cwnd_limited: in slow start, grow cwnd to twice what was in flight."""
        ccs = self.ccs
        if self.cwnd_limited:
            return True
        return ccs.snd_cwnd < ccs.snd_ssthresh and ccs.snd_cwnd < 2 * self.max_packets_out

    def _nagle_holds(self, size: int) -> bool:
        """Nagle's algorithm with Minshall's variant (RFC 896, Linux tcp_nagle_check):
        hold a small segment while an earlier small segment is unacknowledged."""
        if self.sockopts.cork:
            return True
        if self.sockopts.nodelay:
            return False
        return bool(self.packets_out) and after(self.snd_sml, self.snd_una)

    def _cwnd_restart_after_idle(self, now: float) -> None:
        """RFC 5681 4.1 / tcp_cwnd_restart: after an idle period longer than the RTO,
        cwnd is cut back to the restart window."""
        idle = now - self.last_send
        rto = self.rtt.rto
        if idle <= rto or not self.rtt.has_sample:
            return
        self.cc.cwnd_event(self.ccs, now, CwndEvent.CWND_RESTART)
        restart = min(TCP_INIT_CWND, self.ccs.snd_cwnd)
        cwnd = self.ccs.snd_cwnd
        while idle > rto and cwnd > restart:
            cwnd >>= 1
            idle -= rto
        self.ccs.snd_cwnd = max(cwnd, restart)

    def _send_new(self, now: float, size: int, fin: bool) -> TcpSegment:
        seq = self.snd_nxt
        payload = self.snd_buf.peek(seq_diff(seq, self.snd_una), size) if size else b""
        flags = ACK
        if fin:
            flags |= FIN
        if size and seq_add(seq, size) == self.write_seq:
            flags |= PSH
        seg = self._segment(now, flags, seq, payload)
        pcount = max(1, -(-size // self.mss))
        if size > self.mss:
            seg.gso_size = self.mss
        end = seq_add(seq, size + (1 if fin else 0))
        if not self.packets_out:
            self.cc.cwnd_event(self.ccs, now, CwndEvent.TX_START)
        rec = TxRecord(seq, end, pcount, now, fin=fin)
        self.rtx.append(rec)
        self.tsorted.append((now, rec))
        self.packets_out += pcount
        self.snd_nxt = end
        self.ccs.snd_nxt = end
        if fin:
            self.fin_sent = True
        if size < self.mss:
            self.snd_sml = end
        if size:
            self.bytes_sent += size
            self.data_segs_out += pcount
        if self.ccs.ca_state == CA_RECOVERY:
            self.prr_out += pcount
        self._emit(now, seg)
        if self.t_rto is None or self.xmit_timer == XmitTimer.LOSS_PROBE:
            self.arm_rto(now)  # tcp_event_new_data_sent
        self._note_pingpong(now)
        return seg

    def _note_pingpong(self, now: float) -> None:
        """A reply within ATO of the last received segment means an interactive flow
        (tcp_event_data_sent): delayed ACKs may then wait longer."""
        if now - self.lrcvtime < self.ato:
            self.pingpong = 1

    def retransmit(self, now: float, rec: TxRecord) -> None:
        """Resend one record (tcp_retransmit_skb); a record larger than one MSS is split so
        that retransmissions are MSS-sized."""
        size = seq_diff(rec.end, rec.start) - (1 if rec.fin else 0) - (1 if rec.syn else 0)
        if rec.syn:
            self._send_syn(now)
        else:
            mss = self._current_mss()
            if size > mss:
                self.split(rec, mss)
                size = mss
            payload = self.snd_buf.peek(seq_diff(rec.start, self.snd_una), size) \
                if size else b""
            flags = ACK | (FIN if rec.fin else 0)
            if size and seq_add(rec.start, size) == self.write_seq:
                flags |= PSH
            self._emit(now, self._segment(now, flags, rec.start, payload))
        if not rec.retrans:
            rec.retrans = True
            self.retrans_out += rec.pcount
        if self.ccs.ca_state == CA_RECOVERY:
            self.prr_out += rec.pcount
        rec.ever_retrans = True
        rec.xmit = now
        self.tsorted.append((now, rec))
        self.total_retrans += rec.pcount
        self.bytes_retrans += size
        self.host.counters.inc(Mib.TcpRetransSegs, rec.pcount)
        if not self.retrans_stamp:
            self.retrans_stamp = rec.first_xmit
        log.debug("retransmit", conn=self.name, seq=seq_diff(rec.start, self.iss),
                  len=size, ca_state=self.ccs.ca_state, t=round(now, 6))

    def split(self, rec: TxRecord, first_len: int) -> None:
        """Split a record after ``first_len`` bytes (tcp_fragment)."""
        mid = seq_add(rec.start, first_len)
        tail_len = seq_diff(rec.end, mid) - (1 if rec.fin else 0)
        tail = TxRecord(mid, rec.end, max(1, -(-tail_len // self.mss)), rec.xmit, fin=rec.fin)
        tail.first_xmit = rec.first_xmit
        tail.sacked, tail.lost, tail.ever_retrans = rec.sacked, rec.lost, rec.ever_retrans
        old = rec.pcount
        rec.end, rec.fin, rec.pcount = mid, False, 1
        delta = rec.pcount + tail.pcount - old
        self.packets_out += delta
        if rec.sacked:
            self.sacked_out += delta
        if rec.lost:
            self.lost_out += delta
        if rec.retrans:
            self.retrans_out += delta
            tail.retrans = True
        idx = self.rtx.index(rec)
        self.rtx.insert(idx + 1, tail)

    # ------------------------------------------------------------------ timers

    @property
    def deadline(self) -> float | None:
        if self.state == State.CLOSE:
            return None
        best: float | None = None
        for t in (self.t_rto, self.t_delack, self.t_probe0, self.t_keepalive, self.t_linger):
            if t is not None and (best is None or t < best):
                best = t
        return best

    def on_timer(self, now: float) -> None:
        if self.t_delack is not None and self.t_delack <= now:
            self._delack_timer(now)
        if self.t_rto is not None and self.t_rto <= now:
            self.t_rto = None
            kind, self.xmit_timer = self.xmit_timer, XmitTimer.RTO
            if kind == XmitTimer.LOSS_PROBE:
                recovery.send_loss_probe(self, now)
            elif kind == XmitTimer.REO_TIMEOUT:
                recovery.rack_reo_timeout(self, now)
            else:
                self._retransmit_timer(now)
        if self.t_probe0 is not None and self.t_probe0 <= now:
            self.t_probe0 = None
            self._probe_timer(now)
        if self.t_keepalive is not None and self.t_keepalive <= now:
            self.t_keepalive = None
            self._keepalive_timer(now)
        if self.t_linger is not None and self.t_linger <= now:
            self.t_linger = None
            if self.state == State.FIN_WAIT2:
                self.host.counters.inc(Mib.TcpExtTCPAbortOnLinger)
                self.finish(now)

    def rto_value(self) -> float:
        return self.rtt.backed_off(self.backoff)

    def reset_xmit_timer(self, what: int, when: float) -> None:
        """Arm the transmit timer in mode ``what`` (a :class:`XmitTimer`), as
        inet_csk_reset_xmit_timer: the retransmission timeout, the loss probe and the RACK
        reorder timeout share one timer (the mode says what its expiry does); the
        zero-window probe is kept on a timer of its own (Linux shares that one too, but it
        only runs with nothing in flight)."""
        if what == XmitTimer.PROBE0:
            self.t_probe0 = when
        else:
            self.t_rto = when
            self.xmit_timer = what

    def arm_rto(self, now: float) -> None:
        self.reset_xmit_timer(XmitTimer.RTO, now + self.rto_value())

    def rto_deadline(self, now: float) -> float:
        """When the RTO would fire, counted from the send time of the oldest outstanding
        record (tcp_rto_delta_us)."""
        head = self.rtx[0].xmit if self.rtx else now
        return head + self.rto_value()

    def set_xmit_timer(self, now: float) -> None:
        """After an ACK that advanced SND.UNA: a loss probe if one is due, else the RTO
        restarted (RFC 6298 5.3, tcp_set_xmit_timer)."""
        if not self.packets_out:
            self.t_rto = None
        elif not recovery.schedule_loss_probe(self, now, advancing_rto=True):
            self.arm_rto(now)

    def _delack_timer(self, now: float) -> None:
        """tcp_delack_timer_handler: send the delayed ACK and adapt ATO."""
        self.t_delack = None
        if not self.ack_scheduled or self.state == State.CLOSE:
            return
        if self.pingpong:
            self.pingpong = 0
            self.ato = TCP_ATO_MIN
        else:
            self.ato = min(self.ato * 2, self.rto_value())
        self.host.counters.inc(Mib.TcpExtDelayedACKs)
        self._send_ack(now)

    def _write_timeout(self, now: float) -> bool:
        """Has the connection retransmitted long enough to give up (tcp_write_timeout)?"""
        cfg = self.config
        if self.state in (State.SYN_SENT, State.SYN_RECV):
            return self.retransmits >= cfg.tcp_syn_retries
        boundary = cfg.tcp_retries2
        if self.orphan:
            boundary = cfg.tcp_orphan_retries or (8 if self.rto_value() < TCP_RTO_MAX else 0)
        if not self.retransmits:
            return False
        # tcp_model_timeout: how long `boundary` doublings from TCP_RTO_MIN take.
        thresh = 9  # ilog2(TCP_RTO_MAX / TCP_RTO_MIN)
        if boundary <= thresh:
            timeout = ((2 << boundary) - 1) * TCP_RTO_MIN
        else:
            timeout = ((2 << thresh) - 1) * TCP_RTO_MIN + (boundary - thresh) * TCP_RTO_MAX
        return now - self.retrans_stamp >= timeout - 1e-9

    def _retransmit_timer(self, now: float) -> None:
        """The RTO fired (RFC 6298 5.4-5.7, tcp_retransmit_timer)."""
        if not self.rtx:
            return
        c = self.host.counters
        if self._write_timeout(now):
            c.inc(Mib.TcpExtTCPAbortOnTimeout)
            if self.orphan and self.state != State.SYN_SENT:
                self._send_active_reset(now)
            self._set_error(errno.ETIMEDOUT)
            log.info("timeout", conn=self.name, state=self.state.name,
                     retransmits=self.retransmits)
            self.finish(now)
            return
        c.inc(Mib.TcpExtTCPTimeouts)
        self.tlp_high_seq = None  # an RTO ends the loss-probe episode (tcp_retransmit_timer)
        if self.state == State.SYN_SENT:
            self.retransmits += 1
            self.backoff += 1
            self.retransmit(now, self.rtx[0])
            self.arm_rto(now)
            return
        recovery.enter_loss(self, now)
        self.retransmit(now, self.rtx[0])
        self.backoff += 1
        self.retransmits += 1
        self.arm_rto(now)

    def _check_probe_timer(self, now: float) -> None:
        """Arm the persist timer when data waits on a closed window with nothing in
        flight (tcp_check_probe_timer); RFC 9293 3.8.6.1."""
        unsent = seq_diff(self.write_seq, self.snd_nxt) > 0 or (
            self.fin_queued and not self.fin_sent)
        if self.packets_out or not unsent:
            self.t_probe0 = None
            self.probes_out = 0
            return
        if self.t_probe0 is None:
            self.reset_xmit_timer(XmitTimer.PROBE0, self.probe0_when(now))

    def probe0_when(self, now: float) -> float:
        """When the next zero-window probe is due (tcp_probe0_when): the backed-off RTO,
        kept within TCP_RTO_MIN and TCP_RTO_MAX."""
        return now + min(max(self.rto_value(), TCP_RTO_MIN), TCP_RTO_MAX)

    def _probe_timer(self, now: float) -> None:
        """Zero-window probe (tcp_probe_timer / tcp_send_probe0 / tcp_write_wakeup)."""
        if self.packets_out or self.state not in _SEND_STATES:
            self.probes_out = 0
            return
        max_probes = self.config.tcp_retries2
        if self.orphan:
            max_probes = self.config.tcp_orphan_retries or 8
        if self.probes_out >= max_probes:
            self.host.counters.inc(Mib.TcpExtTCPAbortOnTimeout)
            self._set_error(errno.ETIMEDOUT)
            self.finish(now)
            return
        self.probes_out += 1
        self.host.counters.inc(Mib.TcpExtTCPWinProbe)
        avail = seq_diff(seq_add(self.snd_una, self.snd_wnd), self.snd_nxt)
        unsent = seq_diff(self.write_seq, self.snd_nxt)
        if avail > 0 and unsent > 0:
            # The window opened a little: send what fits, even less than an MSS
            # (tcp_write_wakeup), instead of waiting for a window that may never grow.
            last = self._send_new(now, min(avail, self._current_mss(), unsent), fin=False)
            last.flags |= PSH
            return
        # A segment with an old sequence number and no data elicits an ACK with the
        # current window (tcp_xmit_probe_skb).
        self._emit(now, self._segment(now, ACK, seq_add(self.snd_una, -1)))
        self.backoff += 1
        self.reset_xmit_timer(XmitTimer.PROBE0, self.probe0_when(now))

    def push_ignoring_nagle(self, now: float) -> None:
        nodelay, cork = self.sockopts.nodelay, self.sockopts.cork
        self.sockopts.nodelay, self.sockopts.cork = True, False
        try:
            self._push(now)
        finally:
            self.sockopts.nodelay, self.sockopts.cork = nodelay, cork

    def _keepalive_timer(self, now: float) -> None:
        """SO_KEEPALIVE probes (tcp_keepalive_timer), RFC 9293 3.8.4."""
        if not self.sockopts.keepalive or self.state != State.ESTABLISHED:
            return
        idle = now - max(self.last_data_recv, self.last_ack_recv)
        keepalive_time = self.keepalive_time
        if self.packets_out or seq_diff(self.write_seq, self.snd_nxt) > 0 \
                or idle < keepalive_time:
            self.t_keepalive = now + max(keepalive_time - idle, 1.0)
            return
        if self.probes_out >= (self.sockopts.keepcnt or self.config.tcp_keepalive_probes):
            self._send_active_reset(now)
            self._set_error(errno.ETIMEDOUT)
            self.finish(now)
            return
        self.probes_out += 1
        self._emit(now, self._segment(now, ACK, seq_add(self.snd_una, -1)))
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
            elapsed = now - max(self.last_data_recv, self.last_ack_recv)
            self.t_keepalive = now + max(self.keepalive_time - elapsed, 0.0)
        self.host.touch(self)

    def push_pending(self, now: float) -> None:
        """TCP_NODELAY set or TCP_CORK cleared: send what Nagle or the cork held back
        (tcp_push_pending_frames)."""
        self._push(now)
        self.host.touch(self)

    def set_quickack(self, now: float, value: int) -> None:
        """TCP_QUICKACK (__tcp_sock_set_quickack): 0 enters pingpong (delayed ACKs); any other
        value leaves it and sends an ACK that is due (tcp_cleanup_rbuf with ICSK_ACK_PUSHED);
        an even value re-enters pingpong after that ACK."""
        if not value:
            self.pingpong = 1
            return
        self.pingpong = 0
        if self.state in (State.ESTABLISHED, State.CLOSE_WAIT) and self.t_delack is not None:
            if not len(self.rcv_buf) or seq_diff(self.rcv_nxt, self.rcv_wup) > self.rcv_mss:
                self._send_ack(now)
            if not value & 1:
                self.pingpong = 1
        self.host.touch(self)

    def set_congestion_control(self, now: float, name: str) -> None:
        """TCP_CONGESTION on a connection (tcp_reinit_congestion_control): a fresh instance
        of the algorithm, initialised at once when the connection is synchronized."""
        self.cc = make_congestion_control(name)
        if self.state not in (State.CLOSE, State.LISTEN, State.SYN_SENT, State.SYN_RECV):
            self.cc.init(self.ccs, now)

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
        if state == State.ESTABLISHED and self._header_predicted(seg):
            self._rcv_predicted(now, seg)
        elif state == State.SYN_SENT:
            self._rcv_syn_sent(now, seg)
        elif state != State.CLOSE:
            self._rcv_synchronized(now, seg)

    def _header_predicted(self, seg: TcpSegment) -> bool:
        """Header prediction (Van Jacobson's, Linux tcp_rcv_established's fast path): the
        segment is the next one in order, carries only ACK (and PSH), leaves the window
        as it was, holds no SACK blocks and passes PAWS, its data fits the window and the
        buffer, and nothing is out of order. Such a segment needs none of the acceptability
        checks."""
        if seg.flags & ~PSH != ACK or seg.seq != self.rcv_nxt or self.rcv_buf.ofo:
            return False
        if (seg.window << self.snd_wscale) != self.snd_wnd or not self.snd_wnd:
            return False
        opts = seg.options
        if opts.sack_blocks:
            return False
        if self.ts_ok and (opts.ts_val is None or seq_diff(opts.ts_val, self.ts_recent) < 0):
            return False
        if after(seg.ack, self.snd_nxt) or before(seg.ack, self.snd_una):
            return False
        # Its data fits the window and the buffer (Linux checks sk_forward_alloc); else
        # the slow path applies _rcv_room.
        size = len(seg.payload)
        return size <= self._receive_window() and len(self.rcv_buf) + size <= self.rcvbuf

    def _rcv_predicted(self, now: float, seg: TcpSegment) -> None:
        """The fast path: the ACK as always, then the data straight onto the queue."""
        ack.process_ack(self, now, seg)
        if seg.payload:
            self.data_segs_in += 1
            self.last_data_recv = now
            self._queue_in_order(now, seg, seg.payload)
        self._push(now)
        self._ack_snd_check(now)

    def _rcv_syn_sent(self, now: float, seg: TcpSegment) -> None:
        """RFC 9293 3.10.7.3 (tcp_rcv_synsent_state_process)."""
        flags = seg.flags
        e = self.host
        if flags & ACK and not (after(seg.ack, self.iss) and before_eq(seg.ack, self.snd_nxt)):
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
        self.irs = seg.seq
        self.rcv_nxt = seq_add(seg.seq, 1)
        self.rcv_wup = self.rcv_nxt
        cfg = self.config
        self.ts_ok = bool(cfg.tcp_timestamps) and opts.ts_val is not None
        if self.ts_ok:
            self.ts_recent = opts.ts_val or 0
            self.ts_recent_stamp = now
        self.sack_ok = bool(cfg.tcp_sack) and opts.sack_permitted
        self.wscale_ok = bool(cfg.tcp_window_scaling) and opts.wscale is not None
        self.snd_wscale = min(opts.wscale or 0, 14) if self.wscale_ok else 0
        if not self.wscale_ok:
            self.rcv_wscale = 0
        self.mss_clamp = peer_mss(opts)
        self._set_mss()
        if flags & ACK:
            # SYN-ACK: our SYN is acknowledged (RFC 9293 3.10.7.3 fourth check).
            ack.clean_rtx(self, now, seg.ack, seg, self.snd_una)
            self.snd_una = seg.ack
            self.snd_wnd = seg.window  # a SYN's window is never scaled (RFC 7323 2.2)
            self.max_window = self.snd_wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = seg.ack
            self.backoff = 0
            self.retransmits = 0
            self.t_rto = None
            self.retrans_stamp = 0.0
            self._init_transfer(now)
            self.set_state(now, State.ESTABLISHED)
            self._enter_quickack()
            self._send_ack(now)
            self._push(now)
        else:
            # Simultaneous open (RFC 9293 3.10.7.3, figure 8): SYN_RECV, send SYN-ACK.
            self.snd_wnd = seg.window
            self.snd_wl1 = seg.seq
            self.set_state(now, State.SYN_RECV)
            self._send_synack(now)

    def _send_synack(self, now: float) -> None:
        ts_val = self.ts_now(now) if self.ts_ok else None
        seg = syn_segment(self.local_port, self.remote_port, self.iss, self.rcv_nxt,
                          rcv_wnd=self.rcv_wnd, mss=self.advmss, rcv_wscale=self.rcv_wscale,
                          ts_val=ts_val, ts_ecr=self.ts_recent, sack=self.sack_ok,
                          wscale=self.wscale_ok)
        self.segs_out += 1
        self.host.emit(self.local_ip, self.remote_ip, seg)
        self.arm_rto(now)

    def _sequence_ok(self, seg: TcpSegment) -> bool:
        """RFC 9293 3.10.7.4 acceptability, as Linux tcp_sequence checks it: the segment
        must not end before RCV.WUP nor start beyond the right edge of the window."""
        end = seq_add(seg.seq, seg.seg_len)
        if before(end, self.rcv_wup):
            return False
        return not after(seg.seq, seq_add(self.rcv_nxt, self._receive_window()))

    def _send_dupack_limited(self, now: float, seg: TcpSegment) -> None:
        """ACK an unacceptable segment, rate-limited for pure ACKs and SYNs
        (tcp_send_dupack, tcp_oow_rate_limited with tcp_invalid_ratelimit)."""
        if seg.payload and not seg.flags & SYN:
            self._enter_quickack()
            self._send_ack(now)
            return
        if now - self.last_oow_ack < self.config.tcp_invalid_ratelimit / 1000.0:
            self.host.counters.inc(Mib.TcpExtTCPACKSkippedSeq)
            return
        self.last_oow_ack = now
        self._send_ack(now)

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
        self._send_ack(now)

    def _paws_reject(self, now: float, seg: TcpSegment) -> bool:
        """RFC 7323 5.3 R1: a TSval older than TS.Recent marks an old duplicate, unless
        TS.Recent was never set, is older than 24 days (5.5), lags by one tick only
        (TCP_PAWS_WINDOW), or the segment is a reordered duplicate ACK (tcp_paws_discard,
        tcp_disordered_ack)."""
        opts = seg.options
        if not self.ts_ok or opts.ts_val is None or not self.ts_recent:
            return False
        lag = seq_diff(self.ts_recent, opts.ts_val)
        if lag <= TCP_PAWS_WINDOW or now - self.ts_recent_stamp > TCP_PAWS_24DAYS:
            return False
        disordered_ack = (seg.flags & (ACK | SYN | FIN | RST) == ACK and not seg.payload
                          and seg.seq == self.rcv_nxt and seg.ack == self.snd_una
                          and (seg.window << self.snd_wscale) == self.snd_wnd
                          and lag <= self.rto_value() * 1024)
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
        if not self._sequence_ok(seg):
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
            if seg.seq == self.rcv_nxt:
                self._reset_by_peer(now)
            else:
                self.send_challenge_ack(now)
            return
        # 4. SYN in a synchronized state (RFC 5961 4.2): challenge ACK.
        if flags & SYN:
            c.inc(Mib.TcpExtTCPSYNChallenge)
            self.send_challenge_ack(now)
            return
        # 5. ACK.
        if not flags & ACK:
            c.inc(Mib.UstcpDropNoAck)
            return
        if self.state == State.SYN_RECV:
            if not (after(seg.ack, self.snd_una) and before_eq(seg.ack, self.snd_nxt)):
                self.host.send_reset_for(self.local_ip, self.remote_ip, seg)
                return
            self.snd_wnd = seg.window << self.snd_wscale
            ack.clean_rtx(self, now, seg.ack, seg, self.snd_una)
            self.snd_una = seg.ack
            self.t_rto = None
            self.backoff = self.retransmits = 0
            self._init_transfer(now)
            self.set_state(now, State.ESTABLISHED)
        if not ack.process_ack(self, now, seg):
            return
        if self.state == State.CLOSE:
            return
        # 6/7. Data and FIN.
        end = seq_add(seg.seq, len(seg.payload))
        if self.rcv_shutdown and self.state in (State.FIN_WAIT1, State.FIN_WAIT2) \
                and seg.payload and after(end, self.rcv_nxt):
            # Data for a socket that can no longer read it (tcp_rcv_state_process).
            c.inc(Mib.TcpExtTCPAbortOnData)
            self._send_active_reset(now)
            self._set_error(errno.ECONNRESET)
            self.finish(now)
            return
        if seg.payload or flags & FIN:
            self._data_queue(now, seg)
        self._push(now)
        self._ack_snd_check(now)

    def _reset_by_peer(self, now: float) -> None:
        """A valid RST (RFC 9293 3.10.7.4, Linux tcp_reset)."""
        if self.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            self.host.counters.inc(Mib.TcpEstabResets)
        if self.state == State.SYN_RECV or self.state == State.SYN_SENT:
            self._set_error(errno.ECONNREFUSED)
        elif self.state == State.CLOSE_WAIT:
            self._set_error(errno.EPIPE)
        elif not self.orphan:
            self._set_error(errno.ECONNRESET)
        log.info("reset_received", conn=self.name, state=self.state.name)
        self.rcv_buf.discard()
        self.finish(now)

    def enter_time_wait(self, now: float) -> None:
        """Hand the connection to the TIME_WAIT table (tcp_time_wait) and finish it."""
        self.host.enter_time_wait(now, TimeWaitEntry(
            key=self.key, snd_nxt=self.snd_nxt, rcv_nxt=self.rcv_nxt,
            rcv_wnd=min(self.rcv_wnd >> self.rcv_wscale, 65535), rcv_wscale=self.rcv_wscale,
            ts_ok=self.ts_ok, ts_recent=self.ts_recent, ts_recent_stamp=self.ts_recent_stamp,
            ts_offset=self.ts_offset, last_seen=now - 1.0, expires=now + TCP_TIMEWAIT_LEN),
            self.name, self.rtt.rto)
        self.finish(now)

    # ------------------------------------------------------------------ receiving data

    def _enter_quickack(self) -> None:
        """tcp_enter_quickack_mode: ACK the next segments at once."""
        quickacks = self.rcv_wnd // (2 * max(self.rcv_mss, 1)) or 2
        self.quick = max(self.quick, min(quickacks, TCP_MAX_QUICKACKS))
        self.pingpong = 0
        self.ato = TCP_ATO_MIN
        self.ack_now = True
        self.ack_scheduled = True

    def _event_data_recv(self, now: float, length: int) -> None:
        """Adapt ATO and quick-ack credit to the arrival pattern (tcp_event_data_recv)."""
        if not self.ato:
            quickacks = self.rcv_wnd // (2 * max(self.rcv_mss, 1)) or 2
            self.quick = max(self.quick, min(quickacks, TCP_MAX_QUICKACKS))
            self.ato = TCP_ATO_MIN
        else:
            m = now - self.lrcvtime
            if m <= TCP_ATO_MIN / 2:
                self.ato = self.ato / 2 + TCP_ATO_MIN / 2
            elif m < self.ato:
                self.ato = min(self.ato / 2 + m, self.rto_value())
            elif m > self.rto_value():
                quickacks = self.rcv_wnd // (2 * max(self.rcv_mss, 1)) or 2
                self.quick = max(self.quick, min(quickacks, TCP_MAX_QUICKACKS))
        self.lrcvtime = now
        if length >= self.rcv_mss:
            self.rcv_mss = min(length, self.advmss)  # tcp_measure_rcv_mss
        if self.rcv_ssthresh < self.window_clamp and self._free_space() > self.rcv_ssthresh:
            self.rcv_ssthresh = min(self.rcv_ssthresh + 2 * self.advmss, self.window_clamp)

    def _rcv_room(self, seq: int) -> int:
        """Bytes from ``seq`` we can take: what the buffer has free, and the window already
        promised (a window is a promise; rounding it to the scale unit may exceed the
        buffer by a little, which the buffer absorbs) up to a bound past the buffer: the
        never-shrinking window creeps by the rounding on every ACK, and with a scale unit
        above the MSS it would never close (Linux's memory check, tcp_try_rmem_schedule,
        bounds it the same way). The bound is one scale unit or a sixteenth of the buffer,
        the free space below which the window is already zero (_select_window_raw)."""
        used = len(self.rcv_buf) + self.rcv_buf.ofo_bytes
        promised = seq_diff(seq_add(self.rcv_nxt, self._receive_window()), seq)
        slack = max(1 << self.rcv_wscale, self.rcvbuf >> 4)
        return max(self.rcvbuf - used, min(promised, self.rcvbuf + slack - used))

    def _rcv_rtt_measure(self, now: float, ts_ecr: int) -> None:
        """The receiver's RTT from the echo of our TSval (tcp_rcv_rtt_measure_ts)."""
        sample = seq_diff(self.ts_now(now), ts_ecr) / 1000.0
        if 0 < sample < 60.0:
            self.rcv_rtt = sample if not self.rcv_rtt else self.rcv_rtt * 7 / 8 + sample / 8

    def _data_queue(self, now: float, seg: TcpSegment) -> None:
        """Accept segment text and FIN (RFC 9293 3.10.7.4 seventh/eighth; tcp_data_queue)."""
        c = self.host.counters
        payload = seg.payload
        seq = seg.seq
        length = len(payload)
        fin = bool(seg.flags & FIN)
        self.ack_scheduled = True
        if self.state not in _RCV_DATA_STATES:
            return  # data after the peer's FIN (RFC 9293: ignore)
        if length:
            self.data_segs_in += 1
            self.last_data_recv = now
        end = seq_add(seq, length)
        if before(seq, self.rcv_nxt):
            if not after(end, self.rcv_nxt) and not (fin and end == self.rcv_nxt):
                # A complete duplicate: D-SACK it and ACK at once (tcp_data_queue).
                if length:
                    self.pending_dsack = (seq, end)
                    c.inc(Mib.TcpExtDelayedACKLost)
                self._enter_quickack()
                return
            # Partial overlap: D-SACK the old part, keep the rest.
            self.pending_dsack = (seq, self.rcv_nxt)
            skip = seq_diff(self.rcv_nxt, seq)
            payload = memoryview(payload)[skip:]
            seq = self.rcv_nxt
            length = len(payload)
        if seq == self.rcv_nxt:
            if length and self._receive_window() == 0:
                c.inc(Mib.TcpExtTCPZeroWindowDrop)
                self._enter_quickack()
                return
            room = self._rcv_room(seq)
            if length > room:
                c.inc(Mib.TcpExtTCPRcvQDrop)
                self._enter_quickack()
                # Out of memory: offer a zero window at once, shrinking it (Linux
                # ICSK_ACK_NOMEM in tcp_select_window); the sender probes until we read.
                self.rcv_wnd, self.rcv_wup = 0, self.rcv_nxt
                if room <= 0:
                    return
                payload, length, fin = memoryview(payload)[:room], room, False
                end = seq_add(seq, room)
            if length:
                self._queue_in_order(now, seg, payload)
            if fin:
                self._rcv_fin(now)
            if self.rcv_buf.ofo:
                for chunk in self.rcv_buf.ofo_pop_ready(self.rcv_nxt):
                    self.rcv_buf.push(chunk)
                    self.rcv_nxt = seq_add(self.rcv_nxt, len(chunk))
                    self.bytes_received += len(chunk)
                if not self.rcv_buf.ofo:
                    self.ack_now = True  # RFC 5681 4.2: ACK at once when a gap fills
                if self.ofo_fin is not None and self.ofo_fin == self.rcv_nxt:
                    self.ofo_fin = None
                    self._rcv_fin(now)
            self.host.wake(self)
            return
        # Out of order (tcp_data_queue_ofo): queue it, ACK at once with SACK.
        if length > self._rcv_room(seq) or (length and not self.rcv_buf.ofo_schedule(
                self.rcv_nxt, seq, length, self.rcvbuf, c)):
            c.inc(Mib.TcpExtTCPOFODrop)
            self.ack_now = True
            return
        c.inc(Mib.TcpExtTCPOFOQueue)
        if length:
            dsack = self.rcv_buf.ofo_insert(self.rcv_nxt, seq, payload)
            if dsack is not None:
                self.pending_dsack = dsack
                c.inc(Mib.TcpExtTCPOFOMerge)  # every byte was already queued
        if fin:
            self.ofo_fin = end
        self.ack_now = True

    def _queue_in_order(self, now: float, seg: TcpSegment, payload: bytes | memoryview) -> None:
        """Data that starts at RCV.NXT and fits: onto the receive queue (tcp_queue_rcv)."""
        length = len(payload)
        self.ack_scheduled = True
        self.rcv_buf.push(payload)
        self.rcv_nxt = seq_add(self.rcv_nxt, length)
        self.bytes_received += length
        self._event_data_recv(now, length)
        if self.ts_ok and seg.options.ts_ecr:
            self._rcv_rtt_measure(now, seg.options.ts_ecr)
        self.host.wake(self)

    def _rcv_fin(self, now: float) -> None:
        """The peer's FIN is in order (tcp_fin)."""
        self.rcv_nxt = seq_add(self.rcv_nxt, 1)
        self.fin_received = True
        self.ack_scheduled = True
        self.host.wake(self)
        if self.state == State.ESTABLISHED:
            self.set_state(now, State.CLOSE_WAIT)
            self.pingpong = 1
        elif self.state == State.FIN_WAIT1:
            # Simultaneous close (RFC 9293 3.6): our FIN is not yet acknowledged.
            self.ack_now = True
            self.set_state(now, State.CLOSING)
        elif self.state == State.FIN_WAIT2:
            self._send_ack(now)
            self.enter_time_wait(now)

    def _ack_snd_check(self, now: float) -> None:
        """Send the ACK now or delay it (__tcp_ack_snd_check)."""
        if not self.ack_scheduled or self.state == State.CLOSE:
            return
        if self.ack_now or self.rcv_buf.ofo or (self.quick and not self.pingpong) or (
                seq_diff(self.rcv_nxt, self.rcv_wup) > self.rcv_mss
                and self._select_window_raw() >= self.rcv_wnd):
            self._send_ack(now)
            return
        self._send_delayed_ack(now)

    def _send_delayed_ack(self, now: float) -> None:
        """Arm the delayed-ACK timer (tcp_send_delayed_ack, RFC 9293 3.8.6.3)."""
        ato = self.ato
        if ato > TCP_DELACK_MIN:
            max_ato = TCP_DELACK_MAX if self.pingpong else 0.5
            if self.rtt.has_sample:
                rtt = max(self.rtt.srtt_us / 1e6, TCP_DELACK_MIN)
                max_ato = min(max_ato, rtt)
            ato = min(ato, max_ato)
        if ato <= 0:
            self._send_ack(now)
            return
        timeout = now + ato
        if self.t_delack is not None:
            if self.t_delack <= now + ato / 4:
                self._send_ack(now)
                return
            timeout = min(timeout, self.t_delack)
        self.t_delack = timeout

    # ------------------------------------------------------------------ introspection

    def tcp_info(self, now: float) -> dict[str, int]:
        """A struct tcp_info snapshot with Linux's field names (include/uapi/linux/tcp.h)."""
        ccs = self.ccs
        options = 0
        if self.ts_ok:
            options |= 1  # TCPI_OPT_TIMESTAMPS
        if self.sack_ok:
            options |= 2  # TCPI_OPT_SACK
        if self.wscale_ok:
            options |= 4  # TCPI_OPT_WSCALE
        rto = self.rto_value()
        return {
            "tcpi_state": int(self.state),
            "tcpi_ca_state": ccs.ca_state,
            "tcpi_retransmits": self.retransmits,
            "tcpi_probes": self.probes_out,
            "tcpi_backoff": self.backoff,
            "tcpi_options": options,
            "tcpi_snd_wscale": self.snd_wscale,
            "tcpi_rcv_wscale": self.rcv_wscale,
            "tcpi_rto": int(rto * 1e6),
            "tcpi_ato": int(self.ato * 1e6),
            "tcpi_snd_mss": self.mss,
            "tcpi_rcv_mss": self.rcv_mss,
            "tcpi_unacked": self.packets_out,
            "tcpi_sacked": self.sacked_out,
            "tcpi_lost": self.lost_out,
            "tcpi_retrans": self.retrans_out,
            "tcpi_last_data_recv": int((now - self.last_data_recv) * 1000),
            "tcpi_last_ack_recv": int((now - self.last_ack_recv) * 1000),
            "tcpi_pmtu": self.host.mss_for_mtu + 40,
            "tcpi_rcv_ssthresh": self.rcv_ssthresh,
            "tcpi_rtt": self.rtt.srtt_us,
            "tcpi_rttvar": self.rtt.rttvar_us,
            "tcpi_snd_ssthresh": ccs.snd_ssthresh,
            "tcpi_snd_cwnd": ccs.snd_cwnd,
            "tcpi_advmss": self.advmss - (TS_OPTION_LEN if self.ts_ok else 0),
            "tcpi_reordering": self.reordering,
            "tcpi_rcv_space": self.rcv_wnd,
            "tcpi_total_retrans": self.total_retrans,
            "tcpi_bytes_acked": self.bytes_acked,
            "tcpi_bytes_received": self.bytes_received,
            "tcpi_bytes_sent": self.bytes_sent,
            "tcpi_bytes_retrans": self.bytes_retrans,
            "tcpi_segs_out": self.segs_out,
            "tcpi_segs_in": self.segs_in,
            "tcpi_data_segs_in": self.data_segs_in,
            "tcpi_data_segs_out": self.data_segs_out,
            "tcpi_notsent_bytes": max(0, seq_diff(self.write_seq, self.snd_nxt)),
            "tcpi_min_rtt": self.rtt.min_rtt_us,
            "tcpi_delivered": self.delivered,
            "tcpi_snd_wnd": self.snd_wnd,
            "tcpi_rcv_wnd": self.rcv_wnd,
            "tcpi_reord_seen": self.reord_seen,
        }


_ERRNO_TYPES: dict[int, type[OSError]] = {
    errno.ECONNRESET: ConnectionResetError,
    errno.ECONNREFUSED: ConnectionRefusedError,
    errno.ETIMEDOUT: TimeoutError,
    errno.EPIPE: BrokenPipeError,
}
