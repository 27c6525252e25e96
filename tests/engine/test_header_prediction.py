"""Header prediction: the fast path must end exactly where the full receive path ends.

Each example sets up an established connection with data in flight both ways, then feeds
the server one segment close to the predicted shape (the next in order, ACK or ACK+PSH,
same window, a fresh timestamp) but varied in every field the prediction looks at. The
same segment goes to a copy of the server with the prediction switched off; both must
send the same segments and end in the same state.
"""

from __future__ import annotations

import copy
from operator import attrgetter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustcp.tcp.connection import Connection
from ustcp.tcp.engine import TcpEngine
from ustcp.tcp.seq import seq_add
from ustcp.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpOptions, TcpSegment

from .harness import A_IP, B_IP, Net
from .util import open_pair

# The state a segment can change, compared field by field.
_FIELDS = ("state", "snd.snd_una", "snd.snd_nxt", "snd.snd_wnd", "snd.snd_wl1", "snd.snd_wl2",
           "snd.max_window", "rcv.rcv_nxt", "rcv.rcv_wnd", "rcv.rcv_wup", "rcv.ts_recent",
           "snd.rtx.packets_out", "snd.rtx.sacked_out", "snd.rtx.lost_out",
           "snd.rtx.retrans_out", "snd.bytes_acked", "rcv.bytes_received", "rcv.data_segs_in",
           "rcv.ack_scheduled", "rcv.ack_now", "rcv.quick", "rcv.pingpong", "snd.t_rto",
           "rcv.t_delack", "snd.t_probe0", "snd.xmit_timer", "rcv.pending_dsack",
           "snd.delivered", "snd.backoff", "snd.probes_out")


def _established() -> tuple[Net, Connection, Connection]:
    """Client and server with 3 unacknowledged segments from the server in flight."""
    net = Net(delay=0.01)
    _, client, server = open_pair(net)
    client.send(net.now, b"c" * 3000)
    net.run(net.now + 0.1)
    server.recv(net.now, 1 << 20)
    server.send(net.now, b"s" * 4000)
    net.a.take_output()  # the client hears nothing more: the test writes its segments
    net.b.take_output()
    return net, client, server


def _snapshot(conn: Connection, engine: TcpEngine) -> dict[str, Any]:
    out = [(s.seq, s.ack, s.flags, s.window, bytes(s.payload), s.options)
           for _, _, s in engine.take_output()]
    return {"fields": {f: attrgetter(f)(conn) for f in _FIELDS}, "out": out,
            "buffered": len(conn.rcv.rcv_buf), "cwnd": conn.snd.ccs.snd_cwnd,
            "counters": engine.counters.snapshot()}


@pytest.mark.pure_only  # copy.deepcopy and a replaced method: compiled classes refuse both
@settings(max_examples=300, deadline=None)
@given(seq_off=st.sampled_from([0, 0, 0, 1, -1, 5000]),
       ack_off=st.sampled_from([0, 1448, 2896, 4000, 4001, -1, -70000]),
       flags=st.sampled_from([ACK, ACK | PSH, ACK | PSH, ACK | FIN, ACK | SYN, ACK | RST, PSH,
                              ACK | 0x20]),
       window_delta=st.sampled_from([0, 0, 0, 1, -1, "zero"]),
       ts_delta=st.sampled_from([0, 1, 10, -1, -5000, None]),
       sack=st.booleans(),
       length=st.sampled_from([0, 0, 1, 100, 1448, 70000]))
def test_fast_path_equals_full_path(seq_off: int, ack_off: int, flags: int,
                                    window_delta: int | str, ts_delta: int | None,
                                    sack: bool, length: int) -> None:
    net, client, server = _established()
    now = net.now + 0.005
    una = server.snd.snd_una
    window = 0 if window_delta == "zero" else (server.snd.snd_wnd >> server.snd.snd_wscale) + int(
        window_delta)
    ts_val = None if ts_delta is None else (client.rcv.ts_now(now) + ts_delta) & 0xFFFFFFFF
    opts = TcpOptions(ts_val=ts_val, ts_ecr=server.rcv.ts_now(now) if ts_val is not None else 0,
                      sack_blocks=((seq_add(una, 1448), seq_add(una, 2896)),) if sack else ())
    seg = TcpSegment(client.local_port, client.remote_port,
                     seq_add(server.rcv.rcv_nxt, seq_off), seq_add(una, ack_off), flags,
                     max(0, min(window, 0xFFFF)), opts, bytes(length))
    twin_engine = copy.deepcopy(net.b)
    twin = twin_engine.connections[server.key]
    twin._header_predicted = lambda seg: False  # type: ignore[method-assign]
    net.b.on_segment(now, A_IP, B_IP, seg)
    twin_engine.on_segment(now, A_IP, B_IP, seg)
    assert _snapshot(server, net.b) == _snapshot(twin, twin_engine)


@pytest.mark.pure_only  # spies on a method: compiled classes refuse the replacement
def test_the_prediction_takes_the_common_segments() -> None:
    """In-order ACKs and data of a plain exchange do take the fast path."""
    net = Net(delay=0.01)
    _, client, server = open_pair(net)
    taken: list[int] = []
    fast = server._rcv_predicted

    def spy(now: float, seg: TcpSegment) -> None:
        taken.append(len(seg.payload))
        fast(now, seg)

    server._rcv_predicted = spy  # type: ignore[method-assign]
    for _ in range(40):  # the client's ACKs, once its window has stopped growing
        server.send(net.now, b"s" * 3000)
        net.run(net.now + 0.5)
        client.recv(net.now, 1 << 20)
    for _ in range(2):  # the first may announce a window opened by the read
        client.send(net.now, b"c" * 500)
        net.run(net.now + 0.5)
    assert 0 in taken and 500 in taken  # a pure ACK and a data segment


@pytest.mark.parametrize("flags", [ACK | FIN, ACK | RST, ACK | SYN])
def test_control_flags_always_take_the_full_path(flags: int) -> None:
    net, client, server = _established()
    seg = TcpSegment(client.local_port, client.remote_port, server.rcv.rcv_nxt, server.snd.snd_una,
                     flags, server.snd.snd_wnd >> server.snd.snd_wscale,
                     TcpOptions(ts_val=client.rcv.ts_now(net.now), ts_ecr=0))
    assert not server._header_predicted(seg)
