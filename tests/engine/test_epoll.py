"""epoll_create / epoll_ctl / epoll_wait on the engine target (ustcp.packetdrill.epoll):
readiness from the socket layer, level-triggered, edge-triggered as Linux's ep_poll_callback
makes it, and one-shot. Both scripts pass on this machine's kernel too (``ustcp packetdrill
--target both``), where they are the real system calls."""

from __future__ import annotations

from .util import LISTEN, run_script

# A listener's queued connection, then a connection's data: level-triggered items report
# while data is there; EPOLLET reports each arrival once (a partial read re-arms nothing);
# EPOLLONESHOT disarms the item until EPOLL_CTL_MOD; a FIN wakes a blocked epoll_wait.
EPOLL_IN = LISTEN + """\
+0 epoll_create1(0) = 4
// A listener: a queued connection is EPOLLIN
+0 epoll_ctl(4, EPOLL_CTL_ADD, 3, {events=EPOLLIN, fd=3}) = 0
+0 epoll_wait(4, {events=0, ptr=0}, 1, 0) = 0
+0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>
+.1 < . 1:1(0) ack 1 win 257
+0 epoll_wait(4, {events=EPOLLIN, fd=3}, 1, 0) = 1
+0 accept(3, ..., ...) = 5
+0 epoll_ctl(4, EPOLL_CTL_DEL, 3, ...) = 0
+0 fcntl(5, F_SETFL, O_RDWR|O_NONBLOCK) = 0
// Level-triggered: reported while it holds
+0 epoll_ctl(4, EPOLL_CTL_ADD, 5, {events=EPOLLIN, fd=5}) = 0
+0 epoll_ctl(4, EPOLL_CTL_ADD, 5, {events=EPOLLIN, fd=5}) = -1 EEXIST (File exists)
+0 epoll_wait(4, {events=0, ptr=0}, 1, 0) = 0
+0 < P. 1:1001(1000) ack 1 win 257
+0 epoll_wait(4, {events=EPOLLIN, fd=5}, 1, 0) = 1
+0 epoll_wait(4, {events=EPOLLIN, fd=5}, 1, 0) = 1
// Edge-triggered: once per arrival; reading part of it re-arms nothing
+0 epoll_ctl(4, EPOLL_CTL_MOD, 5, {events=EPOLLIN|EPOLLET, fd=5}) = 0
+0 epoll_wait(4, {events=EPOLLIN, fd=5}, 1, 0) = 1
+0 epoll_wait(4, {events=0, ptr=0}, 1, 0) = 0
+0 read(5, ..., 500) = 500
+0 epoll_wait(4, {events=0, ptr=0}, 1, 0) = 0
+0 < P. 1001:2001(1000) ack 1 win 257
+0 epoll_wait(4, {events=EPOLLIN, fd=5}, 1, 0) = 1
+0 epoll_wait(4, {events=0, ptr=0}, 1, 0) = 0
// One-shot: reported once, then disarmed until EPOLL_CTL_MOD
+0 epoll_ctl(4, EPOLL_CTL_MOD, 5, {events=EPOLLIN|EPOLLONESHOT, fd=5}) = 0
+0 epoll_wait(4, {events=EPOLLIN, fd=5}, 1, 0) = 1
+0 epoll_wait(4, {events=0, ptr=0}, 1, 0) = 0
+0 < P. 2001:3001(1000) ack 1 win 257
+0 epoll_wait(4, {events=0, ptr=0}, 1, 0) = 0
+0 epoll_ctl(4, EPOLL_CTL_MOD, 5, {events=EPOLLIN|EPOLLONESHOT, fd=5}) = 0
+0 epoll_wait(4, {events=EPOLLIN, fd=5}, 1, 0) = 1
// A FIN is EPOLLIN|EPOLLRDHUP, and wakes a blocked epoll_wait
+0 read(5, ..., 5000) = 2500
+0 epoll_ctl(4, EPOLL_CTL_MOD, 5, {events=EPOLLIN|EPOLLRDHUP|EPOLLET, fd=5}) = 0
+0 epoll_wait(4, {events=0, ptr=0}, 1, 0) = 0
+0...0.2 epoll_wait(4, {events=EPOLLIN|EPOLLRDHUP, fd=5}, 1, 1000) = 1
+.2 < F. 3001:3001(0) ack 1 win 257
+0 close(4) = 0
"""

# EPOLLOUT with EPOLLET: a writer held back by TCP_NOTSENT_LOWAT is woken once, when the
# ACK lets its unsent bytes out (tcp_check_space: SOCK_NOSPACE cleared); more room while no
# writer waits wakes nobody.
EPOLL_OUT = LISTEN + """\
// A 2000-byte window without scaling: skbs of one MSS (half the window) on both stacks
+0 < S 0:0(0) win 2000 <mss 1000,sackOK,nop,nop>
+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK>
+.1 < . 1:1(0) ack 1 win 2000
+0 accept(3, ..., ...) = 4
+0 setsockopt(4, SOL_TCP, TCP_NOTSENT_LOWAT, [1000], 4) = 0
+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 epoll_create(1) = 5
+0 epoll_ctl(5, EPOLL_CTL_ADD, 4, {events=EPOLLOUT|EPOLLET, fd=4}) = 0
+0 epoll_wait(5, {events=EPOLLOUT, fd=4}, 1, 0) = 1
+0 epoll_wait(5, {events=0, ptr=0}, 1, 0) = 0
// Two skbs go, the third stays unsent: no fourth (TCP_NOTSENT_LOWAT), the writer waits
+0 write(4, ..., 10000) = 3000
+0 > . 1:1001(1000) ack 1
+0 > P. 1001:2001(1000) ack 1
+0 epoll_wait(5, {events=0, ptr=0}, 1, 0) = 0
// The ACK sends the third: nothing unsent, the writer is woken, once
+.1 < . 1:1(0) ack 2001 win 2000
+0 > P. 2001:3001(1000) ack 1
+0 epoll_wait(5, {events=EPOLLOUT, fd=4}, 1, 0) = 1
+0 epoll_wait(5, {events=0, ptr=0}, 1, 0) = 0
// More room while no writer waits: no wake-up
+.1 < . 1:1(0) ack 3001 win 2000
+0 epoll_wait(5, {events=0, ptr=0}, 1, 0) = 0
"""



def test_epoll_in_level_edge_and_one_shot() -> None:
    result = run_script(EPOLL_IN)
    assert result.status == "pass", result.message


def test_edge_triggered_epollout_wakes_a_waiting_writer_once() -> None:
    result = run_script(EPOLL_OUT)
    assert result.status == "pass", result.message


def test_a_level_triggered_epollout_is_reported_again() -> None:
    level = EPOLL_OUT.replace("EPOLLOUT|EPOLLET", "EPOLLOUT")
    result = run_script(level)
    assert result.status == "fail" and "epoll_wait" in result.message, result.message
