"""Nothing holds a connection after it is gone, and tables give back what a burst grew
(issue 13, defect 6): N connections open at once and close on virtual time; then no
Connection object of theirs is left but the few stale timer entries the engine's heap may
keep (TIMER_HEAP_SLACK), and the connection table, the SYN queue and the TIME_WAIT table
are empty with their storage shrunk."""

from __future__ import annotations

import gc
import sys

from ustcp.tcp.connection import Connection
from ustcp.tcp.engine import TIMER_HEAP_SLACK
from ustcp.tcp.states import State
from ustcp.tcp.tables import SHRINK_MIN, SHRINK_RATIO, Shrinker

from .harness import A_IP, B_IP, Net

N = 2 * SHRINK_MIN


def live_connections() -> int:
    gc.collect()
    return sum(type(obj) is Connection for obj in gc.get_objects())


def test_burst_of_connections_leaves_nothing_behind(net: Net) -> None:
    before = live_connections()
    listener = net.b.listen(net.now, B_IP, 80, 4096)
    clients = [net.a.connect(net.now, A_IP, B_IP, 80) for _ in range(N)]
    net.run(net.now + 5.0, stop=lambda: listener.accept_queue_len == N)
    servers = [listener.accept() for _ in range(N)]
    peak = {"connections": sys.getsizeof(net.b.connections),
            "syn_queue": sys.getsizeof({key: None for key in net.b.connections})}
    # The server closes first: its side goes through TIME_WAIT, the client's through
    # LAST_ACK, and both engines' connection tables empty.
    for conn in servers:
        assert conn is not None
        conn.close(net.now)
    net.run(net.now + 5.0, stop=lambda: all(c.state == State.CLOSE_WAIT
                                                for c in net.a.connections.values()))
    for conn in clients:
        conn.close(net.now)
    net.run(net.now + 5.0, stop=lambda: not net.a.connections and not net.b.connections)
    assert not net.a.connections and not net.b.connections
    assert len(net.b.time_wait) == N
    del clients, servers, conn
    # Their RTO and delayed-ACK timers are not due yet: before, the heap entries kept
    # every closed connection alive until they fired.
    assert live_connections() - before <= 2 * TIMER_HEAP_SLACK
    # Each table rebuilt when it fell under an eighth of its peak, and never grown since.
    for table, grown in ((net.a.connections, peak["connections"]),
                         (net.b.connections, peak["connections"]),
                         (listener.syn_queue, peak["syn_queue"])):
        assert sys.getsizeof(table) * SHRINK_RATIO // 2 <= grown
    net.run(net.now + 61.0)  # TIME_WAIT (60 s) ends for all at once
    assert len(net.b.time_wait) == 0
    assert sys.getsizeof(net.b.time_wait.entries) * SHRINK_RATIO // 2 <= peak["connections"]
    assert live_connections() == before


def test_shrinker_rebuilds_below_an_eighth_of_the_peak() -> None:
    table = {i: i for i in range(SHRINK_MIN)}
    shrinker = Shrinker()
    grown = sys.getsizeof(table)
    for i in range(SHRINK_MIN - SHRINK_MIN // SHRINK_RATIO):
        del table[i]
        table = shrinker.after_delete(table)
        assert table is not None
    assert len(table) == SHRINK_MIN // SHRINK_RATIO
    assert sys.getsizeof(table) == grown  # not yet: an eighth is still left
    del table[SHRINK_MIN - 1]
    rebuilt = shrinker.after_delete(table)
    assert rebuilt == table and rebuilt is not table
    assert sys.getsizeof(rebuilt) < grown // 4
    small = {i: i for i in range(SHRINK_MIN - 1)}  # never reached SHRINK_MIN: left alone
    small_shrinker = Shrinker()
    for i in range(SHRINK_MIN - 2):
        del small[i]
        assert small_shrinker.after_delete(small) is small
