"""tcp_info's chronographs (ustcp.tcp.chrono: tcp_chrono_start/stop): tcpi_busy_time,
tcpi_rwnd_limited, tcpi_sndbuf_limited, on virtual time. Both scripts pass on this machine's
kernel too (``ustcp packetdrill --target both``; its HZ=250 clock gives the ranges 4 ms
either way); so do Google's ``tcp_info/tcp-info-rwnd-limited.pkt`` and
``tcp-info-sndbuf-limited.pkt`` on the engine."""

from __future__ import annotations

from .util import ACTIVE_OPEN, run_script

# A zero window holds the data 200 ms (window-limited, busy), an ACK 50 ms later ends both.
RWND_LIMITED = ACTIVE_OPEN + """\
// The peer offers no window
+.01 < S. 0:0(0) ack 1 win 0 <mss 1000,nop,nop,sackOK>
+0 > . 1:1(0) ack 1
+0 %{ assert tcpi_busy_time == 0 and tcpi_rwnd_limited == 0, (tcpi_busy_time, tcpi_rwnd_limited) }%
// Data waits for the window: busy, and limited by the peer's window
+0 write(3, ..., 1000) = 1000
+.1 %{ assert 96000 <= tcpi_rwnd_limited <= 104000, tcpi_rwnd_limited }%
+.1 < . 1:1(0) ack 1 win 2000
+0 > P. 1:1001(1000) ack 1
// Sent: still busy until acknowledged, no longer window-limited
+.05 < . 1:1(0) ack 1001 win 2000
+0 %{ assert 196000 <= tcpi_rwnd_limited <= 204000, tcpi_rwnd_limited }%
+0 %{ assert 246000 <= tcpi_busy_time <= 254000, tcpi_busy_time }%
+0 %{ assert tcpi_sndbuf_limited == 0, tcpi_sndbuf_limited }%
// Nothing queued: the clocks stop
+.1 %{ assert 246000 <= tcpi_busy_time <= 254000, tcpi_busy_time }%
"""

# SO_SNDBUF 10000 (20000): once cwnd outgrows the buffer, everything written is sent and the
# writer waits: the buffer limits until an ACK gives the writer room (tcp_check_space).
SNDBUF_LIMITED = ACTIVE_OPEN + """\
+.01 < S. 0:0(0) ack 1 win 10000 <mss 1000,sackOK,nop,nop,nop,wscale 8>
+0 > . 1:1(0) ack 1
+0 fcntl(3, F_SETFL, O_RDWR) = 0
+0 setsockopt(3, SOL_SOCKET, SO_SNDBUF, [10000], 4) = 0
// A blocking write of 150000 through a 20000-byte buffer
+.09...0.14 write(3, ..., 150000) = 150000
+.01 < . 1:1(0) ack 10001 win 10000
+.01 < . 1:1(0) ack 30001 win 10000
// cwnd is now past what the buffer holds: all sent, the writer waits, the buffer limits
+.01 < . 1:1(0) ack 70001 win 10000
+.02 < . 1:1(0) ack 95001 win 10000
// This ACK gave the writer room (SOCK_NOSPACE cleared): the buffer no longer limits
+0 %{ assert 15000 <= tcpi_sndbuf_limited <= 25000, tcpi_sndbuf_limited }%
+0 %{ assert 45000 <= tcpi_busy_time <= 55000, tcpi_busy_time }%
+0 %{ assert tcpi_rwnd_limited == 0, tcpi_rwnd_limited }%
+.02 < . 1:1(0) ack 150001 win 10000
+0 %{ assert 15000 <= tcpi_sndbuf_limited <= 25000, tcpi_sndbuf_limited }%
+0 %{ assert 65000 <= tcpi_busy_time <= 75000, tcpi_busy_time }%
"""



def test_a_closed_window_counts_as_rwnd_limited_and_busy() -> None:
    result = run_script(RWND_LIMITED)
    assert result.status == "pass", result.message


def test_a_full_send_buffer_counts_as_sndbuf_limited() -> None:
    result = run_script(SNDBUF_LIMITED)
    assert result.status == "pass", result.message
