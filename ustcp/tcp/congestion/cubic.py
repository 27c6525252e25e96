"""CUBIC (RFC 9438) with HyStart, as Linux's net/ipv4/tcp_cubic.c does it (the default).

After a loss CUBIC remembers the window where it happened, ``W_max``, cuts cwnd to
``beta * cwnd`` and then grows cwnd as a cubic function of the time ``t`` since that cut::

    W(t) = C * (t - K)**3 + W_max,      K = cbrt(W_max * (1 - beta) / C)

concave up to ``W_max`` (reached after ``K`` seconds), flat near it, convex beyond. Growth
depends on elapsed time, not on the number of ACKs, so flows with different RTTs converge.
A Reno estimate runs alongside and wins where standard TCP would be faster (the
"Reno-friendly region", RFC 9438 4.3). HyStart (Ha and Rhee, 2008) leaves slow start
before the first loss, when the ACKs of one round stretch out (ack train) or the RTT
rises (delay increase).

Choices (where Linux's integer arithmetic was replaced):

- ``K`` and ``C * (t - K)**3`` are computed in floating point (Linux uses a table-plus-
  Newton ``cubic_root`` and 2**-10 s fixed point). The cubic term is then truncated to
  whole packets, and everything after it (``cnt``, the Reno estimate) is integer as in
  Linux. ``C`` is Linux's ``bic_scale * 10 / 1024`` = 0.4004.
- CUBIC's epoch clock is in jiffies with HZ = 1000, so Linux's rate limits (cwnd target at
  most once per jiffy, recomputed at least every HZ/32, RTT samples ignored for 1 s after a
  cut) keep their meaning. HyStart's clock is in microseconds like Linux's tcp_mstamp.
- HyStart's ack-train threshold is delay_min plus the GSO allowance (hystart_ack_delay, at
  most 1 ms), halved unless the flow is paced (sk_pacing_status, tcp/pacing.py): pacing may
  have spread a round's packets over half an RTT.
"""

from __future__ import annotations

import math
from typing import Final

from ..pacing import SK_PACING_NONE, hystart_ack_delay_us
from ..seq import after
from ..tso import GSO_LEGACY_MAX_SIZE
from .base import (
    CA_LOSS,
    CcState,
    CongestionControl,
    CwndEvent,
    tcp_cong_avoid_ai,
    tcp_in_slow_start,
    tcp_slow_start,
)
from .reno import tcp_reno_undo_cwnd

BICTCP_BETA_SCALE: Final = 1024
BETA: Final = 717  # beta = 717/1024 = 0.7 (RFC 9438 4.6)
BIC_SCALE: Final = 41
CUBIC_C: Final = BIC_SCALE * 10 / 1024  # 0.4004 packets/s**3 (RFC 9438 4.2: C = 0.4)
# Reno-friendly slope: Linux beta_scale = 8*(1+beta)/(3*(1-beta)), = 15, i.e. the Reno
# estimate grows one packet per cwnd*15/8 ACKs, alpha = 3(1-beta)/(1+beta) ~ 0.53 (RFC 9438 4.3).
BETA_SCALE: Final = 8 * (BICTCP_BETA_SCALE + BETA) // 3 // (BICTCP_BETA_SCALE - BETA)
HZ: Final = 1000  # jiffies per second for the epoch clock

HYSTART_ACK_TRAIN: Final = 0x1
HYSTART_DELAY: Final = 0x2
HYSTART_MIN_SAMPLES: Final = 8  # RTT samples per round before the delay test
HYSTART_DELAY_MIN_US: Final = 4000
HYSTART_DELAY_MAX_US: Final = 16000
_NO_RTT: Final = 0xFFFFFFFF  # curr_rtt before the first sample of a round (Linux ~0U)
_LONG_AGO_US: Final = -(1 << 62)  # a HyStart timestamp that can never look recent


def _jiffies(now: float) -> int:
    return math.floor(now * HZ)


def _clock_us(now: float) -> int:
    return round(now * 1_000_000)


class Cubic(CongestionControl):
    """Linux "cubic". Keyword arguments are tcp_cubic's module parameters (same names and
    defaults); attributes are ``struct bictcp``'s fields, public so learners and tests can
    watch them (``last_max_cwnd`` is W_max, ``bic_K`` is K in seconds)."""

    name = "cubic"

    def __init__(
        self,
        *,
        fast_convergence: bool = True,
        tcp_friendliness: bool = True,
        hystart: bool = True,
        hystart_detect: int = HYSTART_ACK_TRAIN | HYSTART_DELAY,
        hystart_low_window: int = 16,
        hystart_ack_delta_us: int = 2000,
    ) -> None:
        self.fast_convergence = fast_convergence
        self.tcp_friendliness = tcp_friendliness
        self.hystart = hystart
        self.hystart_detect = hystart_detect
        self.hystart_low_window = hystart_low_window
        self.hystart_ack_delta_us = hystart_ack_delta_us
        self._reset()
        self._hystart_reset(_LONG_AGO_US, 0)

    def _reset(self) -> None:
        """bictcp_reset: forget the epoch, W_max and the delay history."""
        self.cnt = 0  # grow cwnd by one packet per `cnt` packets ACKed
        self.last_max_cwnd = 0  # W_max
        self.last_cwnd = 0
        self.last_time = 0  # jiffies when cnt was last computed
        self.bic_origin_point = 0  # the plateau of W(t)
        self.bic_K = 0.0  # seconds from epoch start to the plateau
        self.delay_min = 0  # minimum RTT seen, microseconds (0: none)
        self.epoch_start: int | None = None  # jiffies; None = no congestion-avoidance epoch
        self.ack_cnt = 0  # packets ACKed in this epoch (for the Reno estimate)
        self.tcp_cwnd = 0  # the Reno estimate W_est (RFC 9438 4.3)
        self.found = False  # HyStart found the exit point

    def _hystart_reset(self, now_us: int, snd_nxt: int) -> None:
        """bictcp_hystart_reset: start a HyStart round that ends when snd_nxt is ACKed."""
        self.round_start = now_us
        self.last_ack = now_us
        self.end_seq = snd_nxt
        self.curr_rtt = _NO_RTT  # minimum RTT of this round, microseconds
        self.sample_cnt = 0

    # --- hooks --------------------------------------------------------------------------

    def init(self, s: CcState, now: float) -> None:
        """cubictcp_init."""
        self._reset()
        if self.hystart:
            self._hystart_reset(_clock_us(now), s.snd_nxt)

    def ssthresh(self, s: CcState) -> int:
        """cubictcp_recalc_ssthresh: end the epoch, remember W_max, multiply by beta."""
        cwnd = s.snd_cwnd
        self.epoch_start = None
        if cwnd < self.last_max_cwnd and self.fast_convergence:
            # Fast convergence (RFC 9438 4.7): a flow whose W_max keeps shrinking releases
            # bandwidth to newcomers by aiming below its last maximum.
            self.last_max_cwnd = cwnd * (BICTCP_BETA_SCALE + BETA) // (2 * BICTCP_BETA_SCALE)
        else:
            self.last_max_cwnd = cwnd
        return max(cwnd * BETA // BICTCP_BETA_SCALE, 2)

    def cong_avoid(self, s: CcState, now: float, ack: int, acked: int) -> None:
        """cubictcp_cong_avoid: slow start, then one packet per ``cnt`` ACKed."""
        if not s.is_cwnd_limited:
            return
        if tcp_in_slow_start(s):
            acked = tcp_slow_start(s, acked)
            if not acked:
                return
        self._update(s.snd_cwnd, acked, _jiffies(now))
        tcp_cong_avoid_ai(s, self.cnt, acked)

    def pkts_acked(self, s: CcState, now: float, acked: int, rtt_us: int) -> None:
        """cubictcp_acked: track the minimum delay and run HyStart in slow start."""
        if rtt_us < 0:
            return
        if self.epoch_start is not None and _jiffies(now) - self.epoch_start < HZ:
            return  # samples right after a cwnd cut are skewed by the recovery
        delay = rtt_us or 1
        if self.delay_min == 0 or self.delay_min > delay:
            self.delay_min = delay
        if not self.found and self.hystart and tcp_in_slow_start(s):
            self._hystart_update(s, _clock_us(now), delay)

    def set_state(self, s: CcState, new_state: int) -> None:
        """cubictcp_state: a retransmission timeout forgets everything. The hook gets no
        clock, so the new HyStart round starts with timestamps that never look recent; in
        Linux they are the RTO's time, which no ACK train follows within 2 ms either."""
        if new_state == CA_LOSS:
            self._reset()
            self._hystart_reset(_LONG_AGO_US, s.snd_nxt)

    def undo_cwnd(self, s: CcState) -> int:
        return tcp_reno_undo_cwnd(s)

    def cwnd_event(self, s: CcState, now: float, event: CwndEvent) -> None:
        """cubictcp_cwnd_event: after an application-limited idle period, shift the epoch
        by the idle time so cwnd resumes on the curve where it left off instead of jumping
        to where W(t) has run meanwhile (RFC 9438 5.8)."""
        if event != CwndEvent.TX_START or self.epoch_start is None:
            return
        j = _jiffies(now)
        idle = j - _jiffies(s.lsndtime)
        if idle > 0:
            self.epoch_start = min(self.epoch_start + idle, j)

    # --- the cubic function -------------------------------------------------------------

    def _update(self, cwnd: int, acked: int, j: int) -> None:
        """bictcp_update: set ``cnt`` so that cwnd reaches W(t + RTT) in one RTT."""
        self.ack_cnt += acked
        if self.last_cwnd == cwnd and j - self.last_time <= HZ // 32:
            return
        # cnt is recomputed at most once per jiffy; a cwnd cut (epoch_start None) forces it.
        if self.epoch_start is None or j != self.last_time:
            self._cubic_cnt(cwnd, acked, j)
        if self.tcp_friendliness:
            self._reno_friendly(cwnd)
        # At most +1 packet per 2 ACKed: cwnd grows at most 1.5x per RTT.
        self.cnt = max(self.cnt, 2)

    def _cubic_cnt(self, cwnd: int, acked: int, j: int) -> None:
        self.last_cwnd = cwnd
        self.last_time = j
        if self.epoch_start is None:  # a new epoch begins (RFC 9438 4.2)
            self.epoch_start = j
            self.ack_cnt = acked
            self.tcp_cwnd = cwnd
            if self.last_max_cwnd <= cwnd:
                self.bic_K = 0.0
                self.bic_origin_point = cwnd
            else:
                self.bic_K = ((self.last_max_cwnd - cwnd) / CUBIC_C) ** (1 / 3)
                self.bic_origin_point = self.last_max_cwnd
        # Aim one RTT ahead: t = elapsed + min RTT (RFC 9438 4.2, W_cubic(t + RTT)).
        t = (j - self.epoch_start) / HZ + self.delay_min / 1_000_000
        delta = int(CUBIC_C * abs(t - self.bic_K) ** 3)
        target = self.bic_origin_point - delta if t < self.bic_K \
            else self.bic_origin_point + delta
        self.cnt = cwnd // (target - cwnd) if target > cwnd else 100 * cwnd
        if self.last_max_cwnd == 0 and self.cnt > 20:
            self.cnt = 20  # no W_max yet (no loss so far): grow at least 5% per RTT

    def _reno_friendly(self, cwnd: int) -> None:
        """RFC 9438 4.3: W_est grows like Reno with beta 0.7; if it is ahead of cwnd, grow
        at least as fast as it does."""
        per_packet = (cwnd * BETA_SCALE) >> 3  # ACKs per +1 of W_est
        if self.ack_cnt > per_packet:
            # Linux: while (ack_cnt > per_packet) { ack_cnt -= per_packet; tcp_cwnd++; }
            n = (self.ack_cnt - 1) // per_packet
            self.ack_cnt -= n * per_packet
            self.tcp_cwnd += n
        if self.tcp_cwnd > cwnd:
            self.cnt = min(self.cnt, cwnd // (self.tcp_cwnd - cwnd))

    # --- HyStart ------------------------------------------------------------------------

    def _hystart_update(self, s: CcState, now_us: int, delay: int) -> None:
        """hystart_update: per round (one flight, tracked with snd_una/snd_nxt), exit slow
        start by setting ssthresh = cwnd when either detector fires."""
        if after(s.snd_una, self.end_seq):
            self._hystart_reset(now_us, s.snd_nxt)
        if s.snd_cwnd < self.hystart_low_window:
            return
        if self.hystart_detect & HYSTART_ACK_TRAIN and \
                now_us - self.last_ack <= self.hystart_ack_delta_us:
            # Closely spaced ACKs form a train; once the train of one round lasts longer
            # than delay_min / 2, the flight fills the path (cwnd is near the BDP).
            self.last_ack = now_us
            threshold = self.delay_min + hystart_ack_delay_us(s.pacing_rate,
                                                              GSO_LEGACY_MAX_SIZE)
            if s.pacing_status == SK_PACING_NONE:
                threshold >>= 1
            if now_us - self.round_start > threshold:
                self.found = True
                s.snd_ssthresh = s.snd_cwnd
        if self.hystart_detect & HYSTART_DELAY:
            # The minimum RTT of this round's first samples against the connection's
            # minimum: a rise by more than delay_min/8 (clamped to 4..16 ms) means a queue
            # is building.
            self.curr_rtt = min(self.curr_rtt, delay)
            if self.sample_cnt < HYSTART_MIN_SAMPLES:
                self.sample_cnt += 1
            else:
                thresh = min(max(self.delay_min >> 3, HYSTART_DELAY_MIN_US),
                             HYSTART_DELAY_MAX_US)
                if self.curr_rtt > self.delay_min + thresh:
                    self.found = True
                    s.snd_ssthresh = s.snd_cwnd
