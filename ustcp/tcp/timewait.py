"""The TIME_WAIT table (Linux tcp_minisocks.c, struct tcp_timewait_sock).

A connection that closed first lingers here for 2MSL = 60 s as a small record: enough to
re-ACK a retransmitted FIN, to reject old duplicates, and to decide whether a new SYN for the
same 4-tuple may reuse it (RFC 6191). The table is bounded by tcp_max_tw_buckets: over the
bound a connection closes without TIME_WAIT and TCPTimeWaitOverflow is counted.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Protocol

import structlog

from ..config import StackConfig
from ..debuglog import DEBUG
from ..mib import Counters, Mib
from ..wire.addr import conn_name
from ..wire.tcp import ACK, FIN, RST, SYN, TcpOptions, TcpSegment
from .seq import after, seq_add, seq_diff
from .tables import Shrinker
from .timers import TimerHeap

log = structlog.get_logger("ustcp.tcp")

TCP_TIMEWAIT_LEN: Final = 60.0  # 2MSL with Linux's fixed MSL of 30 s
TCP_PAWS_MSL: Final = 60.0  # RFC 7323 5.5: TS.Recent of a TIME_WAIT entry is trusted this long
TCP_PAWS_24DAYS: Final = 24 * 86400.0
TCP_PAWS_WINDOW: Final = 1  # ticks of TSval lag per-host PAWS tolerates
PEER_STAMPS_MAX: Final = 4096  # hosts remembered for tcp_tw_recycle (Linux's tcp_metrics table)


@dataclass(slots=True)
class TimeWaitEntry:
    key: tuple[bytes, int, bytes, int]
    snd_nxt: int
    rcv_nxt: int
    rcv_wnd: int  # unscaled window to announce
    rcv_wscale: int
    ts_ok: bool
    ts_recent: int
    ts_recent_stamp: float
    ts_offset: int
    last_seen: float
    expires: float

    def __init__(self, key: tuple[bytes, int, bytes, int], snd_nxt: int, rcv_nxt: int,
                 rcv_wnd: int, rcv_wscale: int, ts_ok: bool, ts_recent: int,
                 ts_recent_stamp: float, ts_offset: int, last_seen: float,
                 expires: float) -> None:
        # written out for mypyc, as wire.tcp.TcpOptions.__init__ is
        self.key = key
        self.snd_nxt = snd_nxt
        self.rcv_nxt = rcv_nxt
        self.rcv_wnd = rcv_wnd
        self.rcv_wscale = rcv_wscale
        self.ts_ok = ts_ok
        self.ts_recent = ts_recent
        self.ts_recent_stamp = ts_recent_stamp
        self.ts_offset = ts_offset
        self.last_seen = last_seen
        self.expires = expires


class TimeWaitHost(Protocol):
    """What the TIME_WAIT table needs of its host (a part of ``host.Host``)."""

    config: StackConfig
    counters: Counters

    def emit(self, src_ip: bytes, dst_ip: bytes, seg: TcpSegment) -> None: ...

    def note_deadline(self, when: float) -> None: ...


class TimeWaitTable:
    def __init__(self, host: TimeWaitHost) -> None:
        self.host = host
        self.entries: dict[tuple[bytes, int, bytes, int], TimeWaitEntry] = {}
        self._entries_size = Shrinker()
        self._timers: TimerHeap[tuple[bytes, int, bytes, int]] = TimerHeap()
        # tcp_tw_recycle (Linux < 4.12): the last TSval seen from each host and when, kept
        # from connections that entered TIME_WAIT (tcp_remember_stamp, tcp_metrics).
        self.peer_stamps: OrderedDict[bytes, tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, now: float, entry: TimeWaitEntry, rto: float) -> None:
        """tcp_time_wait: keep what TIME_WAIT needs (the connection made ``entry``; ``rto``
        its retransmission timeout, for tcp_tw_recycle), or count an overflow."""
        e = self.host
        if len(self.entries) >= e.config.tcp_max_tw_buckets:
            e.counters.inc(Mib.TcpExtTCPTimeWaitOverflow)
            log.info("time_wait_overflow", conn=conn_name(entry.key))
            return
        if e.config.tcp_tw_recycle and entry.ts_ok and entry.ts_recent_stamp:
            # tcp_time_wait with recycling: remember the peer's clock, and wait 3.5 RTO
            # instead of 2MSL.
            self._remember_stamp(now, entry.key[2], entry.ts_recent)
            entry.expires = now + 3.5 * rto
        self.entries[entry.key] = entry
        self._schedule(entry)
        e.counters.inc(Mib.UstcpTimeWaitEntered)
        if DEBUG.on:
            log.debug("time_wait", conn=conn_name(entry.key), expires=round(entry.expires, 6))

    def _remember_stamp(self, now: float, host: bytes, ts_recent: int) -> None:
        """tcp_remember_stamp: keep the host's newest TSval (or a stale one's replacement)."""
        known = self.peer_stamps.pop(host, None)
        if known is not None and seq_diff(known[0], ts_recent) > 0 \
                and now - known[1] <= TCP_PAWS_MSL:
            ts_recent = known[0]
        self.peer_stamps[host] = (ts_recent, now)
        while len(self.peer_stamps) > PEER_STAMPS_MAX:
            self.peer_stamps.popitem(last=False)

    def peer_is_proven(self, now: float, host: bytes, ts_val: int | None) -> bool:
        """tcp_peer_is_proven with its PAWS check (tcp_tw_recycle): a SYN from a host
        whose clock was seen ahead of this SYN's TSval within the last TCP_PAWS_MSL is an
        old duplicate. Behind a NAT it is a different client with a different clock."""
        known = self.peer_stamps.get(host)
        if known is None or now - known[1] >= TCP_PAWS_MSL:
            return True
        return ts_val is not None and seq_diff(known[0], ts_val) <= TCP_PAWS_WINDOW

    def _schedule(self, entry: TimeWaitEntry) -> None:
        self._timers.push(entry.expires, entry.key)
        self.host.note_deadline(entry.expires)

    def _live(self, key: tuple[bytes, int, bytes, int], when: float) -> bool:
        entry = self.entries.get(key)
        return entry is not None and entry.expires == when

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline(self._live)

    def expire(self, now: float) -> None:
        expired = 0
        for key in self._timers.pop_due(now, self._live):
            del self.entries[key]
            self.host.counters.inc(Mib.TcpExtTW)
            expired += 1
        if expired:
            self.entries = self._entries_size.after_delete(self.entries, expired)

    def _ack(self, now: float, entry: TimeWaitEntry) -> None:
        local_ip, local_port, remote_ip, remote_port = entry.key
        opts = TcpOptions()
        if entry.ts_ok:
            opts.ts_val = (int(now * 1000) + entry.ts_offset) & 0xFFFFFFFF
            opts.ts_ecr = entry.ts_recent
        seg = TcpSegment(local_port, remote_port, entry.snd_nxt, entry.rcv_nxt, ACK,
                         entry.rcv_wnd, opts)
        self.host.emit(local_ip, remote_ip, seg)

    def on_segment(self, now: float, entry: TimeWaitEntry, seg: TcpSegment) -> int | None:
        """tcp_timewait_state_process. Returns the ISN for a new connection when the
        segment is a SYN that may reopen this 4-tuple (the entry is then gone), else None."""
        c = self.host.counters
        flags = seg.flags
        opts = seg.options
        saw_ts = entry.ts_ok and opts.ts_val is not None
        paws_reject = False
        if saw_ts and entry.ts_recent and seq_diff(entry.ts_recent, opts.ts_val or 0) > 0 \
                and now - entry.ts_recent_stamp < TCP_PAWS_24DAYS:
            # RFC 7323 5.3; a RST is not rejected once TS.Recent is older than MSL.
            paws_reject = not (flags & RST and now - entry.ts_recent_stamp > TCP_PAWS_MSL)
        end_seq = seq_add(seg.seq, seg.seg_len)
        if not paws_reject and seg.seq == entry.rcv_nxt and (
                seg.seq == end_seq or flags & RST):
            # In-window bare ACK or RST.
            if flags & RST:
                if not self.host.config.tcp_rfc1337:
                    del self.entries[entry.key]  # TIME-WAIT assassination (RFC 1337)
                    c.inc(Mib.TcpExtTWKilled)
                    return None
            else:
                entry.expires = now + TCP_TIMEWAIT_LEN
                self._schedule(entry)
            if saw_ts:
                entry.ts_recent = opts.ts_val or 0
                entry.ts_recent_stamp = now
            return None
        if flags & SYN and not flags & (RST | ACK) and not paws_reject and (
                after(seg.seq, entry.rcv_nxt)
                or (saw_ts and seq_diff(entry.ts_recent, opts.ts_val or 0) < 0)):
            # A new incarnation (RFC 6191): its ISN comes after everything we sent.
            del self.entries[entry.key]
            c.inc(Mib.TcpExtTWRecycled)
            return seq_add(entry.snd_nxt, 65535 + 2) or 1
        if paws_reject:
            c.inc(Mib.TcpExtPAWSEstab)
        if not flags & RST:
            # Out of window (a retransmitted FIN, an old SYN, ...): ACK it; an ACK or a
            # PAWS reject restarts the 2MSL timer.
            if paws_reject or flags & ACK:
                entry.expires = now + TCP_TIMEWAIT_LEN
                self._schedule(entry)
            if now - entry.last_seen >= self.host.config.tcp_invalid_ratelimit / 1000.0 \
                    or flags & FIN:
                entry.last_seen = now
                self._ack(now, entry)
            else:
                c.inc(Mib.TcpExtTCPACKSkippedTimeWait)
        return None

    def reusable(self, now: float, key: tuple[bytes, int, bytes, int]) -> TimeWaitEntry | None:
        """tcp_twsk_unique: may an active open reuse this entry's 4-tuple (tcp_tw_reuse)?
        Needs timestamps and more than one second since the entry's last timestamp."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        mode = self.host.config.tcp_tw_reuse
        loopback = key[0][0] == 127 or key[2][0] == 127
        allowed = mode == 1 or (mode == 2 and loopback)
        if allowed and entry.ts_ok and now - entry.ts_recent_stamp > 1.0:
            del self.entries[key]
            self.host.counters.inc(Mib.TcpExtTWRecycled)
            return entry
        return None
