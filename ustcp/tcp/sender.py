"""The sending half of a connection (Linux tcp_output.c, the sender's side of tcp_input.c
and tcp_timer.c's retransmission and persist timers; gVisor's snd.go).

Sequence space on the send side::

      SND.UNA            SND.NXT                 write_seq
    ----|------------------|-----------------------|-------
        | sent, unacked    | written, not yet sent |
        |<------- snd_buf (bytes from SND.UNA) ------>|

:class:`Sender` alone writes SND.UNA, SND.NXT, SND.WND and the window-update marks, the
send buffer, the retransmission queue (through :class:`~ustcp.tcp.rtxqueue.RtxQueue`),
the RTT estimator and the RTO's backoff, the transmit timer (RTO, loss probe, reorder
timeout) and the persist timer, the congestion state (cwnd, ssthresh, the CA state, PRR,
RACK, TLP) and the send statistics. It builds every segment the connection sends,
taking the ACK number, the window and the timestamps from the :class:`Receiver`.

What an ACK does to it is :mod:`ustcp.tcp.ack` (tcp_ack); loss recovery is
:mod:`ustcp.tcp.recovery` (tcp_fastretrans_alert, RACK-TLP, PRR): functions over a
Sender, the way Linux keeps them in other files. Congestion accounting is in packets like
Linux (tcpi_snd_cwnd): a transmitted segment of ``n`` bytes counts ceil(n / MSS) packets,
so a 64 KB GSO segment is many packets.

Functions here, by Linux name: tcp_write_xmit (:meth:`Sender.push`), tcp_transmit_skb
(:meth:`Sender.segment`), tcp_retransmit_skb, tcp_fragment (through the queue),
tcp_nagle_check, tcp_cwnd_validate, tcp_cwnd_restart, tcp_event_new_data_sent,
inet_csk_reset_xmit_timer (:meth:`Sender.reset_xmit_timer`), tcp_set_xmit_timer,
tcp_retransmit_timer, tcp_write_timeout, tcp_probe_timer, tcp_send_probe0,
tcp_schedule_loss_probe, tcp_enter_loss, tcp_sync_mss, tcp_sndbuf_expand.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final, Protocol

import structlog

from ..config import StackConfig
from ..mib import Mib
from ..wire.addr import conn_name
from ..wire.tcp import ACK, CWR, ECE, FIN, PSH, RST, TcpOptions, TcpSegment
from . import ecn, mtu_probe, pacing, tso
from .buffers import SendBuffer
from .chrono import CHRONO_BUSY, CHRONO_RWND_LIMITED, CHRONO_SNDBUF_LIMITED, Chrono
from .congestion import make_congestion_control
from .congestion.base import (
    CA_CWR,
    CA_DISORDER,
    CA_LOSS,
    CA_OPEN,
    CA_RECOVERY,
    CcState,
    CwndEvent,
)
from .fastopen import TFO_CLIENT_NO_COOKIE
from .host import Host, Wakeable
from .options import MAX_TCP_OPTION_SPACE, TS_OPTION_LEN, SockOpts, sndbuf_size, syn_segment
from .receiver import TCP_INIT_CWND, Receiver
from .rto import TCP_RTO_MAX, TCP_RTO_MIN, TCP_TIMEOUT_INIT, RtoEstimator
from .rtxqueue import RtxQueue, TxRecord
from .seq import after, before, seq_add, seq_diff
from .states import SYNCHRONIZED, State
from .timers import XmitTimer
from .undo import Undo

log = structlog.get_logger("ustcp.tcp")

# States with data or a FIN that may still be waiting to go out: after close() or
# shutdown(SHUT_WR) the FIN follows queued data, and the peer's FIN may arrive before it
# leaves (CLOSING, LAST_ACK).
SEND_STATES: Final = frozenset({State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT1,
                         State.CLOSING, State.LAST_ACK})


class Owner(Wakeable, Protocol):
    """What the sender reads of the connection that holds it (never writes); the host
    wakes it when writers may have room or its status changed."""

    @property
    def state(self) -> State: ...

    @property
    def orphan(self) -> bool: ...


class Sender:
    """The send side of one connection."""

    __slots__ = (
        "backoff",
        "bytes_acked",
        "bytes_retrans",
        "bytes_sent",
        "cc",
        "ccs",
        "chrono",
        "config",
        "cwnd_limited",
        "cwnd_usage_seq",
        "data_segs_out",
        "delivered",
        "dsack_dups",
        "ecn_flags",
        "eor_marks",
        "fastopen_child",
        "fastopen_req",
        "fastopen_syn_data",
        "fin_acked",
        "fin_queued",
        "fin_sent",
        "high_seq",
        "host",
        "iss",
        "last_ack_recv",
        "last_send",
        "local_ip",
        "local_port",
        "max_packets_out",
        "max_window",
        "mss",
        "mss_clamp",
        "mtup",
        "nagle_cork",
        "nagle_push",
        "nospace",
        "owner",
        "pacing_timer",
        "pmtu_cookie",
        "probes_out",
        "probes_tstamp",
        "prr_delivered",
        "prr_out",
        "psh_mark",
        "push_marks",
        "pushed_seq",
        "rack_advanced",
        "rack_end_seq",
        "rack_mstamp",
        "rack_rtt_us",
        "rcv",
        "remote_ip",
        "remote_port",
        "reord_seen",
        "reordering",
        "retrans_stamp",
        "retransmits",
        "rtt",
        "rtx",
        "sack_ok",
        "segs_out",
        "snd_buf",
        "snd_nxt",
        "snd_sml",
        "snd_una",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "sockopts",
        "syn_data_acked",
        "syn_fastopen",
        "syn_fastopen_exp",
        "syn_wscale_ok",
        "t_probe0",
        "t_rto",
        "tlp_high_seq",
        "tlp_retrans",
        "total_retrans",
        "tsq_throttled",
        "undo",
        "uto_stamp",
        "wmem_alloc",
        "write_seq",
        "wstamp",
        "xmit_timer",
    )

    def __init__(self, host: Host, owner: Owner, rcv: Receiver, rtt: RtoEstimator,
                 key: tuple[bytes, int, bytes, int], sockopts: SockOpts, now: float) -> None:
        cfg: StackConfig = host.config
        self.host = host
        self.config = cfg
        self.owner = owner
        self.rcv = rcv
        self.local_ip, self.local_port, self.remote_ip, self.remote_port = key
        self.sockopts = sockopts
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
        self.nospace = False  # SOCK_NOSPACE: a write found the send buffer full
        self.fin_queued = False  # shutdown(SHUT_WR) or close(): FIN follows the data
        self.fin_sent = False
        self.fin_acked = False
        self.snd_sml = 0  # end of the last small segment sent (Nagle, Minshall's variant)
        # Where the last write without MSG_MORE ended (tcp_mark_push): the segment ending
        # there carries PSH; None once a MSG_MORE write has appended to that unsent data.
        self.psh_mark: int | None = None
        self.pushed_seq = 0  # the last tcp_mark_push (forced_push counts from there)
        # Ends of skbs that forced_push marked, unacknowledged (PSH mid-write).
        self.push_marks: deque[int] = deque()
        # Where an unsent MSG_EOR write ends (TCP_SKB_CB(skb)->eor), ascending: no later
        # write joins that skb and no packet crosses its end (tcp_skb_can_collapse_to)
        self.eor_marks: deque[int] = deque()
        self.chrono = Chrono()  # tcpi_busy_time, tcpi_rwnd_limited, tcpi_sndbuf_limited
        self.nagle_cork = False  # this push is a MSG_MORE write's (TCP_NAGLE_CORK)
        self.nagle_push = False  # TCP_NAGLE_PUSH: NODELAY set or cork removed, until new data
        self.ecn_flags = 0  # tcp/ecn.py TCP_ECN_* (tp->ecn_flags)
        self.fastopen_child = False  # made by a Fast Open SYN (tp->syn_fastopen_child)
        self.syn_wscale_ok = False  # a Fast Open child's SYN-ACK announces window scaling
        self.fastopen_req = False  # an active open asking for Fast Open (tp->fastopen_req)
        self.fastopen_syn_data = 0  # bytes our SYN carried (tp->syn_data)
        self.syn_fastopen = False  # our SYN carried a Fast Open option (tp->syn_fastopen)
        self.syn_fastopen_exp = False  # ... in the experimental form (tp->syn_fastopen_exp)
        # Data in the SYN was taken: ours acknowledged by the SYN-ACK, or a Fast Open
        # child's SYN carried some (tp->syn_data_acked; TCPI_OPT_SYN_DATA)
        self.syn_data_acked = False
        self.rtx = RtxQueue()  # the retransmission queue and SACK scoreboard
        self.sack_ok = False
        # MSS.
        self.mss_clamp = 536  # what the peer announced
        self.mss = 536  # effective send MSS: payload bytes per segment, options excluded
        self.pmtu_cookie = host.path_mtu(self.remote_ip)  # icsk_pmtu_cookie: the MSS's MTU
        self.mtup = mtu_probe.init(cfg, self.remote_ip, self.pmtu_cookie, now)  # icsk_mtup
        # Retransmission and persist timers.
        self.rtt = rtt
        self.backoff = 0
        self.retransmits = 0  # consecutive timeouts (icsk_retransmits)
        self.retrans_stamp = 0.0
        self.uto_stamp = 0.0  # the first RTO-driven retransmission: TCP_USER_TIMEOUT's start
        self.probes_out = 0  # zero-window or keepalive probes unanswered (icsk_probes_out)
        self.probes_tstamp: float | None = None  # the first unanswered window probe
        self.t_rto: float | None = None  # the retransmit timer, which also serves as
        self.xmit_timer = XmitTimer.RTO  # ... the loss probe and the RACK reorder timer
        self.t_probe0: float | None = None
        # Congestion control (Linux tcp_sock fields, in packets).
        self.cc = make_congestion_control(sockopts.congestion or cfg.tcp_congestion_control)
        self.ccs = CcState(mss=536)
        # Pacing (tcp/pacing.py). SO_MAX_PACING_RATE set before the connection existed (on
        # its listener, or before connect) caps the rate and asks for internal pacing.
        self.ccs.pacing_rate = sockopts.max_pacing_rate
        if sockopts.max_pacing_rate != pacing.PACING_UNLIMITED:
            self.ccs.pacing_status = pacing.SK_PACING_NEEDED
        self.wstamp = now  # tcp_wstamp_ns: the next packet's earliest departure, seconds
        self.pacing_timer: float | None = None  # tp->pacing_timer (internal pacing)
        # TCP Small Queues: the truesize of our packets a qdisc still holds (sk_wmem_alloc;
        # the host's qdisc charges and releases it), and TSQ_THROTTLED
        self.wmem_alloc = 0
        self.tsq_throttled = False
        self.high_seq = 0
        self.undo = Undo()  # undo of spurious reductions, F-RTO (undo.py)
        # RACK (RFC 8985, Linux tcp_recovery.c) and TLP.
        self.rack_mstamp = -1.0  # send time of the most recently sent delivered record
        self.rack_end_seq = 0
        self.rack_rtt_us = 0
        self.rack_advanced = False
        self.reord_seen = 0
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
        self.bytes_sent = 0
        self.bytes_retrans = 0
        self.segs_out = 0
        self.data_segs_out = 0
        self.total_retrans = 0
        self.dsack_dups = 0  # duplicate segments D-SACKed (tcpi_dsack_dups)
        self.delivered = 0
        self.last_ack_recv = now

    # ------------------------------------------------------------------ set-up

    def init_seq(self, iss: int) -> None:
        """Our ISN: SND.UNA and SND.NXT start there, the SYN takes one number."""
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.write_seq = seq_add(iss, 1)
        self.pushed_seq = self.write_seq
        self.snd_sml = iss
        self.high_seq = iss

    def sync_mss(self, mss_clamp: int) -> None:
        """Effective send MSS (tcp_sync_mss / tcp_current_mss): what the path MTU allows
        (and PLPMTUD's search, mtu_probe.clamp), the peer's MSS (``mss_clamp``), the user's
        TCP_MAXSEG clamp, less the timestamp option every segment carries."""
        self.mss_clamp = mss_clamp
        self.pmtu_cookie = self.host.path_mtu(self.remote_ip)
        mss = mtu_probe.clamp(self, min(mss_clamp, self.host.mss_for(self.remote_ip)),
                              self.pmtu_cookie)
        if self.sockopts.maxseg:
            mss = min(mss, self.sockopts.maxseg)
        if self.rcv.ts_ok:
            mss -= TS_OPTION_LEN
        self.mss = max(mss, 48)
        self.ccs.mss = self.mss

    @property
    def send_space(self) -> int:
        """Room a writer is offered (sk_stream_is_writeable, which wakes a blocked writer
        and sets POLLOUT): what is left of the send buffer once the queued skbs' truesize
        (sk_wmem_queued) is counted, and none until that is at least half of what is queued,
        a third of the buffer free (sk_stream_wspace >= sk_stream_min_wspace), nor while
        the unsent bytes are more than half of TCP_NOTSENT_LOWAT."""
        queued = self.snd_buf.wmem_queued
        space = self.sndbuf() - queued
        return space if space >= queued >> 1 and self._notsent_ok(1) else 0

    def check_space(self, now: float) -> None:
        """tcp_check_space, after an arriving segment and the push it allowed: a writer
        that found the buffer full (SOCK_NOSPACE) is woken once ``send_space`` offers room
        again (sk_stream_write_space), and SOCK_NOSPACE clears: one wake-up per shortage,
        which is what an edge-triggered EPOLLOUT reports; the send buffer no longer limits."""
        if self.nospace and self.send_space:
            self.nospace = False
            self.host.wake(self.owner)
            self.chrono.stop(now, CHRONO_SNDBUF_LIMITED, self.queues_empty())

    def queues_empty(self) -> bool:
        """tcp_rtx_and_write_queues_empty: nothing in flight and nothing unsent."""
        return not self.rtx.records and self.write_seq == self.snd_nxt

    def _notsent_ok(self, wake: int) -> bool:
        """tcp_stream_memory_free: fewer unsent bytes than TCP_NOTSENT_LOWAT (or the
        tcp_notsent_lowat sysctl), half as many for a wake-up or POLLOUT."""
        lowat = self.sockopts.notsent_lowat or self.config.tcp_notsent_lowat
        return self.unsent() << wake < lowat

    def sndbuf(self) -> int:
        """SO_SNDBUF, or Linux's autotuning (tcp_sndbuf_expand): room for twice the
        congestion window, between tcp_wmem[1] and tcp_wmem[2]."""
        locked = sndbuf_size(self.sockopts)
        if locked:
            return locked
        _, default, hi = self.config.tcp_wmem
        want = 2 * max(self.ccs.snd_cwnd, self.reordering + 1) * (self.mss + 200)
        return max(default, min(hi, want * 2))

    def segment(self, now: float, flags: int, seq: int, payload: bytes | memoryview = b"",
                 *, with_sack: bool = True) -> TcpSegment:
        opts = TcpOptions()
        rcv = self.rcv
        if rcv.ts_ok:
            opts.ts_val = rcv.ts_now(now)
            opts.ts_ecr = rcv.ts_recent
        if not flags & ACK:
            return TcpSegment(self.local_port, self.remote_port, seq, 0, flags, 0, opts,
                              payload)
        if with_sack and self.sack_ok and (rcv.rcv_buf.ofo or rcv.pending_dsack is not None):
            blocks = rcv.sack_blocks(3 if rcv.ts_ok else 4)
            if blocks:
                opts.sack_blocks = tuple(blocks)
        window = rcv.select_window(self.owner.state == State.SYN_SENT)
        if self.ecn_flags & ecn.TCP_ECN_DEMAND_CWR:
            flags |= ECE  # echo the CE mark until the peer's CWR (tcp_ecn_send)
        return TcpSegment(self.local_port, self.remote_port, seq, rcv.rcv_nxt, flags, window,
                          opts, payload)

    def emit(self, now: float, seg: TcpSegment) -> None:
        self.segs_out += seg.pcount  # tcpi_segs_out counts wire segments, as Linux's
        if seg.flags & ACK:
            self.rcv.ack_sent()
        self.transmit(now, seg)

    def stamp(self, now: float) -> float:
        """__tcp_transmit_skb: the packet leaves at tcp_wstamp_ns, caught up with the clock
        (its send time for RTT samples and RACK, its TSval). Returns the stamp as it was
        before, for :meth:`after_send`."""
        prior = self.wstamp
        if now > prior:
            self.wstamp = now
        return prior

    def after_send(self, size: int, prior: float) -> None:
        """tcp_update_skb_after_send: a paced socket's next packet leaves ``size`` bytes
        later at the pacing rate (tcp/pacing.py)."""
        if self.ccs.pacing_status != pacing.SK_PACING_NONE:
            self.wstamp = pacing.advance(self.wstamp, prior, size, self.ccs.pacing_rate,
                                         self.data_segs_out)

    def transmit(self, now: float, seg: TcpSegment) -> None:
        """Hand a segment to the host stamped with its departure time (skb->tstamp), which a
        qdisc like fq honours. A segment stamped ahead of the clock carries that time in
        its TSval, as Linux's (tcp_skb_timestamp_ts)."""
        self.stamp(now)
        if self.wstamp > now and seg.options.ts_val is not None:
            seg.options.ts_val = self.rcv.ts_now(self.wstamp)
        seg.tstamp = self.wstamp
        self.host.xmit(now, self.local_ip, self.remote_ip, seg)

    def update_pacing_rate(self) -> None:
        """tcp_update_pacing_rate (after each ACK's tcp_cong_control and when a passive open
        completes): sk_pacing_rate from cwnd, MSS and SRTT, at most SO_MAX_PACING_RATE."""
        ccs = self.ccs
        rate = tso.pacing_rate(self.config, self.mss, ccs.snd_cwnd, ccs.snd_ssthresh,
                               self.rtx.packets_out, self.rtt.srtt8_us)
        ccs.pacing_rate = min(rate, self.sockopts.max_pacing_rate)

    def set_max_pacing_rate(self) -> None:
        """SO_MAX_PACING_RATE was set (sk_setsockopt): a limited rate asks for pacing
        (SK_PACING_NONE becomes SK_PACING_NEEDED: TCP paces itself unless fq does), and
        the current rate falls to it at once."""
        ccs, rate = self.ccs, self.sockopts.max_pacing_rate
        if rate != pacing.PACING_UNLIMITED and ccs.pacing_status == pacing.SK_PACING_NONE:
            ccs.pacing_status = pacing.SK_PACING_NEEDED
        ccs.pacing_rate = min(ccs.pacing_rate, rate)

    def pacing_check(self, now: float) -> bool:
        """tcp_pacing_check: under internal pacing nothing leaves before tcp_wstamp_ns; the
        pacing timer (tcp_pace_kick) sends again then. True: hold."""
        if self.ccs.pacing_status != pacing.SK_PACING_NEEDED or self.wstamp <= now:
            return False
        if self.pacing_timer is None:
            self.pacing_timer = self.wstamp
        return True

    def small_queue_check(self, size: int) -> bool:
        """tcp_small_queue_check: with more than about two packets (or 1 ms at the pacing
        rate) of ours in the qdisc, stop (TSQ_THROTTLED) until it releases one, unless the
        retransmission queue holds one skb at most. True: hold."""
        if not self.wmem_alloc:
            return False
        limit = pacing.small_queue_limit(size, self.ccs.pacing_rate,
                                         self.config.tcp_limit_output_bytes,
                                         tso.SK_PACING_SHIFT)
        if self.wmem_alloc + 1 <= limit or len(self.rtx.records) <= 1:
            return False  # (sk_wmem_alloc counts one for the socket itself)
        self.tsq_throttled = True
        return True

    def send_ack(self, now: float) -> None:
        self.emit(now, self.segment(now, ACK, self.snd_nxt))

    def send_active_reset(self, now: float) -> None:
        """RST for a connection we abort (tcp_send_active_reset): carries ACK and TS."""
        self.host.counters.inc(Mib.TcpOutRsts)
        seg = self.segment(now, RST | ACK, self.snd_nxt, with_sack=False)
        self.transmit(now, seg)

    def send_syn(self, now: float) -> None:
        cfg = self.config
        ts_val = self.rcv.ts_now(now) if cfg.tcp_timestamps else None
        # tcp_advertise_mss: a path MTU learned since (an ICMP about the SYN) lowers it
        self.rcv.advmss = min(self.rcv.advmss, self.host.mss_for(self.remote_ip))
        seg = syn_segment(self.local_port, self.remote_port, self.iss, None,
                          rcv_wnd=self.rcv.rcv_wnd, mss=self.rcv.advmss,
                          rcv_wscale=self.rcv.rcv_wscale, ts_val=ts_val, ts_ecr=0,
                          sack=bool(cfg.tcp_sack), wscale=bool(cfg.tcp_window_scaling))
        first = not self.rtx.records
        if first and ecn.client_wants_ecn(cfg):
            self.ecn_flags = ecn.TCP_ECN_OK  # tcp_ecn_send_syn
        if self.ecn_flags & ecn.TCP_ECN_OK and (first or not cfg.tcp_ecn_fallback):
            seg.flags |= ECE | CWR  # a retransmitted SYN goes without (tcp_ecn_clear_syn)
        if first:
            self.rtx.add(TxRecord(self.iss, seq_add(self.iss, 1), 1, now, syn=True),
                         timed=False)
            self.snd_nxt = seq_add(self.iss, 1)
        if self.fastopen_req and first:
            # Only the first SYN: retransmitted SYNs go without the option and the data
            # (tcp_send_syn_data sets fo->cookie.len = -1 once it has sent).
            self._fastopen_syn(now, seg)
        self.segs_out += 1
        self.transmit(now, seg)
        self.arm_rto(now)

    def _fastopen_syn(self, now: float, seg: TcpSegment) -> None:
        """A Fast Open SYN (tcp_send_syn_data): with a cached cookie (or tcp_fastopen 0x4)
        it carries the cookie and what fits of the data; else it asks for a cookie, in
        the experimental form if the RFC form went unanswered before (try_exp). The data
        fits the server's MSS remembered with the cookie (else our own), the path and
        TCP_MAXSEG, less the full option space. The data is its own record, so that a
        retransmitted SYN goes without it, as Linux splits the SYN-data skb."""
        entry = self.host.fastopen_cache(self.remote_ip)
        cookie = entry.cookie if entry is not None else None
        exp = entry is not None and (entry.exp if cookie else entry.try_exp == 1)
        self.syn_fastopen, self.syn_fastopen_exp = True, exp
        seg.options.fastopen_exp = exp
        if cookie is None and not self.config.tcp_fastopen & TFO_CLIENT_NO_COOKIE:
            seg.options.fastopen = b""  # a cookie request
            return
        seg.options.fastopen = cookie  # None with 0x4: data without a cookie
        if cookie is None:
            self.syn_fastopen = False
        size = min(seq_diff(self.write_seq, self.snd_nxt), self.fastopen_syn_space())
        if size <= 0:
            return
        seg.payload = self.snd_buf.peek(0, size)
        end = seq_add(self.snd_nxt, size)
        self.rtx.add(TxRecord(self.snd_nxt, end, 1, now))
        self.snd_nxt = end
        # Linux's syn_data skb carries PSH for good (tcp_send_syn_data): each
        # retransmission of it does too.
        marks = self.push_marks
        pos = sum(1 for m in marks if before(m, end))
        if pos == len(marks) or marks[pos] != end:
            marks.insert(pos, end)
        self.fastopen_syn_data = size
        self.bytes_sent += size

    def fastopen_syn_space(self) -> int:
        """How much data a Fast Open SYN carries (tcp_send_syn_data): none without a
        cookie to send it with (unless tcp_fastopen 0x4); else the server's MSS remembered
        with its cookie (our own without one), bounded by the path and TCP_MAXSEG
        (tcp_mss_clamp), less the whole option space, room kept for middleboxes' options."""
        entry = self.host.fastopen_cache(self.remote_ip)
        if (entry is None or entry.cookie is None) \
                and not self.config.tcp_fastopen & TFO_CLIENT_NO_COOKIE:
            return 0
        mss_clamp = entry.mss if entry is not None and entry.mss else self.rcv.advmss
        if self.sockopts.maxseg:
            mss_clamp = min(mss_clamp, self.sockopts.maxseg)
        return min(self.host.mss_for(self.remote_ip), mss_clamp) - MAX_TCP_OPTION_SPACE

    def rcv_fastopen_synack(self, now: float, seg: TcpSegment, acked: bool) -> bool:
        """tcp_rcv_fastopen_synack: keep the server's cookie for next time; data the
        SYN-ACK did not acknowledge is marked lost, to be sent again at once (True: it was,
        and its first segment carries the handshake's ACK)."""
        self.fastopen_req = False
        c = self.host.counters
        opts = seg.options
        mss = self.mss_clamp
        if mss == self.sockopts.maxseg:
            mss = opts.mss or 0  # the SYN-ACK's own MSS, not TCP_MAXSEG's clamp
        cookie = opts.fastopen if self.syn_fastopen else None  # an unsolicited one: ignored
        try_exp = 0
        if self.syn_fastopen and not self.total_retrans and opts.fastopen is None \
                and not self.fastopen_syn_data:
            # A cookie request answered without the option: ask in the other form next
            try_exp = 2 if self.syn_fastopen_exp else 1
        self.host.fastopen_cache_set(self.remote_ip, mss, cookie or None, opts.fastopen_exp,
                                     try_exp)
        if not self.fastopen_syn_data:
            return False
        if acked:
            c.inc(Mib.TcpExtTCPFastOpenActive)
            self.syn_data_acked = True
            if self.delivered > 1:
                self.delivered -= 1  # the SYN and its data were counted as two packets
                self.ccs.delivered = self.delivered
            return False
        c.inc(Mib.TcpExtTCPFastOpenActiveFail)
        for rec in self.rtx.records:
            self.rtx.mark_lost(rec)  # the caller resends them (a non-congestion loss)
        return True

    def ecn_queue_cwr(self) -> None:
        """Every cwnd reduction (loss, recovery, an ECN echo) tells an ECN peer with CWR on
        the next new data segment (tcp_ecn_queue_cwr)."""
        if self.ecn_flags & ecn.TCP_ECN_OK:
            self.ecn_flags |= ecn.TCP_ECN_QUEUE_CWR

    def current_mss(self) -> int:
        """Payload room of the next segment: the MSS less the SACK blocks it will carry,
        so that no frame outgrows the path MTU (tcp_current_mss)."""
        if not self.sack_ok:
            return self.mss
        blocks = self.rcv.sack_block_count()
        if not blocks:
            return self.mss
        return self.mss - 4 - 8 * min(blocks, 3 if self.rcv.ts_ok else 4)

    def push(self, now: float) -> None:
        """Send what the windows allow (tcp_write_xmit)."""
        if self.owner.state not in SEND_STATES and not (
                self.fastopen_child and self.owner.state == State.SYN_RECV):
            return
        ccs = self.ccs
        if self.write_seq == self.snd_nxt and not (self.fin_queued and not self.fin_sent):
            # Nothing queued (most calls after an ACK): only the bookkeeping below.
            self._cwnd_validate(self.rtx.in_flight() >= ccs.snd_cwnd)
            self.check_probe_timer(now)
            return
        if not self.rtx.packets_out and self.config.tcp_slow_start_after_idle:
            # Before sizing the first packet (tcp_slow_start_after_idle_check, run as
            # the write queues new data).
            self._cwnd_restart_after_idle(now)
        mtu_probe.maybe_send_probe(self, now)  # RFC 4821: one larger segment ahead of the data
        mss = self.current_mss()
        max_segs = self.tso_segs(mss)
        sent_any = rwnd_limited = False
        while True:
            unsent = seq_diff(self.write_seq, self.snd_nxt)
            want_fin = self.fin_queued and not self.fin_sent
            if unsent <= 0 and not want_fin:
                break
            if self.pacing_check(now):
                break
            quota = tso.cwnd_quota(ccs.snd_cwnd, self.rtx.in_flight())
            if quota <= 0 and not (want_fin and unsent <= 0):
                break  # a lone FIN is not held by cwnd (tcp_cwnd_test)
            wnd_end = seq_add(self.snd_una, self.snd_wnd)
            avail = seq_diff(wnd_end, self.snd_nxt)
            size = min(unsent, mss * min(quota, max_segs), self.eor_room(unsent))
            if size > avail:
                # The first MSS must fit in the window (tcp_snd_wnd_test).
                if avail < min(mss, unsent) or avail <= 0:
                    rwnd_limited = unsent > 0
                    break
                size = avail if avail < mss else (avail // mss) * mss
            elif size == unsent and size > mss and size % mss and not want_fin \
                    and self._nagle_holds(size % mss):
                size -= size % mss  # Nagle holds the sub-MSS tail (tcp_mss_split_point)
            if size and size < mss and size == unsent and not want_fin \
                    and self._nagle_holds(size):
                break
            fin = want_fin and size == unsent
            if not size and not fin:
                break
            if fin and not size and avail <= 0 and self.snd_wnd == 0 and self.rtx.packets_out:
                break
            if self.small_queue_check(size):
                break
            self._send_new(now, size, fin)
            sent_any = True
        # tcp_write_xmit's chronographs: the peer's window held data back, or no longer
        if rwnd_limited:
            self.chrono.start(now, CHRONO_RWND_LIMITED)
        else:
            self.chrono.stop(now, CHRONO_RWND_LIMITED, self.queues_empty())
        if sent_any:
            self.last_send = now
            ccs.lsndtime = now
            self.schedule_loss_probe(now, advancing_rto=False)
        cwnd_limited = self.rtx.in_flight() >= ccs.snd_cwnd
        self._cwnd_validate(cwnd_limited)
        if (sent_any or cwnd_limited) and not self.is_cwnd_limited() and self.nospace \
                and self.write_seq == self.snd_nxt \
                and self.owner.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            # tcp_cwnd_validate: all sent, the network not fed fully, a writer waiting:
            # the send buffer is what limits
            self.chrono.start(now, CHRONO_SNDBUF_LIMITED)
        self.check_probe_timer(now)

    def eor_room(self, limit: int) -> int:
        """How far a packet from SND.NXT may reach: to the end of the next MSG_EOR record
        (a packet never joins skbs across one: tcp_skb_can_collapse, tcp_grow_skb), else
        ``limit``."""
        marks = self.eor_marks
        while marks and not after(marks[0], self.snd_nxt):
            marks.popleft()  # sent
        return min(limit, seq_diff(marks[0], self.snd_nxt)) if marks else limit

    def _cwnd_validate(self, is_cwnd_limited: bool) -> None:
        """Remember whether this flight was limited by cwnd rather than by the application
        (tcp_cwnd_validate, RFC 7661): only then may cwnd grow."""
        if not before(self.snd_una, self.cwnd_usage_seq) or is_cwnd_limited or (
                not self.cwnd_limited and self.rtx.packets_out > self.max_packets_out):
            self.cwnd_limited = is_cwnd_limited
            self.max_packets_out = self.rtx.packets_out
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
        if self.nagle_push:
            return False
        if self.sockopts.cork or self.nagle_cork:
            return True
        if self.sockopts.nodelay:
            return False
        return bool(self.rtx.packets_out) and after(self.snd_sml, self.snd_una)

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

    @property
    def name(self) -> str:
        return conn_name((self.local_ip, self.local_port, self.remote_ip, self.remote_port))

    def tso_segs(self, mss: int) -> int:
        """Segments one packet may hold now (tcp_tso_segs with the current pacing rate)."""
        return tso.tso_segs(self.config, mss, self.ccs.pacing_rate, self.rtt.min_rtt_us,
                            self.host.gso_max_size)

    def _emit_packet(self, now: float, seg: TcpSegment) -> None:
        """Send one packet of ``len(seg.payload) / mss`` segments, a GSO packet (the host
        cuts it when its link takes none, as software GSO would after the qdisc); PSH on
        its last segment when it holds more than one (Linux 6.18, see tso.py)."""
        if len(seg.payload) > self.mss:
            seg.flags |= PSH
            seg.gso_size = self.mss
        self.emit(now, seg)

    def _buf_offset(self, seq: int) -> int:
        """Where ``seq`` sits in the send buffer, which starts at the first unacknowledged
        data byte: past our SYN while it is unacknowledged (a Fast Open child's data)."""
        return seq_diff(seq, self.snd_una) - (self.snd_una == self.iss)

    def _send_new(self, now: float, size: int, fin: bool) -> TcpSegment:
        seq = self.snd_nxt
        payload: bytes | memoryview = b""
        if size:
            payload = self.snd_buf.peek(self._buf_offset(seq), size)
            self.snd_buf.sent(self._buf_offset(seq), size)
        flags = ACK
        if fin:
            flags |= FIN
        if size and self._pushed(seq, seq_add(seq, size)):
            flags |= PSH
        prior = self.stamp(now)
        sent = self.wstamp  # the departure time: the record's send time (skb_mstamp_ns)
        seg = self.segment(sent, flags, seq, payload)
        if size and self.ecn_flags & ecn.TCP_ECN_OK:
            seg.ecn = ecn.ECT0  # new data only (tcp_ecn_send: INET_ECN_xmit)
            if self.ecn_flags & ecn.TCP_ECN_QUEUE_CWR:
                self.ecn_flags &= ~ecn.TCP_ECN_QUEUE_CWR
                seg.flags |= CWR
        pcount = max(1, -(-size // self.mss))
        end = seq_add(seq, size + (1 if fin else 0))
        if not self.rtx.packets_out:
            self.cc.cwnd_event(self.ccs, now, CwndEvent.TX_START)
        rec = TxRecord(seq, end, pcount, sent, fin=fin)
        self.rtx.add(rec)
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
        self._emit_packet(now, seg)
        self.after_send(size, prior)
        if self.t_rto is None or self.xmit_timer == XmitTimer.LOSS_PROBE:
            self.arm_rto(now)  # tcp_event_new_data_sent
        self.rcv.note_data_sent(now)
        return seg

    def retransmit(self, now: float, rec: TxRecord, segs: int = 1, *,
                   probe: bool = False) -> None:
        """Resend one record, at most ``segs`` MSS of it (tcp_retransmit_skb: the record is
        split after that many segments, and what is resent leaves as one packet). The
        first one that is not a loss ``probe`` stamps ``uto_stamp``: TCP_USER_TIMEOUT
        counts from there (measured: Linux 6.18 with 1000 ms gives up 1 s after its first
        RTO retransmission, the loss probe before it not counted)."""
        size = seq_diff(rec.end, rec.start) - (1 if rec.fin else 0) - (1 if rec.syn else 0)
        if rec.syn:
            if self.owner.state == State.SYN_RECV:
                self.send_synack(now, self.syn_wscale_ok)  # a Fast Open child's, no cookie
            else:
                self.send_syn(now)
            sent = self.wstamp
        else:
            mss = self.current_mss()
            if size > mss * segs:
                self.split(rec, mss * segs)
                size = mss * segs
            payload: bytes | memoryview = b""
            if size:
                payload = self.snd_buf.peek(self._buf_offset(rec.start), size)
                self.snd_buf.sent(self._buf_offset(rec.start), size)
            flags = ACK | (FIN if rec.fin else 0)
            if size and self._pushed(rec.start, seq_add(rec.start, size)):
                flags |= PSH
            prior = self.stamp(now)
            sent = self.wstamp
            self._emit_packet(now, self.segment(sent, flags, rec.start, payload))
            self.after_send(size, prior)
        self.rtx.mark_retransmitted(rec, sent)
        if self.ccs.ca_state == CA_RECOVERY:
            self.prr_out += rec.pcount
        self.total_retrans += rec.pcount
        self.bytes_retrans += size
        self.host.counters.inc(Mib.TcpRetransSegs, rec.pcount)
        if not self.retrans_stamp:
            self.retrans_stamp = rec.first_xmit
        if not probe:  # a loss probe is not the episode's (tcp_send_loss_probe)
            self.undo.on_retransmit(self.rcv.ts_now(now), rec.pcount)
        if not self.uto_stamp and not probe:
            self.uto_stamp = now
        log.debug("retransmit", conn=self.name, seq=seq_diff(rec.start, self.iss),
                  len=size, ca_state=self.ccs.ca_state, t=round(now, 6))

    def split(self, rec: TxRecord, first_len: int) -> None:
        """Split a record after ``first_len`` bytes (tcp_fragment)."""
        self.rtx.split(rec, first_len, self.mss)

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
        head = self.rtx.records[0].xmit if self.rtx.records else now
        return head + self.rto_value()

    def set_xmit_timer(self, now: float) -> None:
        """After an ACK that advanced SND.UNA: a loss probe if one is due, else the RTO
        restarted (RFC 6298 5.3, tcp_set_xmit_timer)."""
        if not self.rtx.packets_out:
            self.t_rto = None
        elif not self.schedule_loss_probe(now, advancing_rto=True):
            self.arm_rto(now)

    def write_timeout(self, now: float) -> bool:
        """Has the connection retransmitted long enough to give up (tcp_write_timeout)?
        With TCP_USER_TIMEOUT: once that long has passed since the first retransmission's
        original send (retransmits_timed_out with its timeout)."""
        cfg = self.config
        user_timeout = self.sockopts.user_timeout
        if user_timeout and self.retransmits:
            return (now - self.uto_stamp) * 1000 >= user_timeout - 1e-6
        state = self.owner.state
        if state in (State.SYN_SENT, State.SYN_RECV):
            # A count (the linear SYN timeouts on top for a connect), or the time that
            # many doublings of the 1 s initial RTO take: TCP_SYNCNT 1 gives up at 3 s
            # (measured on 6.18: SYNs at 0, 1, 2 s, ETIMEDOUT at 3.1 s)
            retry_until = self.sockopts.syncnt or cfg.tcp_syn_retries  # TCP_SYNCNT
            linear = cfg.tcp_syn_linear_timeouts if state == State.SYN_SENT else 0
            return self.retransmits >= retry_until + linear or self.retransmits_timed_out(
                now, retry_until, TCP_TIMEOUT_INIT)
        boundary = cfg.tcp_retries2
        if self.owner.orphan:
            boundary = cfg.tcp_orphan_retries or (8 if self.rto_value() < TCP_RTO_MAX else 0)
        return self.retransmits_timed_out(now, boundary)

    def retransmits_timed_out(self, now: float, boundary: int,
                              rto_base: float = TCP_RTO_MIN) -> bool:
        """retransmits_timed_out: retransmitting for as long as ``boundary`` doublings of
        the RTO from ``rto_base`` (TCP_RTO_MIN; the initial RTO for a handshake) take?"""
        if not self.retransmits:
            return False
        # tcp_model_timeout: how long `boundary` doublings from rto_base take.
        thresh = int(math.log2(TCP_RTO_MAX / rto_base))
        if boundary <= thresh:
            timeout = ((2 << boundary) - 1) * rto_base
        else:
            timeout = ((2 << thresh) - 1) * rto_base + (boundary - thresh) * TCP_RTO_MAX
        return now - self.retrans_stamp >= timeout - 1e-9

    def retransmit_timer(self, now: float) -> bool:
        """The RTO fired (RFC 6298 5.4-5.7, tcp_retransmit_timer). Returns True when the
        connection has retransmitted long enough (tcp_write_timeout): the connection then
        gives up."""
        if not self.rtx.records:
            return False
        expired = self.write_timeout(now)
        if (self.syn_fastopen or self.fastopen_syn_data or self.syn_data_acked) and \
                self.host.fastopen_blackhole.detect(
                    now, self.config.tcp_fastopen_blackhole_timeout_sec, self.retransmits,
                    expired):
            # tcp_fastopen_active_detect_blackhole: Fast Open may be what gets dropped
            self.host.counters.inc(Mib.TcpExtTCPFastOpenBlackhole)
        if expired:
            return True
        self.host.counters.inc(Mib.TcpExtTCPTimeouts)
        if self.owner.state != State.SYN_SENT:
            mtu_probe.on_rto(self, now)  # a lost probe; a black hole suspected (RFC 4821)
        self.tlp_high_seq = None  # an RTO ends the loss-probe episode (tcp_retransmit_timer)
        self.ecn_queue_cwr()  # tcp_enter_loss, for the SYN too
        if self.owner.state == State.SYN_SENT:
            self.retransmits += 1
            if self.retransmits > self.config.tcp_syn_linear_timeouts:
                self.backoff += 1  # the first SYN timeouts keep the RTO (tcp_retransmit_timer)
            self.retransmit(now, self.rtx.records[0])
            self.arm_rto(now)
            return False
        self.enter_loss(now)
        self.retransmit(now, self.rtx.records[0])
        self.backoff += 1
        self.retransmits += 1
        self.reset_xmit_timer(XmitTimer.RTO, now + self._clamp_to_user_timeout(
            now, self.rto_value(), self.uto_stamp))
        return False

    def _clamp_to_user_timeout(self, now: float, wait: float, since: float) -> float:
        """tcp_clamp_rto_to_user_timeout / tcp_clamp_probe0_to_user_timeout: the next
        timer fires no later than TCP_USER_TIMEOUT after ``since`` (at least 2 ms later)."""
        user_timeout = self.sockopts.user_timeout
        if not user_timeout:
            return wait
        remaining = user_timeout / 1000 - (now - since)
        return min(wait, max(remaining, 0.002))

    def check_probe_timer(self, now: float) -> None:
        """Arm the persist timer when data waits on a closed window with nothing in
        flight (tcp_check_probe_timer); RFC 9293 3.8.6.1."""
        unsent = seq_diff(self.write_seq, self.snd_nxt) > 0 or (
            self.fin_queued and not self.fin_sent)
        if self.rtx.packets_out or not unsent:
            self.t_probe0 = None
            self.probes_out = 0
            self.probes_tstamp = None
            return
        if self.t_probe0 is None:
            self.reset_xmit_timer(XmitTimer.PROBE0, self.probe0_when(now))

    def probe0_when(self, now: float) -> float:
        """When the next zero-window probe is due (tcp_probe0_when): the backed-off RTO,
        kept within TCP_RTO_MIN and TCP_RTO_MAX."""
        return now + min(max(self.rto_value(), TCP_RTO_MIN), TCP_RTO_MAX)

    def probe_timer(self, now: float) -> bool:
        """Zero-window probe (tcp_probe_timer / tcp_send_probe0 / tcp_write_wakeup).
        Returns True when the probes ran out: the connection then gives up."""
        self.t_probe0 = None
        if self.rtx.packets_out or self.owner.state not in SEND_STATES:
            self.probes_out = 0
            return False
        # TCP_USER_TIMEOUT bounds the probing too, from the first probe on (tcp_probe_timer:
        # icsk_probes_tstamp); without it a peer that answers probes keeps us forever.
        if self.probes_tstamp is None:
            self.probes_tstamp = now
        elif self.sockopts.user_timeout and \
                (now - self.probes_tstamp) * 1000 >= self.sockopts.user_timeout - 1e-6:
            return True
        max_probes = self.config.tcp_retries2
        if self.owner.orphan:
            max_probes = self.config.tcp_orphan_retries or 8
        if self.probes_out >= max_probes:
            return True
        self.probes_out += 1
        self.host.counters.inc(Mib.TcpExtTCPWinProbe)
        avail = seq_diff(seq_add(self.snd_una, self.snd_wnd), self.snd_nxt)
        unsent = seq_diff(self.write_seq, self.snd_nxt)
        if avail > 0 and unsent > 0:
            # The window opened a little: send what fits, even less than an MSS
            # (tcp_write_wakeup), instead of waiting for a window that may never grow.
            last = self._send_new(now, min(avail, self.current_mss(), unsent), fin=False)
            last.flags |= PSH
            return False
        self._xmit_probe(now)
        self.backoff += 1
        self.reset_xmit_timer(XmitTimer.PROBE0, self.probe0_deadline(now))
        return False

    def probe0_deadline(self, now: float) -> float:
        """The next probe: the backed-off RTO, no later than TCP_USER_TIMEOUT after the
        first probe (tcp_clamp_probe0_to_user_timeout)."""
        when = self.probe0_when(now)
        if self.probes_tstamp is None:
            return when
        return now + self._clamp_to_user_timeout(now, when - now, self.probes_tstamp)

    def _xmit_probe(self, now: float) -> None:
        """A segment with an old sequence number and no data elicits an ACK with the
        current window (tcp_xmit_probe_skb)."""
        self.emit(now, self.segment(now, ACK, seq_add(self.snd_una, -1)))

    def keepalive_probe(self, now: float) -> None:
        """One keepalive probe (tcp_write_wakeup from tcp_keepalive_timer); it shares
        icsk_probes_out with the persist timer."""
        self.probes_out += 1
        self._xmit_probe(now)

    def push_ignoring_nagle(self, now: float) -> None:
        """Send what the windows allow, Nagle and the cork aside (the loss probe's new
        data, tcp_push_one)."""
        nodelay, cork = self.sockopts.nodelay, self.sockopts.cork
        self.sockopts.nodelay, self.sockopts.cork = True, False
        try:
            self.push(now)
        finally:
            self.sockopts.nodelay, self.sockopts.cork = nodelay, cork

    def send_synack(self, now: float, wscale_ok: bool, fastopen: bytes | None = None,
                    exp: bool = False) -> None:
        """Our SYN-ACK of a simultaneous open (tcp_rcv_synsent_state_process) or of a Fast
        Open child, which may hand a fresh cookie."""
        ts_val = self.rcv.ts_now(now) if self.rcv.ts_ok else None
        seg = syn_segment(self.local_port, self.remote_port, self.iss, self.rcv.rcv_nxt,
                          rcv_wnd=self.rcv.rcv_wnd, mss=self.rcv.advmss,
                          rcv_wscale=self.rcv.rcv_wscale, ts_val=ts_val,
                          ts_ecr=self.rcv.ts_recent, sack=self.sack_ok, wscale=wscale_ok)
        seg.options.fastopen, seg.options.fastopen_exp = fastopen, exp
        if self.ecn_flags & ecn.TCP_ECN_OK:
            seg.flags |= ECE  # tcp_ecn_make_synack
        self.segs_out += 1
        self.transmit(now, seg)
        self.arm_rto(now)

    def set_congestion_control(self, now: float, name: str) -> None:
        """TCP_CONGESTION on a connection (tcp_reinit_congestion_control): a fresh instance
        of the algorithm, initialised at once when the connection is synchronized."""
        self.cc = make_congestion_control(name)
        if self.owner.state not in (State.CLOSE, State.LISTEN, State.SYN_SENT, State.SYN_RECV):
            self.cc.init(self.ccs, now)

    # ------------------------------------------------------------------ the handshake

    def start(self, now: float) -> None:
        """Active open: the first SYN (tcp_connect)."""
        self.retrans_stamp = now
        self.send_syn(now)

    def adopt(self, iss: int, sack_ok: bool, snd_wscale: int, mss_clamp: int,
              ack_seg: TcpSegment) -> None:
        """A passive open's final ACK (tcp_create_openreq_child): the SYN-ACK is
        acknowledged, the window is the ACK's, scaled."""
        self.init_seq(iss)
        self.snd_una = seq_add(iss, 1)
        self.snd_nxt = self.snd_una
        self.write_seq = self.snd_una
        self.sack_ok = sack_ok
        self.snd_wscale = snd_wscale
        self.sync_mss(mss_clamp)
        self.snd_wnd = ack_seg.window << self.snd_wscale
        self.max_window = self.snd_wnd
        self.snd_wl1 = ack_seg.seq
        self.snd_wl2 = ack_seg.ack

    def peer_syn_options(self, sack_ok: bool, snd_wscale: int, mss_clamp: int) -> None:
        """The peer's SYN (or SYN-ACK) options that shape what we send."""
        self.sack_ok = sack_ok
        self.snd_wscale = snd_wscale
        self.sync_mss(mss_clamp)

    def simultaneous_syn(self, seg: TcpSegment) -> None:
        """A SYN in SYN_SENT (simultaneous open): its window is never scaled, and is the
        largest seen so far (tcp_rcv_synsent_state_process)."""
        self.snd_wnd = self.max_window = seg.window
        self.snd_wl1 = seg.seq

    def handshake_acked(self, seg: TcpSegment, window: int, *, synsent: bool) -> None:
        """Our SYN is acknowledged (RFC 9293 3.10.7.3 fourth check, 3.10.7.4 in SYN_RECV):
        SND.UNA moves past it, the window starts and the SYN's timer stops. In SYN_SENT
        the SYN-ACK also sets the window-update marks (tcp_rcv_synsent_state_process)."""
        self.snd_una = seg.ack
        self.snd_wnd = window
        if synsent:
            self.max_window = window
            self.snd_wl1 = seg.seq
            self.snd_wl2 = seg.ack
            self.retrans_stamp = self.uto_stamp = 0.0
        self.undo.forget_stamp()  # a resent SYN is not a loss episode's
        self.backoff = 0
        self.retransmits = 0
        self.t_rto = None

    def init_transfer(self, now: float) -> None:
        """Congestion state once synchronized (tcp_init_transfer)."""
        self.ccs.snd_cwnd = TCP_INIT_CWND
        self.ccs.snd_una = self.snd_una
        self.ccs.snd_nxt = self.snd_nxt
        self.cc.init(self.ccs, now)
        self.last_send = now

    # ------------------------------------------------------------------ the application

    def write(self, now: float, data: bytes | bytearray | memoryview,
              more: bool = False, eor: bool = False) -> int:
        """Queue application data and send what the windows allow (tcp_sendmsg_locked);
        returns how many bytes were taken (0 when the buffer is full). The bytes go into
        skbs of the size goal, each full one sent at once; a new skb is started only while
        the queued truesize is below SO_SNDBUF (see SendBuffer), and a writer that found it
        full (SOCK_NOSPACE) takes nothing until ``send_space`` wakes it. ``more`` is MSG_MORE: no
        PSH mark, and a sub-MSS tail waits as under TCP_CORK for this push (tcp_push with
        TCP_NAGLE_CORK); the next ACK's push uses plain Nagle. ``eor`` is MSG_EOR: the skb
        holding the end of the write, once all of it is taken, ends a record (``eor_marks``)."""
        if self.nospace and not self.send_space:
            return 0  # a blocked writer sleeps until a third of the buffer is free
        self.nospace = False
        if data and self.write_seq == self.snd_nxt:
            self.chrono.start(now, CHRONO_BUSY)  # the write queue's first skb
        goal = tso.size_goal(self.current_mss(), self.max_window, self.host.gso_max_size)
        n = 0
        while n < len(data):
            room = self.snd_buf.tail_room(self._buf_offset(self.snd_nxt), goal)
            if self.eor_marks and self.eor_marks[-1] == self.write_seq:
                room = 0  # the tail skb ends a record: nothing joins it
            new_skb = not room
            if new_skb:
                if self.snd_buf.wmem_queued >= self.sndbuf() or not self._notsent_ok(0):
                    self.nospace = True  # not sk_stream_memory_free: the writer sleeps
                    break
                room = goal
            take = min(room, len(data) - n)
            if not n and not new_skb and self.push_marks and self.push_marks[-1] == \
                    self.write_seq:
                self.push_marks.pop()  # appended to: the skb loses its PSH (tcp_sendmsg)
            self.snd_buf.write(data if take == len(data) else memoryview(data)[n:n + take],
                               new_skb)
            self.write_seq = seq_add(self.write_seq, take)
            n += take
            if take == room and n < len(data):
                if self._forced_push():
                    self.push_marks.append(self.write_seq)  # tcp_mark_push
                    self.pushed_seq = self.write_seq
                self.push(now)  # a full skb leaves at once (tcp_push_one)
        if n:
            self.nagle_push = False  # new data queued (tcp_skb_entail)
            # tcp_push: the tail is marked unless MSG_MORE (a write that blocks pushes
            # without it), or when forced.
            more = more and not self.nospace
            if eor and n == len(data):
                self.eor_marks.append(self.write_seq)
            if not more or self._forced_push():
                self.psh_mark = self.pushed_seq = self.write_seq  # tcp_mark_push
                if eor and n == len(data):
                    self.push_marks.append(self.write_seq)  # kept: nothing joins the skb
            elif self.psh_mark is not None and after(self.psh_mark, self.snd_nxt):
                self.psh_mark = None  # appended to the marked skb, which loses its PSH
            self.nagle_cork = more
            try:
                self.push(now)
            finally:
                self.nagle_cork = False
        return n

    def _forced_push(self) -> bool:
        """forced_push: more than half the peer's largest window written since the last
        PSH mark; the skb being filled is marked and pushed."""
        return after(self.write_seq, seq_add(self.pushed_seq, self.max_window >> 1))

    def _pushed(self, seq: int, end: int) -> bool:
        """Does a packet [seq, end) carry PSH: it ends where the last write ended
        (``psh_mark``), or holds the end of an skb that forced_push marked (the packet is
        that skb, split from the rest or grown into the next one)."""
        if end == self.psh_mark:
            return True
        marks = self.push_marks
        while marks and not after(marks[0], self.snd_una):
            marks.popleft()  # acknowledged
        return any(after(m, seq) and not after(m, end) for m in marks)

    def queue_fin(self) -> None:
        """Our FIN follows the queued data (tcp_send_fin); the next push sends it."""
        self.fin_queued = True

    def unsent(self) -> int:
        """Bytes written and not yet sent (tcpi_notsent_bytes, SIOCOUTQNSD)."""
        return max(0, seq_diff(self.write_seq, self.snd_nxt))

    # ------------------------------------------------------------------ timers

    def take_xmit_timer(self) -> int:
        """The transmit timer fired: returns its mode (a :class:`XmitTimer`), disarmed."""
        kind, self.xmit_timer = self.xmit_timer, XmitTimer.RTO
        self.t_rto = None
        return kind

    def stop_rto(self) -> None:
        self.t_rto = None

    def stop_timers(self) -> None:
        """The connection is finished (tcp_done): no transmit, persist or pacing timer."""
        self.t_rto = self.t_probe0 = self.pacing_timer = None

    def schedule_loss_probe(self, now: float, *, advancing_rto: bool) -> bool:
        """Arm the tail loss probe (RFC 8985 7.2, tcp_schedule_loss_probe): PTO = 2*SRTT,
        plus a delayed-ACK allowance when one packet is in flight, never after the RTO."""
        cfg = self.config
        if self.tlp_high_seq is not None or cfg.tcp_early_retrans not in (3, 4) \
                or not self.rtx.packets_out or not self.sack_ok \
                or self.ccs.ca_state not in (CA_OPEN, CA_CWR) or not self.rtt.has_sample:
            return False
        srtt = self.rtt.srtt_us / 1e6
        pto = 2 * srtt + (TCP_RTO_MIN if self.rtx.packets_out == 1 else 0.002)
        rto_left = self.rto_value() if advancing_rto else self.rto_deadline(now) - now
        if rto_left > 0:
            pto = min(pto, rto_left)
        self.reset_xmit_timer(XmitTimer.LOSS_PROBE, now + pto)
        return True

    def enter_loss(self, now: float) -> None:
        """RTO recovery (tcp_enter_loss): everything not SACKed is lost, cwnd = 1; a new
        episode for undo, and F-RTO (RFC 5682 3.1 step 1) unless another recovery was
        under way (repeated timeouts of one SND.UNA excepted) or an MTU probe is out."""
        ccs = self.ccs
        new_recovery = ccs.ca_state < CA_RECOVERY
        self.rtx.mark_all_lost()
        if ccs.ca_state <= CA_DISORDER or not before(self.snd_una, self.high_seq) or (
                ccs.ca_state == CA_LOSS and not self.retransmits):
            ccs.prior_ssthresh = self.current_ssthresh()
            ccs.prior_cwnd = ccs.snd_cwnd
            ccs.snd_ssthresh = self.cc.ssthresh(ccs)
            self.cc.cwnd_event(ccs, now, CwndEvent.LOSS)
            self.init_undo()
        self.undo.frto = bool(self.config.tcp_frto) and (
            new_recovery or bool(self.retransmits)) and not self.mtup.probe_size
        ccs.snd_cwnd = self.rtx.in_flight() + 1
        ccs.snd_cwnd_cnt = 0
        self.high_seq = self.snd_nxt
        self.set_ca_state(CA_LOSS)

    # ------------------------------------------------------------------ path MTU

    def pmtu_lowered(self, pmtu: int) -> bool:
        """The path MTU fell to ``pmtu``: if the MSS was made for more, it follows
        (tcp_v4_mtu_reduced's tail). True when it did: the caller resends what no longer
        fits (recovery.simple_retransmit)."""
        if self.pmtu_cookie <= pmtu:
            return False
        log.info("mtu_reduced", conn=self.name, pmtu=pmtu, was=self.pmtu_cookie)
        if self.owner.state in SYNCHRONIZED:
            self.sync_mss(self.mss_clamp)
        else:
            self.pmtu_cookie = pmtu  # the handshake's segments are small
        return True

    def resync_mss(self, now: float) -> None:
        """PLPMTUD moved the search range: the MSS follows (tcp_sync_mss)."""
        if self.owner.state in SYNCHRONIZED:
            self.sync_mss(self.mss_clamp)

    def send_probe(self, now: float, size: int) -> TcpSegment:
        """A new-data segment of ``size`` bytes, above the MSS: one packet, neither split
        into MSS pieces nor cut by GSO (an RFC 4821 probe)."""
        saved, self.mss = self.mss, size
        try:
            return self._send_new(now, size, False)
        finally:
            self.mss = saved

    def init_undo(self) -> None:
        """tcp_init_undo: a new undo episode from SND.UNA; the retransmissions in flight,
        a loss probe's included, may come back D-SACKed."""
        self.undo.start(self.snd_una, self.rtx.retrans_out + (
            1 if self.tlp_high_seq is not None and self.tlp_retrans else 0))

    def current_ssthresh(self) -> int:
        """tcp_current_ssthresh: ssthresh during a reduction, else at least 3/4 cwnd."""
        ccs = self.ccs
        if ccs.ca_state in (CA_CWR, CA_RECOVERY):
            return ccs.snd_ssthresh
        return max(ccs.snd_ssthresh, (ccs.snd_cwnd >> 1) + (ccs.snd_cwnd >> 2))

    def set_ca_state(self, new: int) -> None:
        """tcp_set_ca_state: the congestion control hears of it first."""
        if self.ccs.ca_state != new:
            self.cc.set_state(self.ccs, new)
            self.ccs.ca_state = new
