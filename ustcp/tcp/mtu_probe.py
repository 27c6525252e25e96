"""Packetization-layer path MTU discovery (RFC 4821, Linux's tcp_mtu_probing): TCP finds the
path MTU itself, for paths that drop large segments without an ICMP (black holes).

State per connection (:class:`MtuProbe`, Linux ``icsk_mtup``): the search range
``search_low``..``search_high`` in MTU bytes, and the probe in flight. The knobs:

- ``tcp_mtu_probing``: 0 off; 1 on once a black hole is suspected; 2 always on;
- ``tcp_base_mss`` (1024): where the search starts (the MSS is held at ``search_low``'s
  while probing is on);
- ``tcp_mtu_probe_floor`` (48): the least MSS a black hole may push ``search_low`` to;
- ``tcp_probe_threshold`` (8): stop probing when the range is narrower than this;
- ``tcp_probe_interval`` (600 s): after this, search again from the current MSS up to the
  path MTU (a path may have grown);
- ``tcp_retries1`` (3): after retransmitting for as long as 3 doublings of the minimum RTO
  take, a black hole is suspected (tcp_write_timeout's ``retransmits_timed_out``).

The functions work on the :class:`~ustcp.tcp.connection.Connection` as ``recovery.py``'s
do; the connection calls them from its MSS sync, its send loop, its RTO and ACK paths.
"""

from __future__ import annotations

from typing import Final, Protocol

import structlog

from ..config import StackConfig
from ..mib import Mib
from ..wire.tcp import TcpSegment
from .congestion.base import CA_CWR, CA_OPEN, CcState
from .host import Host
from .options import TS_OPTION_LEN
from .seq import after, seq_add, seq_diff

log = structlog.get_logger("ustcp.tcp")

TCP_HEADER: Final = 20
PROBE_MIN_CWND: Final = 11  # tcp_mtu_probe: cwnd must be at least this


class MtuProbe:
    """icsk_mtup and tp->mtu_probe: the search range (MTU bytes) and the probe in flight."""

    __slots__ = ("enabled", "probe_seq_end", "probe_seq_start", "probe_size",
                 "probe_timestamp", "search_high", "search_low")

    def __init__(self, enabled: bool, search_low: int, search_high: int, now: float) -> None:
        self.enabled = enabled
        self.search_low = search_low
        self.search_high = search_high
        self.probe_size = 0  # the MTU being probed, 0 when no probe is out
        self.probe_timestamp = now
        self.probe_seq_start = 0
        self.probe_seq_end = 0


class _ReceiveSide(Protocol):
    @property
    def ts_ok(self) -> bool: ...

    def sack_block_count(self) -> int: ...


class _InFlight(Protocol):
    def in_flight(self) -> int: ...


class Probing(Protocol):
    """What the search needs of the sender (``sender.Sender``)."""

    @property
    def name(self) -> str: ...

    config: StackConfig
    host: Host
    remote_ip: bytes
    mss: int
    ccs: CcState
    reordering: int
    write_seq: int
    snd_nxt: int
    snd_una: int
    snd_wnd: int
    mtup: MtuProbe

    @property
    def rcv(self) -> _ReceiveSide: ...

    @property
    def rtx(self) -> _InFlight: ...

    def resync_mss(self, now: float) -> None: ...

    def send_probe(self, now: float, size: int) -> TcpSegment: ...

    def eor_room(self, limit: int) -> int: ...

    def retransmits_timed_out(self, now: float, boundary: int) -> bool: ...


def _headers(conn: Probing) -> int:
    return (40 if len(conn.remote_ip) == 16 else 20) + TCP_HEADER


def mtu_to_mss(conn: Probing, mtu: int) -> int:
    """__tcp_mtu_to_mss: payload room of a segment without options."""
    return max(mtu - _headers(conn), conn.config.tcp_min_snd_mss)


def mss_to_mtu(conn: Probing, mss: int) -> int:
    return mss + _headers(conn)


def init(config: StackConfig, remote_ip: bytes, path_mtu: int, now: float) -> MtuProbe:
    """tcp_mtup_init."""
    headers = (40 if len(remote_ip) == 16 else 20) + TCP_HEADER
    return MtuProbe(config.tcp_mtu_probing > 1, config.tcp_base_mss + headers, path_mtu, now)


def clamp(conn: Probing, mss: int, pmtu: int) -> int:
    """tcp_sync_mss's part: the search cannot go above the path MTU, and while probing is on
    the MSS is held at what ``search_low`` allows."""
    mtup = conn.mtup
    mtup.search_high = min(mtup.search_high, pmtu)
    if mtup.enabled:
        mss = min(mss, mtu_to_mss(conn, mtup.search_low))
    return mss


def black_hole(conn: Probing, now: float) -> None:
    """tcp_mtu_probing: retransmissions are timing out. The first time probing turns on
    (the MSS falls to tcp_base_mss's); after that each suspicion halves ``search_low``'s MSS
    (no lower than tcp_mtu_probe_floor)."""
    cfg, mtup = conn.config, conn.mtup
    if not cfg.tcp_mtu_probing:
        return
    if not mtup.enabled:
        mtup.enabled = True
        mtup.probe_timestamp = now
    else:
        mss = mtu_to_mss(conn, mtup.search_low) >> 1
        mss = max(min(cfg.tcp_base_mss, mss), cfg.tcp_mtu_probe_floor, cfg.tcp_min_snd_mss)
        mtup.search_low = mss_to_mtu(conn, mss)
    log.info("mtu_black_hole", conn=conn.name, search_low=mtup.search_low)
    conn.resync_mss(now)


def on_rto(conn: Probing, now: float) -> None:
    """The RTO fired: a probe that was the first unacknowledged segment failed; and after
    tcp_retries1's worth of retransmitting, a black hole is suspected."""
    mtup = conn.mtup
    if mtup.probe_size and conn.snd_una == mtup.probe_seq_start:
        _probe_failed(conn)
    if conn.retransmits_timed_out(now, conn.config.tcp_retries1):
        black_hole(conn, now)


def maybe_send_probe(conn: Probing, now: float) -> None:
    """tcp_mtu_probe: with probing on, the connection calm (open state, cwnd >= 11, no SACK
    blocks to send), no probe out and enough queued data, one segment of the MTU halfway up
    the search range goes out ahead of the data; the rest follows at the current MSS."""
    mtup, ccs = conn.mtup, conn.ccs
    if not mtup.enabled or mtup.probe_size or ccs.ca_state != CA_OPEN \
            or ccs.snd_cwnd < PROBE_MIN_CWND or conn.rcv.sack_block_count():
        return
    probe_mtu = (mtup.search_high + mtup.search_low) >> 1
    ts = TS_OPTION_LEN if conn.rcv.ts_ok else 0
    size = mtu_to_mss(conn, probe_mtu) - ts
    if probe_mtu > mtup.search_high or mtup.search_high - mtup.search_low < \
            conn.config.tcp_probe_threshold or size <= conn.mss:
        _check_reprobe(conn, now)
        return
    unsent = seq_diff(conn.write_seq, conn.snd_nxt)
    window = seq_diff(seq_add(conn.snd_una, conn.snd_wnd), conn.snd_nxt)
    if unsent < size + (conn.reordering + 1) * conn.mss or window < size \
            or conn.rtx.in_flight() + 2 > ccs.snd_cwnd or conn.eor_room(size) < size:
        return  # (the last: tcp_can_coalesce_send_queue_head refuses an MSG_EOR skb)
    seg = conn.send_probe(now, size)
    mtup.probe_size = probe_mtu
    mtup.probe_seq_start, mtup.probe_seq_end = seg.seq, conn.snd_nxt
    ccs.snd_cwnd -= 1  # tcp_mtu_probe: the probe costs one (given back if it fails)
    log.debug("mtu_probe", conn=conn.name, probe_mtu=probe_mtu, size=size)


def on_ack(conn: Probing, now: float) -> None:
    """tcp_clean_rtx_queue: the probe is acknowledged: ``search_low`` rises to it, the MSS
    with it, cwnd kept in bytes (tcp_mtup_probe_success)."""
    mtup = conn.mtup
    if not mtup.probe_size or after(mtup.probe_seq_end, conn.snd_una):
        return
    ccs = conn.ccs
    old_mtu = mss_to_mtu(conn, conn.mss + (TS_OPTION_LEN if conn.rcv.ts_ok else 0))
    ccs.snd_cwnd = max(1, ccs.snd_cwnd * old_mtu // mtup.probe_size)
    ccs.snd_cwnd_cnt = 0
    mtup.search_low = mtup.probe_size
    mtup.probe_size = 0
    conn.host.counters.inc(Mib.TcpExtTCPMTUPSuccess)
    log.info("mtu_probe_success", conn=conn.name, search_low=mtup.search_low)
    conn.resync_mss(now)


def probe_lost(conn: Probing) -> bool:
    """tcp_fastretrans_alert's first check: the probe is the first hole, so it was lost:
    ``search_high`` falls below it and the cwnd the probe took comes back; the caller
    resends what no longer fits (tcp_simple_retransmit). True when so."""
    mtup = conn.mtup
    if conn.ccs.ca_state >= CA_CWR or not mtup.probe_size \
            or conn.snd_una != mtup.probe_seq_start:
        return False
    _probe_failed(conn)
    conn.ccs.snd_cwnd += 1
    return True


def _probe_failed(conn: Probing) -> None:
    mtup = conn.mtup
    mtup.search_high = mtup.probe_size - 1
    mtup.probe_size = 0
    conn.host.counters.inc(Mib.TcpExtTCPMTUPFail)
    log.info("mtu_probe_failed", conn=conn.name, search_high=mtup.search_high)


def _check_reprobe(conn: Probing, now: float) -> None:
    """tcp_mtu_check_reprobe: after tcp_probe_interval, search again from the current MSS up
    to the path MTU."""
    mtup = conn.mtup
    if now - mtup.probe_timestamp < conn.config.tcp_probe_interval:
        return
    mtup.search_high = conn.host.path_mtu(conn.remote_ip)
    mtup.search_low = mss_to_mtu(conn, conn.mss + (TS_OPTION_LEN if conn.rcv.ts_ok else 0))
    mtup.probe_size = 0
    mtup.probe_timestamp = now

