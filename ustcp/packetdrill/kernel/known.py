"""Scripts of the shared set whose result on this kernel depends on its version, with why.

Keyed by the script's path ending; shown next to the script's row and explained in
docs/packetdrill.md ("The kernel target's failures").
"""

from __future__ import annotations

KNOWN: dict[str, str] = {
    # Measured on 6.18: with cwnd full, shutdown()'s FIN waits in the write queue and leaves
    # with the tail loss probe about 2*srtt later; the script expects the FIN at once, as
    # tcp_cwnd_test's old "don't be strict about cwnd for the final FIN" rule sent it
    # (ustcp's engine keeps that rule, so it passes where the kernel does not).
    "shutdown/shutdown-rdwr-write-queue-close.pkt":
        "Linux 6.18 holds a lone FIN behind a full cwnd (no FIN exception in "
        "tcp_cwnd_test); the script expects the older rule",
    # Measured on 6.18 (HZ=250): the loss probe after the data ACKed at +.001 leaves about
    # 10 ms later, not the script's 5 ms (2*srtt with srtt ~1 ms): TCP's timers run on
    # jiffies, and the probe's floor of two jiffies (TCP_TIMEOUT_MIN) is 8 ms at HZ=250
    # against 2 ms on the HZ=1000 kernels the scripts were written on.
    "shutdown/shutdown-rdwr-send-queue-ack-close.pkt":
        "this kernel is built with HZ=250: the loss probe's two-jiffy floor is 8 ms, the "
        "script expects HZ=1000 timing",
    # Measured on 6.18 (HZ=250), 5 runs without retries: the RACK reorder timer's
    # retransmission leaves 31-35 ms after the SACK (tcp_rack_mark_lost: rack.rtt +
    # min_rtt/4 - elapsed, rounded up to jiffies, + TCP_TIMEOUT_MIN), the script says 40 ms
    # (+-5); a HZ=1000 kernel, as the engine, sends it after 27 ms.
    "fast_retransmit/fr-4pkt-fack-last-mss.pkt":
        "the RACK reorder timeout is min_rtt/4 + two jiffies after the SACK: 31-35 ms at "
        "HZ=250, 27 ms at HZ=1000; the script expects 40 ms",
    # Measured on 6.18: the FIN whose ACK is above snd_nxt is answered with an ACK (RFC 9293
    # 3.10.7.4, "send an ACK, drop the segment"), rate-limited like a challenge ACK; the
    # script was written when Linux dropped it silently. The script's next ACK follows.
    "ts_recent/invalid_ack.pkt":
        "Linux 6.18 answers an ACK above snd_nxt with an ACK (RFC 9293 3.10.7.4); the "
        "script expects the older silent drop",
}


def known_difference(name: str) -> str:
    for suffix, reason in KNOWN.items():
        if name.endswith(suffix):
            return reason
    return ""
