"""``ustcp ss``: snapshots of real engines driven on virtual time, and their ss-style table."""

from __future__ import annotations

import argparse
import itertools
import json
import os
from collections.abc import AsyncIterator

import pytest
import trio

from tests.engine.harness import A_IP, B_IP, Net, Sent
from tests.engine.util import drain, open_pair
from ustcp.obs import control, ss
from ustcp.obs.ss import filter_rows, format_ms_timer, format_table, snapshot, state_names
from ustcp.tcp.engine import TcpEngine
from ustcp.wire.tcp import ACK, SYN

_names = itertools.count()


@pytest.fixture
def net() -> Net:
    return Net()


def test_estab_during_a_transfer_shows_cwnd_and_the_retransmission_timer(net: Net) -> None:
    _, client, server = open_pair(net)
    server.send(net.now, b"x" * 200_000)
    net.run(net.now + 0.03)  # a few round trips of slow start, data still in flight
    rows = snapshot(net.b, net.now, state="ESTAB")
    assert len(rows) == 1
    row = rows[0]
    assert row["local"] == "10.0.0.2:80" and row["peer"] == f"10.0.0.1:{client.local_port}"
    assert row["send_q"] > 0
    info = row["info"]
    assert info["cwnd"] == server.ccs.snd_cwnd > 10  # grew from the initial window
    assert info["ts"] and info["sack"] and info["wscale"] == [7, 7]
    assert info["mss"] == 1448 and info["bytes_acked"] > 0
    assert info["rtt"] == pytest.approx(server.rtt.srtt_us / 1000)
    assert row["timer"]["name"] == "on" and 0 < row["timer"]["expires_ms"] <= info["rto"]

    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["State", "Recv-Q", "Send-Q", "Local", "Address:Port", "Peer",
                                "Address:Port"]
    assert lines[1].split()[:5] == ["ESTAB", "0", str(row["send_q"]), "10.0.0.2:80",
                                    f"10.0.0.1:{client.local_port}"]
    assert lines[1].endswith(f"timer:(on,{format_ms_timer(row['timer']['expires_ms'])},0)")
    assert lines[2].startswith("\t ts sack cubic wscale:7,7 rto:")
    assert f" cwnd:{info['cwnd']} " in lines[2]
    assert f" bytes_acked:{info['bytes_acked']} " in lines[2]
    drain(client, net.now)


def test_time_wait_after_the_stack_closes_first(net: Net) -> None:
    _, client, server = open_pair(net)
    server.close(net.now)  # B closes first: B keeps the TIME_WAIT entry
    net.run(net.now + 0.1)
    assert client.recv(net.now, 10) == b""
    client.close(net.now)
    net.run(net.now + 0.1)
    entry = net.b.time_wait.entries[server.key]
    rows = snapshot(net.b, entry.expires - 52.0)
    assert [r["state"] for r in rows] == ["LISTEN", "TIME-WAIT"]
    assert rows[1]["timer"] == {"name": "timewait", "expires_ms": 52_000, "count": 0}
    port = client.local_port
    assert format_table(rows) == (
        "State     Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
        "LISTEN         0     16 10.0.0.2:80        0.0.0.0:*\n"
        "\t synq:0\n"
        f"TIME-WAIT      0      0 10.0.0.2:80        10.0.0.1:{port}    "
        "timer:(timewait,52sec,0)\n"
    )
    assert snapshot(net.a, net.now) == []  # the side that closed second keeps nothing


def test_listen_shows_accept_queue_against_backlog_and_the_syn_queue() -> None:
    lose_third_ack = {"on": False}

    def filt(sent: Sent) -> int:
        return 0 if lose_third_ack["on"] and sent.src == A_IP and sent.seg.flags == ACK else 1

    net = Net(filter=filt)
    listener = net.b.listen(net.now, b"\0\0\0\0", 80, 2)
    for _ in range(3):
        net.a.connect(net.now, A_IP, B_IP, 80)
    net.run(net.now + 0.1)
    assert listener.accept_queue_len == 3  # full: sk_acceptq_is_full is len > backlog
    lose_third_ack["on"] = True
    net.run(net.now + 0.1)
    listener.accept()  # room for the half-open one once its third ACK gets through
    net.a.connect(net.now, A_IP, B_IP, 80)
    net.run(net.now + 0.5)
    rows = snapshot(net.b, net.now)
    assert rows[0] == {"state": "LISTEN", "recv_q": 2, "send_q": 2, "local": "0.0.0.0:80",
                       "peer": "0.0.0.0:*", "timer": None, "syn_queue": 1}
    half_open = rows[1]
    assert half_open["state"] == "SYN-RECV"
    assert half_open["timer"]["name"] == "on" and half_open["timer"]["count"] == 0
    net.run(net.now + 0.6)  # the SYN-ACK was retransmitted once
    assert snapshot(net.b, net.now, state="syn-recv")[0]["timer"]["count"] == 1
    table = format_table(snapshot(net.b, net.now, state="listening"))
    assert table.splitlines()[1].split() == ["LISTEN", "2", "2", "0.0.0.0:80", "0.0.0.0:*"]
    assert table.splitlines()[2] == "\t synq:1"


def test_syn_sent_has_one_byte_in_send_q_as_linux() -> None:
    net = Net(filter=lambda sent: 0 if sent.seg.flags & SYN else 1)
    net.a.connect(net.now, A_IP, B_IP, 80)
    net.run(0.2)
    (row,) = snapshot(net.a, net.now)
    assert (row["state"], row["recv_q"], row["send_q"]) == ("SYN-SENT", 0, 1)
    assert row["timer"] == {"name": "on", "expires_ms": 800, "count": 0}


@pytest.mark.parametrize(("ms", "text"), [
    (0, ""), (40, "040ms"), (200, "200ms"), (1500, "1.500ms"), (9999, "9.999ms"),
    (10_500, "10sec"), (52_000, "52sec"), (65_000, "1min5sec"), (65_400, "1min5sec"),
    (600_000, "10min"), (7_260_000, "121min"),
])
def test_ms_timer_like_ss(ms: int, text: str) -> None:
    assert format_ms_timer(ms) == text


def test_state_names_and_filters() -> None:
    assert state_names("ESTAB") == state_names("established") == {"ESTAB"}
    assert state_names("TIME_WAIT") == state_names("time-wait") == {"TIME-WAIT"}
    assert "LISTEN" not in state_names("connected") and "SYN-RECV" in state_names("connected")
    assert "SYN-SENT" not in state_names("synchronized")
    with pytest.raises(ValueError, match="unknown state"):
        state_names("bogus")
    rows: list[ss.Row] = [
        {"state": "LISTEN", "local": "0.0.0.0:80", "peer": "0.0.0.0:*"},
        {"state": "ESTAB", "local": "10.0.0.2:80", "peer": "10.0.0.1:5000"},
        {"state": "ESTAB", "local": "10.0.0.2:7", "peer": "10.0.0.1:80"},
        {"state": "TIME-WAIT", "local": "10.0.0.2:9", "peer": "10.0.0.1:5001"},
    ]
    assert filter_rows(rows, port=80) == rows[:3]
    assert filter_rows(rows, state="established", port=7) == [rows[2]]
    assert filter_rows(rows, state="connected") == rows[1:]


@pytest.fixture
async def daemon_engine() -> AsyncIterator[tuple[str, TcpEngine]]:
    net = Net()
    open_pair(net)
    name = f"ustcp-test-ss-{os.getpid()}-{next(_names)}"
    server = control.ControlServer(name)
    server.add("ss", ss.control_command(net.b))
    listener = await server.bind()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve, listener)
        yield name, net.b
        nursery.cancel_scope.cancel()


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--control")
    ss.add_arguments(parser)
    return ss.main(parser.parse_args(argv))


async def test_control_command_and_cli(daemon_engine: tuple[str, TcpEngine],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    name, _ = daemon_engine
    reply = await trio.to_thread.run_sync(
        lambda: control.request("ss", name=name, state="listening"))
    assert [r["state"] for r in reply["sockets"]] == ["LISTEN"]
    assert await trio.to_thread.run_sync(run_cli, ["--control", name, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in rows] == ["LISTEN", "ESTAB"]
    assert await trio.to_thread.run_sync(
        run_cli, ["--control", name, "--state", "ESTAB", "--port", "80"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("ESTAB") and out[2].startswith("\t ts sack cubic")
    assert await trio.to_thread.run_sync(run_cli, ["--control", name, "--state", "nope"]) == 2
    assert "unknown state" in capsys.readouterr().err
