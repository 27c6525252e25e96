"""What ``serve --workers`` shares between its workers, and what it keeps apart."""

from __future__ import annotations

import socket

from ustcp import daemon
from ustcp.config import StackConfig
from ustcp.link.memory import memory_link_pair
from ustcp.mib import Counters
from ustcp.stack import Stack
from ustcp.tcp import syncookies
from ustcp.workers import Worker, control_name

CLIENT = socket.inet_aton("10.77.0.1")
STACK = socket.inet_aton("10.77.0.2")


def _worker_stack(index: int, seed: int) -> Stack:
    link, _ = memory_link_pair()
    setup = daemon.Setup(StackConfig(), STACK, None, [])
    return daemon._stack(link, setup, Counters(), None, Worker(index, 2, seed, -1))


def test_a_cookie_made_by_one_worker_validates_in_another() -> None:
    """The kernel may steer a handshake's last ACK to another queue than its SYN."""
    w0, w1, stranger = _worker_stack(0, 7), _worker_stack(1, 7), _worker_stack(1, 8)
    now, tuple4, peer_isn = 100.0, (CLIENT, 40000, STACK, 80), 123456
    cookie, mss = syncookies.cookie_init_sequence(w0.engine.cookie_secrets, now, *tuple4,
                                                  peer_isn, 1460)
    assert syncookies.cookie_check(w1.engine.cookie_secrets, now + 1, *tuple4, peer_isn,
                                   cookie) == mss
    assert syncookies.cookie_check(stranger.engine.cookie_secrets, now + 1, *tuple4,
                                   peer_isn, cookie) is None
    isn = [w.engine.isn.isn(now, STACK, 80, CLIENT, 40000) for w in (w0, w1, stranger)]
    assert isn[0] == isn[1] != isn[2]


def test_workers_draw_ephemeral_ports_apart() -> None:
    w0, w1 = _worker_stack(0, 7), _worker_stack(1, 7)
    draws = [[w.engine.rng.randrange(1 << 16) for _ in range(8)] for w in (w0, w1)]
    assert draws[0] != draws[1]


def test_control_names() -> None:
    assert [control_name("ustcp-control", i) for i in range(3)] == [
        "ustcp-control", "ustcp-control-1", "ustcp-control-2"]
