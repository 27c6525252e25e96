"""RST generation and RFC 5961 acceptance of RST, SYN and ACK."""

from __future__ import annotations

from ustcp.tcp.states import State
from ustcp.wire.tcp import ACK, RST, SYN, TcpSegment

from .harness import A_IP, B_IP, Net
from .util import open_pair


def inject(net: Net, seg: TcpSegment) -> list[TcpSegment]:
    """Deliver a forged segment from A's address to B; return B's replies."""
    mark = len(net.log)
    net.b.on_segment(net.now, A_IP, B_IP, seg)
    net.flush()
    return [s.seg for s in net.log[mark:] if s.src == B_IP]


def test_ack_to_closed_port_gets_rst_with_its_ack_as_seq(net: Net) -> None:
    replies = inject(net, TcpSegment(4000, 81, 1234, 5678, ACK, 100))
    assert len(replies) == 1
    rst = replies[0]
    assert rst.flags == RST and rst.seq == 5678 and rst.window == 0


def test_no_rst_in_reply_to_rst(net: Net) -> None:
    assert inject(net, TcpSegment(4000, 81, 1234, 0, RST, 0)) == []


def test_rst_exact_sequence_resets(net: Net) -> None:
    _, client, server = open_pair(net)
    seg = TcpSegment(client.local_port, 80, server.rcv.rcv_nxt, 0, RST, 0)
    assert inject(net, seg) == []
    assert server.state == State.CLOSE
    assert isinstance(server.error, ConnectionResetError)


def test_rst_in_window_but_not_exact_gets_challenge_ack(net: Net) -> None:
    _, client, server = open_pair(net)
    seg = TcpSegment(client.local_port, 80, (server.rcv.rcv_nxt + 100) & 0xFFFFFFFF, 0, RST, 0)
    replies = inject(net, seg)
    assert server.state == State.ESTABLISHED
    assert [r.flags for r in replies] == [ACK]
    assert replies[0].ack == server.rcv.rcv_nxt
    assert net.b.counters["TcpExtTCPChallengeACK"] == 1


def test_rst_out_of_window_is_ignored(net: Net) -> None:
    _, client, server = open_pair(net)
    seg = TcpSegment(client.local_port, 80, (server.rcv.rcv_nxt + 10_000_000) & 0xFFFFFFFF, 0,
                     RST, 0)
    assert inject(net, seg) == []
    assert server.state == State.ESTABLISHED


def test_syn_on_established_connection_gets_challenge_ack(net: Net) -> None:
    _, client, server = open_pair(net)
    seg = TcpSegment(client.local_port, 80, 999, 0, SYN, 1000)
    replies = inject(net, seg)
    assert server.state == State.ESTABLISHED
    assert [r.flags for r in replies] == [ACK]
    assert net.b.counters["TcpExtTCPSYNChallenge"] == 1


def test_ack_too_old_gets_challenge_ack_and_is_dropped(net: Net) -> None:
    _, client, server = open_pair(net)
    old = (server.snd.snd_una - server.snd.max_window - 10) & 0xFFFFFFFF
    seg = TcpSegment(client.local_port, 80, server.rcv.rcv_nxt, old, ACK, 1000, payload=b"zz")
    replies = inject(net, seg)
    assert [r.flags for r in replies] == [ACK]
    assert server.rcv.rcv_nxt == seg.seq  # the data was not accepted


def test_ack_of_unsent_data_is_dropped(net: Net) -> None:
    _, client, server = open_pair(net)
    ahead = (server.snd.snd_nxt + 1000) & 0xFFFFFFFF
    seg = TcpSegment(client.local_port, 80, server.rcv.rcv_nxt, ahead, ACK, 1000, payload=b"zz")
    inject(net, seg)
    assert server.rcv.rcv_nxt == seg.seq
    assert net.b.counters["UstcpDropAckUnsent"] == 1
