"""TIME_WAIT table rules (RFC 6191, tw_reuse, tw buckets) and PAWS (RFC 7323)."""

from __future__ import annotations

from ustcp.tcp.connection import TCP_PAWS_24DAYS, Connection
from ustcp.tcp.listener import Listener
from ustcp.tcp.states import State
from ustcp.wire.tcp import ACK, RST, SYN, TcpOptions, TcpSegment

from .harness import A_IP, B_IP, Net
from .util import drain, open_pair


def close_client_first(net: Net, listener: Listener | None = None) -> tuple[
        Connection, Connection]:
    if listener is None:
        _, client, server = open_pair(net)
    else:
        client = net.a.connect(net.now, A_IP, B_IP, 80)
        net.run(net.now + 0.1)
        accepted = listener.accept()
        assert accepted is not None
        server = accepted
    client.close(net.now)
    net.run(net.now + 0.1)
    server.close(net.now)
    net.run(net.now + 0.1)
    return client, server


def close_server_first(net: Net) -> tuple[Connection, Connection]:
    """A finished connection whose TIME_WAIT entry is on the server (B) side."""
    _, client, server = open_pair(net)
    server.close(net.now)
    net.run(net.now + 0.1)
    client.close(net.now)
    net.run(net.now + 0.1)
    return client, server


def test_new_syn_with_higher_sequence_reopens_time_wait(net: Net) -> None:
    client, server = close_server_first(net)
    assert server.key in net.b.time_wait.entries
    entry = net.b.time_wait.entries[server.key]
    syn = TcpSegment(client.local_port, 80, (entry.rcv_nxt + 100000) & 0xFFFFFFFF, 0, SYN,
                     64240, TcpOptions(mss=1460, ts_val=(client.rcv.ts_recent + 1000)))
    net.b.on_segment(net.now, A_IP, B_IP, syn)
    out = [s for _, _, s in net.b.take_output()]
    assert [s.flags for s in out] == [SYN | ACK]
    assert out[0].seq == (entry.snd_nxt + 65537) & 0xFFFFFFFF  # tcp_timewait_state_process
    assert server.key not in net.b.time_wait.entries
    assert net.b.counters["TcpExtTWRecycled"] == 1


def test_old_syn_into_time_wait_gets_ack_not_synack(net: Net) -> None:
    client, server = close_server_first(net)
    entry = net.b.time_wait.entries[server.key]
    old_seq = (entry.rcv_nxt - 5000) & 0xFFFFFFFF
    syn = TcpSegment(client.local_port, 80, old_seq, 0, SYN, 64240,
                     TcpOptions(mss=1460, ts_val=(entry.ts_recent - 50) & 0xFFFFFFFF))
    net.b.on_segment(net.now, A_IP, B_IP, syn)
    out = [s for _, _, s in net.b.take_output()]
    assert [s.flags for s in out] == [ACK]
    assert out[0].ack == entry.rcv_nxt
    assert server.key in net.b.time_wait.entries
    assert net.b.counters["TcpExtPAWSEstab"] == 1


def test_rst_kills_time_wait_unless_rfc1337(net: Net) -> None:
    client, _ = close_client_first(net)
    entry = net.a.time_wait.entries[client.key]
    rst = TcpSegment(80, client.local_port, entry.rcv_nxt, 0, RST, 0)
    net.config_a.tcp_rfc1337 = 1
    net.a.on_segment(net.now, B_IP, A_IP, rst)
    assert client.key in net.a.time_wait.entries
    net.config_a.tcp_rfc1337 = 0
    net.a.on_segment(net.now, B_IP, A_IP, rst)
    assert client.key not in net.a.time_wait.entries


def test_time_wait_buckets_overflow() -> None:
    net = Net()
    net.config_a.tcp_max_tw_buckets = 1
    listener = net.b.listen(0.0, B_IP, 80, 16)
    for _ in range(3):
        client = net.a.connect(net.now, A_IP, B_IP, 80)
        net.run(net.now + 0.1)
        server = listener.accept()
        assert server is not None
        client.close(net.now)
        net.run(net.now + 0.1)
        server.close(net.now)
        net.run(net.now + 0.1)
    assert len(net.a.time_wait) == 1
    assert net.a.counters["TcpExtTCPTimeWaitOverflow"] == 2


def test_tw_reuse_lets_an_active_open_take_the_port_after_one_second() -> None:
    net = Net()
    net.config_a.tcp_tw_reuse = 1
    client, _ = close_client_first(net)
    port = client.local_port
    try:
        net.a.connect(net.now, A_IP, B_IP, 80, local_port=port)
        raise AssertionError("reuse within one second must fail")
    except OSError:
        pass
    entry = net.a.time_wait.entries[client.key]
    net.run(net.now + 1.5)
    again = net.a.connect(net.now, A_IP, B_IP, 80, local_port=port)
    # The new incarnation starts after everything the old one sent (tcp_twsk_unique).
    assert again.snd.iss == (entry.snd_nxt + 65537) & 0xFFFFFFFF
    net.run(net.now + 0.5)
    assert again.state == State.ESTABLISHED
    net.config_a.tcp_tw_reuse = 0
    client2, _ = close_client_first(net, net.b.listeners[(B_IP, 80)])
    net.run(net.now + 5.0)
    try:
        net.a.connect(net.now, A_IP, B_IP, 80, local_port=client2.local_port)
        raise AssertionError("tcp_tw_reuse=0 must not reuse")
    except OSError:
        pass


def test_paws_drops_old_duplicate_and_accepts_after_24_days_idle(net: Net) -> None:
    _, client, server = open_pair(net)
    client.send(net.now, b"fresh")
    net.run(net.now + 0.1)
    assert drain(server, net.now) == b"fresh"
    old_ts = (server.rcv.ts_recent - 10) & 0xFFFFFFFF
    dup = TcpSegment(client.local_port, 80, server.rcv.rcv_nxt, server.snd.snd_nxt, ACK, 1000,
                     TcpOptions(ts_val=old_ts, ts_ecr=0), b"stale")
    net.b.on_segment(net.now, A_IP, B_IP, dup)
    assert net.b.counters["TcpExtPAWSEstab"] == 1
    assert server.rcv.rcv_buf.pull(100) == b""
    later = net.now + TCP_PAWS_24DAYS + 1
    net.b.on_segment(later, A_IP, B_IP, dup)
    assert net.b.counters["TcpExtPAWSEstab"] == 1
    assert server.recv(later, 100) == b"stale"


def test_paws_tolerates_one_tick_and_reordered_duplicate_acks(net: Net) -> None:
    _, client, server = open_pair(net)
    client.send(net.now, b"fresh")
    net.run(net.now + 0.1)
    drain(server, net.now)
    one_tick_old = (server.rcv.ts_recent - 1) & 0xFFFFFFFF
    seg = TcpSegment(client.local_port, 80, server.rcv.rcv_nxt, server.snd.snd_nxt, ACK, 0,
                     TcpOptions(ts_val=one_tick_old), b"lag")
    seg.window = server.snd.snd_wnd >> server.snd.snd_wscale
    net.b.on_segment(net.now, A_IP, B_IP, seg)
    assert server.recv(net.now, 10) == b"lag"  # TCP_PAWS_WINDOW: one tick is fine
    old = (server.rcv.ts_recent - 50) & 0xFFFFFFFF
    dupack = TcpSegment(client.local_port, 80, server.rcv.rcv_nxt, server.snd.snd_una, ACK,
                        server.snd.snd_wnd >> server.snd.snd_wscale, TcpOptions(ts_val=old))
    net.b.on_segment(net.now, A_IP, B_IP, dupack)
    assert net.b.counters["TcpExtPAWSEstab"] == 0  # tcp_disordered_ack: not a duplicate


def _syn_from(client: Connection, port: int, ts_val: int | None) -> TcpSegment:
    """A SYN from the client's host on another port: another client behind the same NAT."""
    opts = TcpOptions(mss=1460, ts_val=ts_val & 0xFFFFFFFF if ts_val is not None else None)
    return TcpSegment(port, 80, 12345, 0, SYN, 64240, opts)


def test_tw_recycle_off_ignores_other_clocks_behind_one_address(net: Net) -> None:
    client, server = close_server_first(net)
    net.b.on_segment(net.now, A_IP, B_IP, _syn_from(client, 50001, client.rcv.ts_recent - 100_000))
    assert [s.flags for _, _, s in net.b.take_output()] == [SYN | ACK]
    assert net.b.time_wait.entries[server.key].expires - net.now > 59
    assert not net.b.time_wait.peer_stamps


def test_tw_recycle_per_host_paws_drops_a_syn_with_an_older_clock(net: Net) -> None:
    net.config_b.tcp_tw_recycle = 1
    client, server = close_server_first(net)
    entry = net.b.time_wait.entries[server.key]
    # tcp_time_wait with recycling: 3.5 RTO instead of 60 s, and the peer's clock remembered
    assert entry.expires - net.now < 3.5 * 1.0 + 0.01
    seen = entry.ts_recent
    assert net.b.time_wait.peer_stamps[A_IP][0] == seen
    # A second client behind the same address, its clock 100 s behind: dropped, no answer.
    net.b.on_segment(net.now, A_IP, B_IP, _syn_from(client, 50001, seen - 100_000))
    assert net.b.take_output() == []
    assert net.b.counters["TcpExtPAWSPassive"] == 1
    # Without timestamps it is no better (tcp_peer_is_proven with !timestamps).
    net.b.on_segment(net.now, A_IP, B_IP, _syn_from(client, 50002, None))
    assert net.b.take_output() == []
    assert net.b.counters["TcpExtPAWSPassive"] == 2
    # A clock ahead of the remembered one passes (one tick of lag is tolerated).
    net.b.on_segment(net.now, A_IP, B_IP, _syn_from(client, 50003, seen - 1))
    assert [s.flags for _, _, s in net.b.take_output()] == [SYN | ACK]
    # After TCP_PAWS_MSL (60 s) the remembered clock no longer counts.
    net.run(net.now + 61)
    net.b.on_segment(net.now, A_IP, B_IP, _syn_from(client, 50004, seen - 100_000))
    assert [s.flags for _, _, s in net.b.take_output()] == [SYN | ACK]
    assert net.b.counters["TcpExtPAWSPassive"] == 2


def test_tw_recycle_remembers_a_bounded_number_of_hosts(net: Net) -> None:
    from ustcp.tcp import timewait

    table = net.b.time_wait
    for i in range(timewait.PEER_STAMPS_MAX + 10):
        table._remember_stamp(net.now, i.to_bytes(4, "big"), 1000)
    assert len(table.peer_stamps) == timewait.PEER_STAMPS_MAX
    assert (0).to_bytes(4, "big") not in table.peer_stamps  # the oldest went first
