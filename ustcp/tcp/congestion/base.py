"""The congestion-control interface and the helpers every algorithm shares.

This mirrors Linux's ``struct tcp_congestion_ops`` (include/net/tcp.h) and the generic
helpers of net/ipv4/tcp_cong.c. Everything is counted in packets (segments of one MSS),
exactly like Linux's ``tp->snd_cwnd``, which ``tcpi_snd_cwnd`` reports.

Who does what:

- The engine (tcp/connection.py) owns :class:`CcState`, keeps its sequence numbers and
  counters current, decides when recovery starts and ends (RFC 5681 3.2, RFC 6675, PRR),
  and calls the hooks below at the same points Linux calls ``icsk_ca_ops``.
- An algorithm (reno.py, cubic.py) only answers three questions: how much to grow
  ``snd_cwnd`` on an ACK (``cong_avoid``), what the new ``snd_ssthresh`` is when a loss is
  detected (``ssthresh``), and what to restore when a reduction proves spurious
  (``undo_cwnd``); the other hooks feed it RTT samples and events.

Algorithms never read a clock: time arrives as ``now`` (seconds, float).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Final

from ..pacing import PACING_UNLIMITED

# Linux enum tcp_ca_state (include/uapi/linux/tcp.h), as reported in tcpi_ca_state.
CA_OPEN, CA_DISORDER, CA_CWR, CA_RECOVERY, CA_LOSS = 0, 1, 2, 3, 4

TCP_INFINITE_SSTHRESH: Final = 0x7FFFFFFF  # "no threshold yet": slow start until the first loss


class CwndEvent(enum.IntEnum):
    """Linux enum tcp_ca_event: things the engine tells the algorithm about."""

    TX_START = 0  # first transmission when nothing was in flight (tcp_event_data_sent)
    CWND_RESTART = 1  # cwnd is about to be cut after idle (tcp_cwnd_restart)
    COMPLETE_CWR = 2  # a CWR or Recovery cwnd reduction has finished (tcp_end_cwnd_reduction)
    LOSS = 3  # retransmission timeout: entering CA_LOSS (tcp_enter_loss)


@dataclass(slots=True)
class CcState:
    """The congestion part of the TCB: fields of Linux's ``struct tcp_sock``.

    Sequence numbers are absolute 32-bit values (compare them with tcp/seq.py).
    """

    mss: int
    snd_cwnd: int = 10  # packets; RFC 6928 initial window (TCP_INIT_CWND)
    snd_ssthresh: int = TCP_INFINITE_SSTHRESH
    snd_cwnd_cnt: int = 0  # ACKed packets counted toward the next +1 in congestion avoidance
    snd_cwnd_clamp: int = 0xFFFFFFFF  # upper bound on snd_cwnd (Linux: ~0U, TCP_WINDOW_CLAMP)
    prior_cwnd: int = 0  # cwnd before the last reduction, for undo
    prior_ssthresh: int = 0
    ca_state: int = CA_OPEN
    snd_una: int = 0
    snd_nxt: int = 0
    packets_out: int = 0  # segments in flight
    is_cwnd_limited: bool = False  # the last flight was limited by cwnd, not by the app
    min_rtt_us: int = 0  # 0 = no sample yet
    srtt_us: int = 0  # smoothed RTT in microseconds (Linux's srtt_us >> 3)
    delivered: int = 0  # packets delivered so far (tcpi_delivered)
    lsndtime: float = 0.0  # when data was last sent; the engine updates it *after* TX_START
    # Socket fields HyStart reads (tcp/pacing.py): sk_pacing_rate in bytes per second
    # (2**64 - 1: unlimited), sk_pacing_status (SK_PACING_NONE, _NEEDED, _FQ)
    pacing_rate: int = PACING_UNLIMITED
    pacing_status: int = 0

    def __init__(self, mss: int, snd_cwnd: int = 10, snd_ssthresh: int = TCP_INFINITE_SSTHRESH,
                 snd_cwnd_cnt: int = 0, snd_cwnd_clamp: int = 0xFFFFFFFF, prior_cwnd: int = 0,
                 prior_ssthresh: int = 0, ca_state: int = CA_OPEN, snd_una: int = 0,
                 snd_nxt: int = 0, packets_out: int = 0, is_cwnd_limited: bool = False,
                 min_rtt_us: int = 0, srtt_us: int = 0, delivered: int = 0,
                 lsndtime: float = 0.0, pacing_rate: int = PACING_UNLIMITED,
                 pacing_status: int = 0) -> None:
        # written out for mypyc, as wire.tcp.TcpOptions.__init__ is
        self.mss = mss
        self.snd_cwnd = snd_cwnd
        self.snd_ssthresh = snd_ssthresh
        self.snd_cwnd_cnt = snd_cwnd_cnt
        self.snd_cwnd_clamp = snd_cwnd_clamp
        self.prior_cwnd = prior_cwnd
        self.prior_ssthresh = prior_ssthresh
        self.ca_state = ca_state
        self.snd_una = snd_una
        self.snd_nxt = snd_nxt
        self.packets_out = packets_out
        self.is_cwnd_limited = is_cwnd_limited
        self.min_rtt_us = min_rtt_us
        self.srtt_us = srtt_us
        self.delivered = delivered
        self.lsndtime = lsndtime
        self.pacing_rate = pacing_rate
        self.pacing_status = pacing_status


def tcp_in_slow_start(s: CcState) -> bool:
    """Linux tcp_in_slow_start: below ssthresh, grow exponentially (RFC 5681 3.1)."""
    return s.snd_cwnd < s.snd_ssthresh


def tcp_slow_start(s: CcState, acked: int) -> int:
    """Linux tcp_slow_start: cwnd += acked, but not past ssthresh (RFC 5681 3.1, RFC 3465
    appropriate byte counting with L = unlimited, as Linux does). Returns the ACKed packets
    left over once ssthresh is reached, for congestion avoidance to use."""
    cwnd = min(s.snd_cwnd + acked, s.snd_ssthresh)
    acked -= cwnd - s.snd_cwnd
    s.snd_cwnd = min(cwnd, s.snd_cwnd_clamp)
    return acked


def tcp_cong_avoid_ai(s: CcState, w: int, acked: int) -> None:
    """Linux tcp_cong_avoid_ai: additive increase of one packet per ``w`` packets ACKed,
    using ``snd_cwnd_cnt`` as the accumulator (RFC 5681 3.1: about +1 MSS per RTT when
    w == cwnd)."""
    if s.snd_cwnd_cnt >= w:
        # Credit accumulated while w was larger: apply it gently (one packet) now.
        s.snd_cwnd_cnt = 0
        s.snd_cwnd += 1
    s.snd_cwnd_cnt += acked
    if s.snd_cwnd_cnt >= w:
        delta = s.snd_cwnd_cnt // w
        s.snd_cwnd_cnt -= delta * w
        s.snd_cwnd += delta
    s.snd_cwnd = min(s.snd_cwnd, s.snd_cwnd_clamp)


class CongestionControl(ABC):
    """One connection's congestion-control algorithm (Linux struct tcp_congestion_ops).

    An instance belongs to one connection and may keep per-connection state (Linux keeps it
    in ``inet_csk_ca(sk)``). The hooks are called by the engine:

    - ``init`` once the connection is synchronized (tcp_init_congestion_control);
    - ``pkts_acked`` for every ACK that acknowledges new data, with the RTT sample of that
      ACK or -1 (tcp_clean_rtx_queue);
    - ``cong_avoid`` for such ACKs when not in Recovery/CWR (tcp_cong_control);
    - ``ssthresh`` when a loss is detected (tcp_init_cwnd_reduction, tcp_enter_loss);
    - ``set_state`` before ``s.ca_state`` changes (tcp_set_ca_state);
    - ``undo_cwnd`` when a reduction is undone (tcp_undo_cwnd_reduction);
    - ``cwnd_event`` for the events of :class:`CwndEvent` (tcp_ca_event).
    """

    name: ClassVar[str]

    def init(self, s: CcState, now: float) -> None:  # noqa: B027 (optional hook)
        """Called when the connection reaches ESTABLISHED. Default: nothing."""

    @abstractmethod
    def ssthresh(self, s: CcState) -> int:
        """The new slow-start threshold after a loss, computed from ``s.snd_cwnd``."""

    @abstractmethod
    def cong_avoid(self, s: CcState, now: float, ack: int, acked: int) -> None:
        """Grow ``s.snd_cwnd`` for ``acked`` newly ACKed packets (``ack`` is the ACK's
        sequence number). Must not grow it unless ``s.is_cwnd_limited``."""

    def pkts_acked(self, s: CcState, now: float, acked: int, rtt_us: int) -> None:  # noqa: B027
        """``acked`` packets left the retransmit queue; ``rtt_us`` < 0 means no RTT sample.
        Default: nothing."""

    def set_state(self, s: CcState, new_state: int) -> None:  # noqa: B027
        """``s.ca_state`` is about to become ``new_state``. Default: nothing."""

    @abstractmethod
    def undo_cwnd(self, s: CcState) -> int:
        """The cwnd to restore when the last reduction was spurious."""

    def cwnd_event(self, s: CcState, now: float, event: CwndEvent) -> None:  # noqa: B027
        """Notification of a :class:`CwndEvent`. Default: nothing."""
