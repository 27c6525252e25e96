"""The modes of the transmit timer (include/net/inet_connection_sock.h ICSK_TIME_*).

One timer, armed by ``Connection.reset_xmit_timer`` (inet_csk_reset_xmit_timer); the mode says
what its expiry does. A plain class of ints with Linux's values rather than an IntEnum: the
mode is set on every ACK that restarts the timer, and an enum member read costs about twice a
class attribute on CPython 3.11.
"""

from __future__ import annotations

from typing import Final


class XmitTimer:
    __slots__ = ()

    RTO: Final = 1  # ICSK_TIME_RETRANS: retransmission timeout (tcp_retransmit_timer)
    PROBE0: Final = 3  # ICSK_TIME_PROBE0: zero-window probe (tcp_probe_timer)
    LOSS_PROBE: Final = 5  # ICSK_TIME_LOSS_PROBE: tail loss probe (tcp_send_loss_probe)
    REO_TIMEOUT: Final = 6  # ICSK_TIME_REO_TIMEOUT: RACK reorder timer (tcp_rack_reo_timeout)
