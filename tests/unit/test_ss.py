"""``ustcp ss``: snapshots of real engines driven on virtual time, and their ss-style table."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import AsyncIterator

import pytest
import trio

from tests.engine.harness import A_IP, B_IP, Net, Sent
from tests.engine.util import drain, open_pair
from ustcp import cli
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
    assert info["cwnd"] == server.snd.ccs.snd_cwnd > 10  # grew from the initial window
    assert info["ts"] and info["sack"] and info["wscale"] == [7, 7]
    assert info["mss"] == 1448 and info["bytes_acked"] > 0
    assert info["rtt"] == pytest.approx(server.snd.rtt.srtt_us / 1000)
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
    return ss.main(cli.build_parser("ss").parse_args(["ss", *argv]))


async def test_control_command_and_cli(daemon_engine: tuple[str, TcpEngine],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    name, _ = daemon_engine
    reply = await trio.to_thread.run_sync(
        lambda: control.request("ss", name=name, state="listening"))
    assert [r["state"] for r in reply["sockets"]] == ["LISTEN"]
    assert await trio.to_thread.run_sync(run_cli, ["--control", name, "-a", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in rows] == ["LISTEN", "ESTAB"]
    assert await trio.to_thread.run_sync(
        run_cli, ["--control", name, "-oi", "--state", "ESTAB", "--port", "80"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Recv-Q")  # one state chosen: no State column, as ss
    assert " 10.0.0.2:80 " in out[1] and out[2].startswith("\t ts sack cubic")
    assert await trio.to_thread.run_sync(run_cli, ["--control", name, "--state", "nope"]) == 2
    assert "unknown state" in capsys.readouterr().err


ROWS: list[dict[str, object]] = [
    {"state": "LISTEN", "recv_q": 0, "send_q": 4096, "local": "10.77.0.2:80",
     "peer": "0.0.0.0:*", "timer": None, "syn_queue": 0},
    {"state": "ESTAB", "recv_q": 0, "send_q": 0, "local": "10.77.0.2:80",
     "peer": "10.77.0.1:40000", "timer": {"name": "on", "expires_ms": 200, "count": 0},
     "info": None, "skmem": {"r": 0, "rb": 131072, "t": 0, "tb": 16384, "f": 0, "w": 10,
                             "o": 0, "bl": 0, "d": 0}, "sk": "7f00"},
    {"state": "ESTAB", "recv_q": 0, "send_q": 0, "local": "10.77.0.2:7",
     "peer": "10.77.0.1:40001", "timer": None},
    {"state": "TIME-WAIT", "recv_q": 0, "send_q": 0, "local": "10.77.0.2:80",
     "peer": "10.77.0.1:39999", "timer": {"name": "timewait", "expires_ms": 59000,
                                           "count": 0}},
]


def shown(*argv: str) -> list[tuple[object, object]]:
    args = cli.build_parser("ss").parse_args(["ss", *argv])
    return [(row["state"], row["peer"]) for row in ss.select(ROWS, args)]  # type: ignore[arg-type]


def test_ss_options_and_filters_choose_rows_as_iproute2() -> None:
    estab = [("ESTAB", "10.77.0.1:40000"), ("ESTAB", "10.77.0.1:40001")]
    assert shown() == shown("-tn") == estab  # no listeners, no TIME-WAIT without -a
    assert shown("-l") == [("LISTEN", "0.0.0.0:*")]
    assert len(shown("-tanoi")) == 4
    assert shown("state", "time-wait") == [("TIME-WAIT", "10.77.0.1:39999")]
    assert shown("-a", "sport", "=", ":80", "and", "exclude", "listening") == [
        ("ESTAB", "10.77.0.1:40000"), ("TIME-WAIT", "10.77.0.1:39999")]
    assert shown("dport", "gt", ":40000") == [("ESTAB", "10.77.0.1:40001")]
    assert shown("sport", "!=", ":80") == [("ESTAB", "10.77.0.1:40001")]
    assert shown("-a", "dst", "10.77.0.0/24:39999") == [("TIME-WAIT", "10.77.0.1:39999")]
    assert shown("state", "connected", "src", "10.77.0.2:7") == [("ESTAB", "10.77.0.1:40001")]
    for bad in (["sport", "=", "80x"], ["state", "bogus"], ["proto", "tcp"], ["state"]):
        with pytest.raises(ss.FilterError):
            shown(*bad)


def test_ss_columns_follow_the_flags() -> None:
    rows = ROWS[1:2]
    bare = format_table(rows, timers=False, info=False).splitlines()  # type: ignore[arg-type]
    assert len(bare) == 2 and bare[1].split() == ["ESTAB", "0", "0", "10.77.0.2:80",
                                                  "10.77.0.1:40000"]
    full = format_table(rows, timers=True, info=False, memory=True,  # type: ignore[arg-type]
                        extended=True, header=False).splitlines()
    assert full[0].endswith("timer:(on,200ms,0) sk:7f00")
    assert full[1] == "\t skmem:(r0,rb131072,t0,tb16384,f0,w10,o0,bl0,d0)"


def test_ss_bad_filter_prints_usage_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ss", "sport", "=", "http", "--control", "nobody-here"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ustcp ss") and "ustcp ss: expected :PORT" in err
