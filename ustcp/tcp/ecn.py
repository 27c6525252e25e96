"""Explicit Congestion Notification (RFC 3168) as Linux does it (tcp_input.c tcp_ecn_*,
tcp_output.c tcp_ecn_send*), as pure functions over a connection's ``ecn_flags``.

A router that would drop a packet of an ECN-capable flow marks it Congestion Experienced
(CE) instead. The receiver echoes the mark: ECE on every segment it sends until the sender
answers with CWR. The sender reacts as to a loss, once per window (``tcp_enter_cwr``:
ssthresh from the congestion control, cwnd down with PRR, state CWR until what was
outstanding is acknowledged), and sets CWR on its next new data segment. Nothing is
retransmitted: no packet was lost.

Negotiation (RFC 3168 6.1.1): the client's SYN carries ECE and CWR when ``tcp_ecn`` is 1;
a server with ``tcp_ecn`` 1 or 2 answers a SYN that carries both (and is not itself
ECN-marked) with ECE on the SYN-ACK. A SYN-ACK with ECE and without CWR makes the
connection ECN-capable. Retransmitted SYNs go without the bits when ``tcp_ecn_fallback``
is set, in case a middlebox drops them. Then new data leaves as ECT(0); retransmissions,
pure ACKs and window probes as Not-ECT. ``tcp_ecn`` 3 to 5 (AccECN, RFC 9768) are
accepted and, for now, negotiate as 1 (3, 5) or 2 (4) would: AccECN itself is off.
"""

from __future__ import annotations

from typing import Final

from ..config import StackConfig

TCP_ECN_OK: Final = 1
TCP_ECN_QUEUE_CWR: Final = 2  # set CWR on the next new data segment
TCP_ECN_DEMAND_CWR: Final = 4  # CE seen: ECE on everything until the peer's CWR
TCP_ECN_SEEN: Final = 8  # an ECT or CE packet arrived (TCPI_OPT_ECN_SEEN)

ECT0: Final = 0x2  # the IP ECN field (RFC 3168 5)
ECT1: Final = 0x1
CE: Final = 0x3

TCPI_OPT_ECN: Final = 8
TCPI_OPT_ECN_SEEN: Final = 16


def client_wants_ecn(config: StackConfig) -> bool:
    """tcp_ecn_send_syn: an active open asks for ECN with tcp_ecn 1 (and AccECN's 3, 5)."""
    return config.tcp_ecn in (1, 3, 5)


def server_accepts_ecn(config: StackConfig, syn_ece_cwr: bool, syn_ecn_field: int) -> bool:
    """tcp_ecn_create_request: a SYN with ECE and CWR, not itself ECT or CE, with tcp_ecn
    other than 0."""
    return bool(config.tcp_ecn) and syn_ece_cwr and syn_ecn_field == 0
