"""Pacing as Linux does it since 4.20: an earliest departure time (EDT) on every packet.

TCP keeps ``tcp_wstamp_ns``, the earliest time its next packet may leave. Every packet it
transmits is stamped with ``max(tcp_wstamp_ns, now)`` (``__tcp_transmit_skb``: the stamp
is also the packet's send time for RTT samples, RACK and its TSval), and after each data
packet, when the socket is paced at all, the stamp moves on by the packet's length at
``sk_pacing_rate`` (``tcp_update_skb_after_send``): a packet of ``len`` bytes costs
``len / rate`` seconds, less up to half of that when the flow is already late (the time
between the old stamp and now, "OS jitter" credit; after an idle period the first packet
costs half). The first 10 segments of a connection are never paced (``data_segs_out >=
10``, as the original sch_fq did), nor is anything while the rate is still unlimited
(no RTT sample yet).

Who holds a packet until its time depends on ``sk_pacing_status``:

- ``SK_PACING_NONE``: nobody; the stamp never runs ahead of the clock, nothing is paced
  (Linux's default for cubic and reno on a qdisc that is not fq);
- ``SK_PACING_NEEDED``: TCP itself (``tcp_pacing_check`` in ``tcp_write_xmit``): it sends
  nothing while the stamp is in the future, and an hrtimer (``tp->pacing_timer``,
  ``tcp_pace_kick``) resumes sending at that time. SO_MAX_PACING_RATE sets it
  (``sk_setsockopt``), as would a congestion control that asks (BBR);
- ``SK_PACING_FQ``: the fq qdisc (:mod:`ustcp.qdisc`), which set it when it saw the
  socket's first packet (``fq_classify``); TCP hands packets down at once and fq keeps each
  until its stamp. TCP Small Queues (``tcp_small_queue_check``) bounds what one socket has
  in the qdisc to about two packets (or 1 ms at the pacing rate): TCP stops, and the
  qdisc's release of a packet (its destructor, ``tcp_wfree``) lets it send again.
"""

from __future__ import annotations

from typing import Final

from .buffers import SKB_TRUESIZE

SK_PACING_NONE: Final = 0  # include/net/sock.h enum sk_pacing
SK_PACING_NEEDED: Final = 1
SK_PACING_FQ: Final = 2

PACING_UNLIMITED: Final = (1 << 64) - 1  # ~0UL: sk_pacing_rate and sk_max_pacing_rate unset
NSEC_PER_SEC: Final = 1_000_000_000
# tcp_update_skb_after_send: "Original sch_fq does not pace first 10 MSS"
UNPACED_SEGS: Final = 10


def advance(wstamp: float, prior: float, size: int, rate: int, data_segs_out: int) -> float:
    """tcp_update_skb_after_send: the departure time of the packet after one of ``size``
    bytes stamped ``wstamp`` (which was ``prior`` before the clock caught it up), sent at
    ``rate`` bytes per second once ``data_segs_out`` segments (this one counted) left."""
    if rate == PACING_UNLIMITED or not rate or data_segs_out < UNPACED_SEGS:
        return wstamp
    len_ns = size * NSEC_PER_SEC // rate
    credit_ns = round((wstamp - prior) * NSEC_PER_SEC)  # how late this packet left
    len_ns -= min(len_ns // 2, credit_ns)
    return wstamp + len_ns / NSEC_PER_SEC


def small_queue_limit(size: int, rate: int, limit_output_bytes: int,
                      pacing_shift: int) -> int:
    """tcp_small_queue_check's limit on the bytes (truesize) one socket may have in the
    qdisc and the device before it stops: two packets like this one, or 1/1024 s at the
    pacing rate, at most net.ipv4.tcp_limit_output_bytes."""
    return min(max(2 * (size + SKB_TRUESIZE), rate >> pacing_shift), limit_output_bytes)


def hystart_ack_delay_us(rate: int, gso_max_size: int) -> int:
    """tcp_cubic's hystart_ack_delay: the ACK train's allowance for TSO/GRO aggregation,
    the time four GSO packets take at the pacing rate, at most 1 ms."""
    if not rate:
        return 0
    return min(1000, gso_max_size * 4 * 1_000_000 // rate)
