"""The receiving half of a connection (Linux tcp_input.c's data path, gVisor's rcv.go):
the receive sequence space, the data and out-of-order queues, the window we offer and when
we acknowledge.

:class:`Receiver` alone writes RCV.NXT, RCV.WND and RCV.WUP, the receive buffer and its
autotuning, the timestamps we echo (TS.Recent), and the ACK scheduling state (Linux's
icsk_ack: ato, quick, pingpong, the delayed-ACK timer). It sends nothing itself: its
methods say when an ACK is due and the connection's sender builds it; the state changes a
FIN causes are the connection's.

Functions here, by Linux name: tcp_data_queue (:meth:`Receiver.data_queue`),
tcp_queue_rcv, tcp_event_data_recv, tcp_select_window / __tcp_select_window,
tcp_receive_window, __tcp_ack_snd_check (:meth:`Receiver.ack_snd_check`),
tcp_send_delayed_ack, tcp_event_ack_sent (:meth:`Receiver.ack_sent`), tcp_cleanup_rbuf,
tcp_rcv_space_adjust, tcp_enter_quickack_mode, tcp_sequence, tcp_replace_ts_recent,
tcp_rcv_rtt_measure_ts, tcp_delack_timer_handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ..mib import Mib
from ..wire.tcp import FIN, PSH, SYN, TCP_HEADER_LEN, URG, TcpSegment
from .buffers import ReceiveBuffer
from .host import Host, Wakeable
from .options import (
    MAX_TCP_WINDOW,
    TCP_MIN_MSS,
    TCP_MSS_DEFAULT,
    TS_OPTION_LEN,
    SockOpts,
    rcvbuf_size,
)
from .rto import RtoEstimator
from .seq import after, before, seq_add, seq_diff

TCP_REMNANT: Final = FIN | URG | SYN | PSH  # flags a short segment may carry when not full-sized
TCP_DELACK_MIN: Final = 0.04
TCP_DELACK_MAX: Final = 0.2
TCP_ATO_MIN: Final = 0.04
TCP_MAX_QUICKACKS: Final = 16
TCP_INIT_CWND: Final = 10  # RFC 6928: also the first rcvq_space, in segments

# What data_queue found, for the connection's state machine.
DATA_NONE: Final = 0  # nothing for the state machine
DATA_FIN: Final = 1  # the peer's FIN is now in order (tcp_fin)


class Receiver:
    """The receive side of one connection."""

    __slots__ = (
        "ack_now",
        "ack_scheduled",
        "advmss",
        "ato",
        "bytes_received",
        "config",
        "copied",
        "counters",
        "data_segs_in",
        "fin_received",
        "host",
        "irs",
        "last_data_recv",
        "last_seg_size",
        "lrcvtime",
        "ofo_fin",
        "owner",
        "pending_dsack",
        "pingpong",
        "quick",
        "rcv_buf",
        "rcv_mss",
        "rcv_nxt",
        "rcv_rtt",
        "rcv_ssthresh",
        "rcv_wnd",
        "rcv_wscale",
        "rcv_wup",
        "rcvbuf",
        "rcvq_copied",
        "rcvq_space",
        "rcvq_time",
        "rto_value",
        "rtt",
        "sockopts",
        "t_delack",
        "ts_offset",
        "ts_ok",
        "ts_recent",
        "ts_recent_stamp",
        "window_clamp",
    )

    def __init__(self, host: Host, owner: Wakeable, sockopts: SockOpts, now: float, *,
                 advmss: int, rtt: RtoEstimator, rto_value: Callable[[], float]) -> None:
        config = host.config
        self.host = host
        self.owner = owner  # the connection: the host wakes its readers
        self.config = config
        self.counters = host.counters
        self.sockopts = sockopts
        # The sender's RTT estimate (read only) and backed-off RTO: ATO and autotuning
        # follow them.
        self.rtt = rtt
        self.rto_value = rto_value
        # Receive sequence space (RFC 9293 3.3.1).
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_wnd = 0
        self.rcv_wup = 0  # RCV.NXT when the window was last announced
        self.rcv_wscale = 0
        self.rcv_buf = ReceiveBuffer()
        self.rcvbuf = rcvbuf_size(config, sockopts)
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
        self.advmss = advmss  # the MSS we announce (the route's, host.mss_for)
        self.rcv_mss = 536  # estimate of the peer's segment size (icsk_ack.rcv_mss)
        self.last_seg_size = 0  # the last smaller full-sized segment (icsk_ack.last_seg_size)
        # Timestamps (RFC 7323): our clock's offset and what we echo.
        self.ts_ok = False
        self.ts_offset = 0
        self.ts_recent = 0
        self.ts_recent_stamp = 0.0
        # ACK scheduling (Linux icsk_ack).
        self.ato = 0.0
        self.quick = 0
        self.pingpong = 0
        self.lrcvtime = now
        self.ack_now = False  # ICSK_ACK_NOW: a one-time immediate ACK is due
        self.ack_scheduled = False
        self.t_delack: float | None = None
        # Statistics (tcp_info).
        self.bytes_received = 0
        self.data_segs_in = 0
        self.last_data_recv = now

    # ------------------------------------------------------------------ set-up

    def init_seq(self, irs: int) -> None:
        """The peer's SYN: RCV.NXT follows its ISN."""
        self.irs = irs
        self.rcv_nxt = seq_add(irs, 1)
        self.rcv_wup = self.rcv_nxt

    def start_active(self, ts_offset: int, advmss: int, rcv_wscale: int,
                     initial_wnd: Callable[[int], int]) -> None:
        """connect(): our clock's offset, the MSS and scale we announce, and the first
        window (``initial_wnd`` of the announced MSS less the timestamp option)."""
        self.ts_offset = ts_offset
        self.advmss = advmss
        self.rcv_wscale = rcv_wscale
        self.rcv_wnd = initial_wnd(
            advmss - (TS_OPTION_LEN if self.config.tcp_timestamps else 0))

    def start_passive(self, irs: int, ts_offset: int, advmss: int, rcv_wscale: int,
                      rcv_wnd: int, ts_ok: bool, ts_recent: int, now: float) -> None:
        """A listener's child: what its SYN queue entry agreed."""
        self.init_seq(irs)
        self.ts_offset = ts_offset
        self.advmss = advmss
        self.rcv_wscale = rcv_wscale
        self.rcv_wnd = rcv_wnd
        self.ts_ok = ts_ok
        self.ts_recent = ts_recent
        self.ts_recent_stamp = now

    def no_wscale(self) -> None:
        """The peer's SYN-ACK has no window scale: neither side scales (RFC 7323 2.2)."""
        self.rcv_wscale = 0

    def set_timestamps(self, ts_ok: bool, ts_recent: int, now: float) -> None:
        """The handshake's timestamp option (RFC 7323 3.2)."""
        self.ts_ok = ts_ok
        if ts_ok:
            self.ts_recent = ts_recent
            self.ts_recent_stamp = now

    def inherit_ts_recent(self, ts_recent: int, stamp: float) -> None:
        """TS.Recent of a TIME_WAIT incarnation taken over (tcp_twsk_unique)."""
        self.ts_recent = ts_recent
        self.ts_recent_stamp = stamp

    def init_transfer(self, now: float, mss: int) -> None:
        """Windows and ACK estimates once synchronized (tcp_init_transfer,
        tcp_initialize_rcv_mss)."""
        self.rcv_ssthresh = self.rcv_wnd
        self.window_clamp = self.rcvbuf
        self.rcvq_space = min(self.rcv_wnd, TCP_INIT_CWND * self.advmss)
        self.rcvq_time = now
        rcv_mss = min(self.advmss, mss, self.rcv_wnd // 2, 536)
        self.rcv_mss = max(rcv_mss, 88)
        self.last_data_recv = now

    def set_rcvbuf(self, rcvbuf: int) -> None:
        """SO_RCVBUF on a live connection."""
        self.rcvbuf = rcvbuf

    # ------------------------------------------------------------------ timestamps

    def ts_now(self, now: float) -> int:
        """Our TSval: a millisecond clock plus a per-connection offset (RFC 7323 5.4)."""
        return (int(now * 1000) + self.ts_offset) & 0xFFFFFFFF

    def replace_ts_recent(self, now: float, seg: TcpSegment) -> None:
        """RFC 7323 4.3: TS.Recent from a segment covering RCV.WUP, once its ACK is known
        to be acceptable (tcp_ack with FLAG_UPDATE_TS_RECENT, tcp_replace_ts_recent)."""
        ts_val = seg.options.ts_val
        if self.ts_ok and ts_val is not None and not after(seg.seq, self.rcv_wup):
            self.ts_recent = ts_val
            self.ts_recent_stamp = now

    def _rcv_rtt_measure(self, now: float, ts_ecr: int) -> None:
        """The receiver's RTT from the echo of our TSval (tcp_rcv_rtt_measure_ts)."""
        sample = seq_diff(self.ts_now(now), ts_ecr) / 1000.0
        if 0 < sample < 60.0:
            self.rcv_rtt = sample if not self.rcv_rtt else self.rcv_rtt * 7 / 8 + sample / 8

    # ------------------------------------------------------------------ windows

    def receive_window(self) -> int:
        """What the peer may still send (tcp_receive_window)."""
        win = seq_diff(seq_add(self.rcv_wup, self.rcv_wnd), self.rcv_nxt)
        return max(win, 0)

    def free_space(self) -> int:
        used = len(self.rcv_buf) + self.rcv_buf.ofo_bytes
        return max(0, self.rcvbuf - used)

    def select_window_raw(self) -> int:
        """The window we would offer now, in bytes (Linux __tcp_select_window)."""
        mss = self.rcv_mss
        free_space = self.free_space()
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

    def select_window(self, syn_sent: bool) -> int:
        """The 16-bit window field for a segment we send; the window never shrinks
        (RFC 9293 3.8.6.2.2, tcp_select_window)."""
        cur_win = self.receive_window()
        new_win = self.select_window_raw()
        if new_win < cur_win:
            unit = 1 << self.rcv_wscale
            new_win = (cur_win + unit - 1) & ~(unit - 1)
        if not new_win:
            c = self.counters
            c.inc(Mib.TcpExtTCPWantZeroWindowAdv)
            if self.rcv_wnd:
                c.inc(Mib.TcpExtTCPToZeroWindowAdv)
        elif not self.rcv_wnd and not syn_sent:
            self.counters.inc(Mib.TcpExtTCPFromZeroWindowAdv)
        self.rcv_wnd = new_win
        self.rcv_wup = self.rcv_nxt
        new_win = min(new_win, MAX_TCP_WINDOW << self.rcv_wscale)
        return new_win >> self.rcv_wscale

    def sack_blocks(self, max_blocks: int) -> list[tuple[int, int]]:
        """The SACK blocks of our next ACK (RFC 2018 4, the D-SACK first, RFC 2883)."""
        blocks = []
        if self.pending_dsack is not None:
            blocks.append(self.pending_dsack)
        blocks += self.rcv_buf.sack_blocks(4)
        return blocks[:max_blocks]

    def dsack_set(self, seq: int, end: int, dsack_ok: bool) -> None:
        """The next ACK reports [seq, end) as a duplicate (tcp_dsack_set, RFC 2883), if
        D-SACK is on (``dsack_ok``: SACK negotiated and tcp_dsack): below RCV.NXT
        TcpExtTCPDSACKOldSent, in the out-of-order queue TcpExtTCPDSACKOfoSent. One block
        only: a later one replaces it."""
        if not dsack_ok:
            return
        self.counters.inc(Mib.TcpExtTCPDSACKOldSent if before(seq, self.rcv_nxt)
                          else Mib.TcpExtTCPDSACKOfoSent)
        self.pending_dsack = (seq, end)

    def dsack_extend(self, seq: int, end: int, dsack_ok: bool) -> None:
        """tcp_dsack_extend: grow the pending D-SACK block by [seq, end) if they overlap or
        touch (tcp_sack_extend), start one if none is pending, else leave it."""
        dsack = self.pending_dsack
        if dsack is None:
            self.dsack_set(seq, end, dsack_ok)
        elif not after(seq, dsack[1]) and not after(dsack[0], end):
            self.pending_dsack = (seq if before(seq, dsack[0]) else dsack[0],
                                  end if after(end, dsack[1]) else dsack[1])

    def dupack(self, seg: TcpSegment, dsack_ok: bool) -> None:
        """An unacceptable segment is answered with an ACK (tcp_send_dupack): one that
        carries old data or a FIN again is D-SACKed (what is below RCV.NXT), counted as an
        ACK the peer lost (TcpExtDelayedACKLost), and the next ones ACKed at once."""
        end = seq_add(seg.seq, seg.seg_len)
        if seg.seg_len and before(seg.seq, self.rcv_nxt):
            self.counters.inc(Mib.TcpExtDelayedACKLost)
            self.enter_quickack()
            self.dsack_set(seg.seq, end if before(end, self.rcv_nxt) else self.rcv_nxt,
                           dsack_ok)
        elif seg.payload:
            self.enter_quickack()

    def sack_block_count(self) -> int:
        """How many SACK blocks the next ACK may carry (for tcp_current_mss)."""
        return len(self.rcv_buf.ofo) + (self.pending_dsack is not None)

    def sequence_ok(self, seg: TcpSegment) -> bool:
        """RFC 9293 3.10.7.4 acceptability, as Linux tcp_sequence checks it: the segment
        must not end before RCV.WUP nor start beyond the right edge of the window."""
        end = seq_add(seg.seq, seg.seg_len)
        if before(end, self.rcv_wup):
            return False
        return not after(seg.seq, seq_add(self.rcv_nxt, self.receive_window()))

    def _rcv_room(self, seq: int) -> int:
        """Bytes from ``seq`` we can take: what the buffer has free, and the window already
        promised (a window is a promise; rounding it to the scale unit may exceed the
        buffer by a little, which the buffer absorbs) up to a bound past the buffer: the
        never-shrinking window creeps by the rounding on every ACK, and with a scale unit
        above the MSS it would never close (Linux's memory check, tcp_try_rmem_schedule,
        bounds it the same way). The bound is one scale unit or a sixteenth of the buffer,
        the free space below which the window is already zero (select_window_raw)."""
        used = len(self.rcv_buf) + self.rcv_buf.ofo_bytes
        promised = seq_diff(seq_add(self.rcv_nxt, self.receive_window()), seq)
        slack = max(1 << self.rcv_wscale, self.rcvbuf >> 4)
        return max(self.rcvbuf - used, min(promised, self.rcvbuf + slack - used))

    # ------------------------------------------------------------------ the application

    def read(self, now: float, max_bytes: int, ack_ok: bool) -> tuple[bytes, bool]:
        """The application reads (tcp_recvmsg): returns the bytes and whether an ACK is
        due now (tcp_cleanup_rbuf), asked only when ``ack_ok`` (a state that receives)."""
        was_window = self.receive_window()
        data = self.rcv_buf.pull(max_bytes)
        self.copied += len(data)
        self._rcv_space_adjust(now)
        return data, ack_ok and self._cleanup_rbuf(was_window)

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

    def _cleanup_rbuf(self, was_window: int) -> bool:
        """After the application read (tcp_cleanup_rbuf): the once-per-two-segments ACK
        that arrival skipped because the data was still unread is due, or a window update
        when reading opened the window a lot (at least twice what the peer sees), not
        once the peer's FIN came (RCV_SHUTDOWN)."""
        if self.ack_scheduled and seq_diff(self.rcv_nxt, self.rcv_wup) > self.rcv_mss:
            return True
        if self.fin_received or was_window * 2 > self.window_clamp:
            return False
        new_window = self.select_window_raw()
        return bool(new_window) and new_window >= 2 * was_window

    def discard(self) -> int:
        """close() or a reset: unread data is dropped; returns how much there was."""
        return self.rcv_buf.discard()

    # ------------------------------------------------------------------ arrival

    def enter_quickack(self) -> None:
        """tcp_enter_quickack_mode: ACK the next segments at once."""
        quickacks = self.rcv_wnd // (2 * max(self.rcv_mss, 1)) or 2
        self.quick = max(self.quick, min(quickacks, TCP_MAX_QUICKACKS))
        self.pingpong = 0
        self.ato = TCP_ATO_MIN
        self.ack_now = True
        self.ack_scheduled = True

    def save_synack_ack(self, now: float) -> None:
        """A SYN-ACK met in interactive mode (its FIN made us pingpong): save one ACK, as
        tcp_rcv_synsent_state_process does: quickack mode (which leaves pingpong) with
        the ACK scheduled, not sent, and the delayed-ACK timer at TCP_DELACK_MAX; a read
        sends it sooner."""
        self.enter_quickack()
        self.ack_now = False  # scheduled only (inet_csk_schedule_ack)
        self.t_delack = now + TCP_DELACK_MAX

    def schedule_ack_now(self) -> None:
        """An ACK is due at once (ICSK_ACK_NOW): the simultaneous close's FIN."""
        self.ack_now = True

    def set_pingpong(self, on: bool) -> None:
        """Interactive mode (inet_csk_enter_pingpong_mode / exit): delayed ACKs may wait
        longer (a CLOSE_WAIT, TCP_QUICKACK 0)."""
        self.pingpong = 1 if on else 0

    def note_data_sent(self, now: float) -> None:
        """A reply within ATO of the last received segment means an interactive flow
        (tcp_event_data_sent): delayed ACKs may then wait longer."""
        if now - self.lrcvtime < self.ato:
            self.pingpong = 1

    def _measure_rcv_mss(self, seg: TcpSegment, length: int) -> None:
        """tcp_measure_rcv_mss: the peer's segment size, from a GRO packet's segment size
        (``gso_size``) or the payload. A larger one raises the estimate at once (up to our
        advmss); a smaller one only when two in a row are the same size and look
        full-sized: at least 536 bytes with headers, or 88 without PSH, URG or FIN (the
        path's MTU fell), measured without the variable SACK option's bytes."""
        lss, self.last_seg_size = self.last_seg_size, 0
        size = seg.gso_size or length
        if size >= self.rcv_mss:
            self.rcv_mss = min(size, self.advmss)
            return
        opts = seg.options  # the header's length as a data segment's options make it
        size += TCP_HEADER_LEN + (TS_OPTION_LEN if opts.ts_val is not None else 0) + (
            4 + 8 * len(opts.sack_blocks) if opts.sack_blocks else 0)
        if size >= TCP_MSS_DEFAULT + TCP_HEADER_LEN or (
                size >= TCP_MIN_MSS + TCP_HEADER_LEN and not seg.flags & TCP_REMNANT):
            size -= TCP_HEADER_LEN + (TS_OPTION_LEN if self.ts_ok else 0)  # tcp_header_len
            self.last_seg_size = size
            if size == lss:
                self.rcv_mss = size

    def _event_data_recv(self, now: float, seg: TcpSegment, length: int) -> None:
        """Adapt ATO and quick-ack credit to the arrival pattern (tcp_event_data_recv)."""
        self._measure_rcv_mss(seg, length)
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
        if self.rcv_ssthresh < self.window_clamp and self.free_space() > self.rcv_ssthresh:
            self.rcv_ssthresh = min(self.rcv_ssthresh + 2 * self.advmss, self.window_clamp)

    def queue_in_order(self, now: float, seg: TcpSegment, payload: bytes | memoryview) -> None:
        """Data that starts at RCV.NXT and fits: onto the receive queue (tcp_queue_rcv);
        the fast path's whole receive side."""
        self.ack_scheduled = True
        self.data_segs_in += 1
        self.last_data_recv = now
        self._queue_rcv(now, seg, payload)

    def add_syn_data(self, now: float, seg: TcpSegment) -> None:
        """The data of a Fast Open SYN or SYN-ACK, in order after the SYN
        (tcp_fastopen_add_skb): queued, but not an arrival event of the flow. Linux does
        not call tcp_event_data_recv here, so ATO and the quick-ACK credit stay unset and
        the connection's next ACK (a FIN's, say) is not held by a delayed-ACK timer."""
        payload = seg.payload
        self.data_segs_in += 1
        self.last_data_recv = now
        self.rcv_buf.push(payload)
        self.rcv_nxt = seq_add(self.rcv_nxt, len(payload))
        self.bytes_received += len(payload)
        self.host.wake(self.owner)

    def take_syn_data(self, now: float, seg: TcpSegment) -> None:
        """The data of a Fast Open SYN-ACK and its FIN (tcp_fastopen_add_skb, which calls
        tcp_fin for a FIN)."""
        if seg.payload:
            self.add_syn_data(now, seg)
        if seg.flags & FIN:
            self._rcv_fin()

    def _queue_rcv(self, now: float, seg: TcpSegment, payload: bytes | memoryview) -> None:
        """In-order bytes onto the receive queue (tcp_queue_rcv, tcp_event_data_recv)."""
        length = len(payload)
        self.rcv_buf.push(payload)
        self.rcv_nxt = seq_add(self.rcv_nxt, length)
        self.bytes_received += length
        self._event_data_recv(now, seg, length)
        if self.ts_ok and seg.options.ts_ecr:
            self._rcv_rtt_measure(now, seg.options.ts_ecr)
        self.host.wake(self.owner)

    def data_queue(self, now: float, seg: TcpSegment, accept: bool, dsack_ok: bool) -> int:
        """Accept segment text and FIN (RFC 9293 3.10.7.4 seventh/eighth; tcp_data_queue).
        ``accept`` is False in states that take no more data (after the peer's FIN: RFC
        9293 says ignore it; Linux still D-SACKs what comes again). ``dsack_ok``: D-SACKs
        may be sent. Returns DATA_FIN when the peer's FIN is now in order."""
        c = self.counters
        payload = seg.payload
        seq = seg.seq
        length = len(payload)
        fin = bool(seg.flags & FIN)
        self.ack_scheduled = True
        if not accept and not before(seq, self.rcv_nxt):
            return DATA_NONE
        if length and accept:
            self.data_segs_in += 1
            self.last_data_recv = now
        end = seq_add(seq, length)
        if before(seq, self.rcv_nxt):
            seg_end = seq_add(seq, seg.seg_len)  # a SYN and a FIN take a number too
            if not after(seg_end, self.rcv_nxt):
                # A complete duplicate: D-SACK it and ACK at once (tcp_data_queue).
                c.inc(Mib.TcpExtDelayedACKLost)
                self.dsack_set(seq, seg_end, dsack_ok)
                self.enter_quickack()
                return DATA_NONE
            # Partial overlap: D-SACK the old part, keep the rest.
            self.dsack_set(seq, self.rcv_nxt, dsack_ok)
            if not accept:
                return DATA_NONE
            skip = seq_diff(self.rcv_nxt, seq)
            payload = memoryview(payload)[skip:]
            seq = self.rcv_nxt
            length = len(payload)
        if seq == self.rcv_nxt:
            if length and self.receive_window() == 0:
                c.inc(Mib.TcpExtTCPZeroWindowDrop)
                self.enter_quickack()
                return DATA_NONE
            room = self._rcv_room(seq)
            if length > room:
                c.inc(Mib.TcpExtTCPRcvQDrop)
                self.enter_quickack()
                # Out of memory: offer a zero window at once, shrinking it (Linux
                # ICSK_ACK_NOMEM in tcp_select_window); the sender probes until we read.
                self.rcv_wnd, self.rcv_wup = 0, self.rcv_nxt
                if room <= 0:
                    return DATA_NONE
                payload, length, fin = memoryview(payload)[:room], room, False
                end = seq_add(seq, room)
            if length:
                self.ack_scheduled = True
                self._queue_rcv(now, seg, payload)
            result = DATA_NONE
            if fin:
                self._rcv_fin()
                result = DATA_FIN
            if self.rcv_buf.ofo:
                # What the in-order data overlapped of the queue was a duplicate
                # (tcp_ofo_queue's D-SACK, up to where RCV.NXT stood before it).
                high = self.rcv_nxt
                for blk in self.rcv_buf.ofo:
                    if not before(blk.start, high):
                        break
                    self.dsack_extend(blk.start, blk.end if before(blk.end, high) else high,
                                      dsack_ok)
                for chunk in self.rcv_buf.ofo_pop_ready(self.rcv_nxt):
                    self.rcv_buf.push(chunk)
                    self.rcv_nxt = seq_add(self.rcv_nxt, len(chunk))
                    self.bytes_received += len(chunk)
                if not self.rcv_buf.ofo:
                    self.ack_now = True  # RFC 5681 4.2: ACK at once when a gap fills
                if self.ofo_fin is not None and self.ofo_fin == self.rcv_nxt:
                    self.ofo_fin = None
                    self._rcv_fin()
                    result = DATA_FIN
            self.host.wake(self.owner)
            return result
        # Out of order (tcp_data_queue_ofo): queue it, ACK at once with SACK.
        if length > self._rcv_room(seq) or (length and not self.rcv_buf.ofo_schedule(
                self.rcv_nxt, seq, length, self.rcvbuf, c)):
            c.inc(Mib.TcpExtTCPOFODrop)
            self.ack_now = True
            return DATA_NONE
        c.inc(Mib.TcpExtTCPOFOQueue)
        if length:
            for dup in self.rcv_buf.ofo_insert(self.rcv_nxt, seq, payload):
                if dup.replace:
                    self.dsack_set(dup.start, dup.end, dsack_ok)
                else:
                    self.dsack_extend(dup.start, dup.end, dsack_ok)
                if dup.dropped:
                    c.inc(Mib.TcpExtTCPOFOMerge)
        if fin:
            self.ofo_fin = end
        self.ack_now = True
        return DATA_NONE

    def _rcv_fin(self) -> None:
        """The peer's FIN is in order (tcp_fin): it takes a sequence number and ends the
        stream; the connection moves the state on."""
        self.rcv_nxt = seq_add(self.rcv_nxt, 1)
        self.fin_received = True
        self.ack_scheduled = True
        self.host.wake(self.owner)

    # ------------------------------------------------------------------ ACKs

    def ack_sent(self) -> None:
        """Every segment we send carries the ACK (tcp_event_ack_sent)."""
        self.pending_dsack = None
        if self.quick:
            self.quick -= 1
            if not self.quick:
                self.ato = TCP_ATO_MIN
        self.ack_now = False
        self.ack_scheduled = False
        self.t_delack = None

    def ack_snd_check(self, now: float) -> bool:
        """Send the ACK now (True) or delay it (__tcp_ack_snd_check)."""
        if not self.ack_scheduled:
            return False
        if self.ack_now or self.rcv_buf.ofo or (self.quick and not self.pingpong) or (
                seq_diff(self.rcv_nxt, self.rcv_wup) > self.rcv_mss
                and self.select_window_raw() >= self.rcv_wnd):
            return True
        return self._send_delayed_ack(now)

    def _send_delayed_ack(self, now: float) -> bool:
        """Arm the delayed-ACK timer (tcp_send_delayed_ack, RFC 9293 3.8.6.3); True when
        the ACK should go at once instead."""
        ato = self.ato
        if ato > TCP_DELACK_MIN:
            max_ato = TCP_DELACK_MAX if self.pingpong else 0.5
            if self.rtt.has_sample:
                rtt = max(self.rtt.srtt_us / 1e6, TCP_DELACK_MIN)
                max_ato = min(max_ato, rtt)
            ato = min(ato, max_ato)
        if ato <= 0:
            return True
        timeout = now + ato
        if self.t_delack is not None:
            if self.t_delack <= now + ato / 4:
                return True
            timeout = min(timeout, self.t_delack)
        self.t_delack = timeout
        return False

    def delack_timer(self) -> bool:
        """The delayed-ACK timer fired (tcp_delack_timer_handler): adapt ATO; True when
        the ACK is still due."""
        self.t_delack = None
        if not self.ack_scheduled:
            return False
        if self.pingpong:
            self.pingpong = 0
            self.ato = TCP_ATO_MIN
        else:
            self.ato = min(self.ato * 2, self.rto_value())
        self.counters.inc(Mib.TcpExtDelayedACKs)
        return True

    def stop_delack(self) -> None:
        self.t_delack = None

    def quickack(self, value: int, ack_ok: bool) -> bool:
        """TCP_QUICKACK (__tcp_sock_set_quickack): 0 enters pingpong (delayed ACKs); any
        other value leaves it; True when an ACK that is due should go now (tcp_cleanup_rbuf
        with ICSK_ACK_PUSHED, when ``ack_ok``: a synchronized state with a delayed ACK
        pending); an even value re-enters pingpong after that ACK."""
        if not value:
            self.pingpong = 1
            return False
        self.pingpong = 0
        send = False
        if ack_ok and self.t_delack is not None:
            send = not len(self.rcv_buf) or seq_diff(self.rcv_nxt, self.rcv_wup) > self.rcv_mss
            if not value & 1:
                self.pingpong = 1
        return send
