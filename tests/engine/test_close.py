"""Every close path: FIN both ways, half-close, simultaneous close, TIME_WAIT, RST on close."""

from __future__ import annotations

import itertools
import socket

from ustcp.config import StackConfig
from ustcp.tcp.states import State
from ustcp.wire.tcp import ACK, FIN, RST

from .harness import A_IP, B_IP, Net
from .util import drain, open_pair


def flags_from(net: Net, ip: bytes, since: int = 0) -> list[int]:
    return [s.seg.flags & (FIN | ACK | RST) for s in net.log[since:] if s.src == ip]


def test_active_close_goes_through_time_wait_for_60s(net: Net) -> None:
    _, client, server = open_pair(net)
    client.close(net.now)
    assert client.state == State.FIN_WAIT1
    net.run(net.now + 0.1)
    assert client.state == State.FIN_WAIT2
    assert server.state == State.CLOSE_WAIT
    assert server.recv(net.now, 100) == b""
    server.close(net.now)
    assert server.state == State.LAST_ACK
    t_close = net.now
    net.run(net.now + 0.1)
    assert server.state == State.CLOSE
    assert client.state == State.CLOSE  # handed to the TIME_WAIT table
    assert client.key in net.a.time_wait.entries
    entered = next(s.t for s in net.log if s.src == B_IP and s.seg.flags & FIN) + net.delay
    net.run(entered + 59.99)
    assert client.key in net.a.time_wait.entries
    net.run(entered + 60.01)
    assert client.key not in net.a.time_wait.entries
    assert net.a.counters["TcpExtTW"] == 1
    assert t_close < entered


def test_closed_connection_leaves_no_deadline(net: Net) -> None:
    """A connection whose timers all stopped holds no place in the engine's timer heap: a
    passive close ends with the engine asking for no wake-up at all (its last RTO entry
    went stale when the FIN's ACK stopped the timer), so the driver's timer task is not
    woken once per closed connection."""
    _, client, server = open_pair(net)
    client.close(net.now)
    net.run(net.now + 0.1)
    server.close(net.now)
    net.run(net.now + 0.1)
    assert server.state == State.CLOSE
    assert net.b.next_deadline() is None
    assert client.key in net.a.time_wait.entries  # the other side's one deadline stands
    assert net.a.next_deadline() == net.a.time_wait.next_deadline()


def test_time_wait_reacks_retransmitted_fin_and_restarts_timer() -> None:
    drop_last_ack = {"armed": False}

    def lose_ack_of_fin(sent) -> int:  # type: ignore[no-untyped-def]
        if drop_last_ack["armed"] and sent.src == A_IP and sent.seg.flags == ACK:
            drop_last_ack["armed"] = False
            return 0
        return 1

    net = Net(filter=lose_ack_of_fin)
    _, client, server = open_pair(net)
    client.close(net.now)
    net.run(net.now + 0.1)
    drop_last_ack["armed"] = True
    server.close(net.now)
    net.run(net.now + 0.1)
    assert server.state == State.LAST_ACK  # its FIN's ACK was lost
    entry = net.a.time_wait.entries[client.key]
    first_expiry = entry.expires
    net.run(net.now + 5.0)  # the server retransmits its FIN after its RTO
    assert server.state == State.CLOSE
    assert entry.expires > first_expiry  # restarted on the retransmitted FIN
    acks = [s for s in net.sent_by(A_IP) if s.seg.flags == ACK]
    assert len(acks) >= 2


def test_passive_close_merges_ack_and_fin_when_application_closes_at_once(net: Net) -> None:
    _, client, server = open_pair(net)
    client.close(net.now)
    mark = len(net.log)

    def server_closes_on_eof() -> bool:
        if server.state == State.CLOSE_WAIT:
            server.close(net.now)
            return True
        return False

    net.run(net.now + 0.001 + net.delay, stop=server_closes_on_eof)
    net.run(net.now + 1.0)
    server_segments = [s.seg.flags for s in net.log[mark:] if s.src == B_IP]
    assert FIN | ACK in server_segments
    assert client.state == State.CLOSE and server.state == State.CLOSE


def test_half_close_keeps_receiving(net: Net) -> None:
    _, client, server = open_pair(net)
    client.shutdown(net.now, socket.SHUT_WR)
    net.run(net.now + 0.1)
    assert client.state == State.FIN_WAIT2
    assert server.recv(net.now, 10) == b""
    assert server.send(net.now, b"still talking") == 13
    net.run(net.now + 0.1)
    assert drain(client, net.now) == b"still talking"
    server.close(net.now)
    net.run(net.now + 0.1)
    assert client.recv(net.now, 10) == b""
    assert client.key in net.a.time_wait.entries


def test_fin_wait2_is_unbounded_for_half_closed_and_bounded_for_orphans(net: Net) -> None:
    _, client, server = open_pair(net)
    client.shutdown(net.now, socket.SHUT_WR)
    net.run(net.now + 600.0)
    assert client.state == State.FIN_WAIT2  # the application may still read: no timeout
    client.close(net.now)  # now an orphan: tcp_fin_timeout (60 s) applies
    t = net.now
    net.run(t + 59.9)
    assert client.state == State.FIN_WAIT2
    net.run(t + 60.1)
    assert client.state == State.CLOSE
    assert server.state == State.CLOSE_WAIT  # CLOSE_WAIT has no timeout: the app's job


def test_simultaneous_close_goes_through_closing(net: Net) -> None:
    _, client, server = open_pair(net)
    client.close(net.now)
    server.close(net.now)
    seen: set[State] = set()
    net.run(net.now + 0.004, stop=lambda: bool(seen.add(client.state)))
    net.run(net.now + 0.02, stop=lambda: bool(seen.add(client.state)) or False)
    net.run(net.now + 1.0)
    assert State.CLOSING in seen
    assert client.key in net.a.time_wait.entries
    assert server.key in net.b.time_wait.entries


def test_close_with_unread_data_sends_rst(net: Net) -> None:
    _, client, server = open_pair(net)
    client.send(net.now, b"unread")
    net.run(net.now + 0.1)
    mark = len(net.log)
    server.close(net.now)
    net.run(net.now + 0.1)
    assert flags_from(net, B_IP, mark) == [RST | ACK]
    assert server.state == State.CLOSE
    assert client.state == State.CLOSE
    assert isinstance(client.error, ConnectionResetError)
    assert net.b.counters["TcpExtTCPAbortOnClose"] == 1


def test_abort_sends_rst_and_skips_time_wait(net: Net) -> None:
    _, client, server = open_pair(net)
    client.abort(net.now)
    net.run(net.now + 0.1)
    assert client.key not in net.a.time_wait.entries
    assert server.state == State.CLOSE
    assert net.b.counters["TcpEstabResets"] == 1


def test_fin_retransmitted_then_given_up_by_tcp_orphan_retries() -> None:
    cut = {"on": False}
    net = Net(filter=lambda s: 0 if cut["on"] else 1)
    _, client, _server = open_pair(net)
    client.send(net.now, b"x")
    net.run(net.now + 0.5)  # an RTT sample brings the RTO down to 200 ms
    cut["on"] = True
    client.close(net.now)
    net.run(net.now + 400.0)
    fins = [s for s in net.sent_by(A_IP) if s.seg.flags & FIN]
    # The FIN, one tail loss probe, then RTO retransmissions until tcp_orphan_retries
    # (0 means 8) worth of backoff from a 200 ms RTO has passed (tcp_write_timeout).
    assert len(fins) == 10
    assert net.a.counters["TcpExtTCPLossProbes"] == 1
    assert net.a.counters["TcpExtTCPTimeouts"] == 8
    assert client.state == State.CLOSE
    assert net.a.counters["TcpExtTCPAbortOnTimeout"] == 1
    gaps = [b.t - a.t for a, b in itertools.pairwise(fins[1:])]
    for earlier, later in itertools.pairwise(gaps[1:]):
        assert abs(later - 2 * earlier) < 1e-6


def test_peer_fin_arriving_while_our_data_and_fin_wait_in_the_queue(net: Net) -> None:
    # Both sides shut down writing at once while one still has data queued behind its
    # FIN: it goes FIN_WAIT1 -> CLOSING and must still send the data and the FIN.
    _, client, server = open_pair(net)
    data = bytes(range(256)) * 2000
    taken = server.send(net.now, data)
    server.shutdown(net.now, socket.SHUT_WR)
    client.shutdown(net.now, socket.SHUT_WR)
    seen: set[State] = set()
    got = bytearray()
    for _ in range(200):
        net.run(net.now + 0.01)
        seen.add(server.state)
        got += drain(client, net.now)
    assert bytes(got) == data[:taken]
    assert State.CLOSING in seen
    assert client.key in net.a.time_wait.entries and server.key in net.b.time_wait.entries


def test_orphan_over_tcp_max_orphans_sends_fin_then_rst() -> None:
    """tcp_max_orphans: closed connections that still wait for the peer are orphans; one
    more than the limit is not kept: its FIN leaves, then a RST, and it is gone at once
    (tcp_close, tcp_check_oom); TcpExtTCPAbortOnMemory counts it."""
    config = StackConfig(tcp_max_orphans=1)
    net = Net(config_a=config)
    _, first, _ = open_pair(net, port=80)
    _, second, _ = open_pair(net, port=81)
    first.close(net.now)  # the one orphan allowed: FIN_WAIT1, then FIN_WAIT2
    net.run(net.now + 0.1)
    assert first.state == State.FIN_WAIT2 and net.a.orphan_count == 1
    mark = len(net.log)
    second.close(net.now)
    assert second.state == State.CLOSE
    net.run(net.now + 0.1)
    sent = [s.seg for s in net.log[mark:] if s.src == A_IP and s.seg.dst_port == 81]
    # (then RSTs for what the peer still sends to a connection that is gone)
    assert [s.flags & (FIN | RST) for s in sent][:2] == [FIN, RST]
    assert all(s.flags & RST for s in sent[1:])
    assert sent[1].seq == sent[0].seq + 1  # the RST follows the FIN in sequence space
    assert net.a.counters["TcpExtTCPAbortOnMemory"] == 1
    assert net.a.orphan_count == 1
