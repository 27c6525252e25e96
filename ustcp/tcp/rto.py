"""The retransmission timeout: RFC 6298 as Linux computes it (tcp_rtt_estimator and
tcp_set_rto in net/ipv4/tcp_input.c).

RFC 6298 2.2-2.3 keeps a smoothed RTT and a mean deviation::

    first sample R:   SRTT = R               RTTVAR = R / 2
    later samples R': RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R'|
                      SRTT   = 7/8 SRTT   + 1/8 R'
    RTO = SRTT + max(G, 4 * RTTVAR), at least 1 s (2.4), at most 60 s or more (2.5)

Linux uses the same gains in integer microseconds, with three differences kept here:

- the variance term of the RTO (Linux's ``rttvar_us``, here ``_rttvar``) is 4 * RTTVAR
  floored at TCP_RTO_MIN (200 ms, not the RFC's 1 s), and it may rise within a flight of
  data but only decays (by 1/4 toward that flight's largest deviation) once per flight, when
  snd_una passes the snd_nxt noted at the flight's start;
- an RTT sample *below* SRTT moves the deviation with gain 1/32 instead of 1/4, so a sudden
  drop in RTT does not inflate the RTO (the "Eifel-like" rule in tcp_rtt_estimator);
- the maximum is TCP_RTO_MAX = 120 s.

So RTO = SRTT + max(4 * RTTVAR, 200 ms) on the first sample (3R for R >= 100 ms).

Karn's algorithm (RFC 6298 3) is the caller's job: never feed a sample measured on a
retransmitted segment, unless it comes from the timestamp echo (RFC 7323 4). Backoff after
a timeout (RFC 6298 5.5) is the caller's count too; ``backed_off`` applies it.

Units exposed, matching tcp_info: ``srtt_us`` is tcpi_rtt, ``rttvar_us`` is tcpi_rttvar
(the RFC's RTTVAR, Linux's ``mdev_us >> 2``), ``rto`` is tcpi_rto in seconds.
"""

from __future__ import annotations

from typing import Final

from .seq import after

TCP_RTO_MIN_US: Final = 200_000
TCP_RTO_MAX_US: Final = 120_000_000
TCP_TIMEOUT_INIT_US: Final = 1_000_000  # RFC 6298 2.1: the RTO before any sample
TCP_RTO_MIN: Final = TCP_RTO_MIN_US / 1_000_000  # the same in seconds
TCP_RTO_MAX: Final = TCP_RTO_MAX_US / 1_000_000
TCP_TIMEOUT_INIT: Final = TCP_TIMEOUT_INIT_US / 1_000_000


class RtoEstimator:
    """One connection's RTT estimator and retransmission timeout (without backoff)."""

    def __init__(self) -> None:
        self._srtt8 = 0  # Linux srtt_us: 8 * SRTT, microseconds; 0 = no sample yet
        self._mdev = 0  # Linux mdev_us: 4 * RTTVAR
        self._mdev_max = 0  # Linux mdev_max_us: largest _mdev in the current flight
        self._rttvar = 0  # Linux rttvar_us: the RTO's variance term, >= TCP_RTO_MIN
        self._rtt_seq = 0  # Linux rtt_seq: the flight ends when snd_una passes this
        # Read on every segment, so kept as plain attributes and set once per sample
        # (as Linux keeps icsk_rto, set by tcp_set_rto):
        self.has_sample = False
        self.srtt_us = 0
        """Smoothed RTT in microseconds (tcpi_rtt); 0 before the first sample."""
        self.min_rtt_us = 0
        """The smallest sample seen so far (tcpi_min_rtt); 0 before the first sample.
        A running minimum over the connection's life, not Linux's 300 s window."""
        self.rto_us = TCP_TIMEOUT_INIT_US
        """__tcp_set_rto + tcp_bound_rto: SRTT + variance term, at most TCP_RTO_MAX; 1 s
        before the first sample. Kept in microseconds (Linux rounds up to jiffies)."""

    def on_sample(self, rtt_us: int, *, snd_una: int | None = None,
                  snd_nxt: int | None = None) -> None:
        """Feed one RTT measurement (tcp_rtt_estimator followed by tcp_set_rto).

        ``snd_una`` / ``snd_nxt`` (after this ACK) mark flights: the variance term decays
        once per flight. Without them every sample counts as ending a flight, which is
        right for the handshake's single sample and decays faster than Linux otherwise.
        A negative sample means "none" and is ignored, as in tcp_ack_update_rtt.
        """
        if rtt_us < 0:
            return
        m = rtt_us
        # tcp_update_rtt_min: a 0 us sample counts as 1 us, so 0 keeps meaning "none".
        self.min_rtt_us = min(self.min_rtt_us or m or 1, m or 1)
        if not self._srtt8:
            # RFC 6298 2.2: SRTT = R, RTTVAR = R/2 (mdev = 4 * R/2).
            srtt8 = m << 3
            self._mdev = m << 1
            self._rttvar = max(self._mdev, TCP_RTO_MIN_US)
            self._mdev_max = self._rttvar
            self._rtt_seq = snd_nxt or 0
        else:
            m -= self._srtt8 >> 3  # the error of this sample against SRTT
            srtt8 = self._srtt8 + m  # SRTT += error/8 (RFC 6298 2.3, alpha = 1/8)
            if m < 0:
                m = -m - (self._mdev >> 2)
                if m > 0:
                    m >>= 3  # RTT fell: move the deviation up only by 1/32
            else:
                m -= self._mdev >> 2
            self._mdev += m  # RTTVAR += (|error| - RTTVAR)/4 (beta = 1/4)
            if self._mdev > self._mdev_max:
                self._mdev_max = self._mdev
                self._rttvar = max(self._rttvar, self._mdev_max)
            if snd_una is None or snd_nxt is None or after(snd_una, self._rtt_seq):
                # A flight has been ACKed: let the variance term decay toward its maximum.
                if self._mdev_max < self._rttvar:
                    self._rttvar -= (self._rttvar - self._mdev_max) >> 2
                self._rtt_seq = snd_nxt or 0
                self._mdev_max = TCP_RTO_MIN_US
        self._srtt8 = srtt8 = max(1, srtt8)
        self.has_sample = True
        self.srtt_us = srtt8 >> 3
        self.rto_us = min(self.srtt_us + self._rttvar, TCP_RTO_MAX_US)

    @property
    def srtt8_us(self) -> int:
        """Linux's srtt_us: eight times the smoothed RTT in µs (0 before a sample)."""
        return self._srtt8

    @property
    def rttvar_us(self) -> int:
        """RFC 6298 RTTVAR in microseconds (tcpi_rttvar)."""
        return self._mdev >> 2

    @property
    def mdev_us(self) -> int:
        """Linux's mdev_us: the smoothed mean deviation scaled by 4 (= 4 * RTTVAR)."""
        return self._mdev

    @property
    def rto(self) -> float:
        """The RTO in seconds, without backoff."""
        return self.rto_us / 1_000_000

    def backed_off(self, backoff: int) -> float:
        """inet_csk_rto_backoff: the RTO doubled ``backoff`` times, capped at TCP_RTO_MAX
        (RFC 6298 5.5), in seconds."""
        return min(self.rto_us << backoff, TCP_RTO_MAX_US) / 1_000_000
