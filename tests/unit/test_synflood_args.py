"""tools/synflood.py without sending anything: refusals, the crafted pool, the pacing loop."""

from __future__ import annotations

import importlib.util
import ipaddress
import random
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import dpkt
import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "synflood.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("synflood", TOOL)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["synflood"] = mod  # dataclasses look the module up by name
    spec.loader.exec_module(mod)
    return mod


synflood = _load()


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the tool opened a socket")

    monkeypatch.setattr(synflood, "open_raw_socket", refuse)
    monkeypatch.setattr(socket, "socket", refuse)


@pytest.mark.parametrize(("argv", "why"), [
    (["--target", "8.8.8.8"], "outside the source network"),
    (["--target", "10.78.0.1"], "outside the source network"),
    (["--target", "10.0.0.1", "--source-net", "10.0.0.0/8"], "larger than /16"),
    (["--target", "10.0.0.1", "--source-net", "10.0.0.0/15"], "larger than /16"),
    (["--target", "10.77.0.2", "--duration", "61"], "duration"),
    (["--target", "10.77.0.2", "--duration", "0"], "duration"),
    (["--target", "10.77.0.2", "--count", "2000001"], "count"),
    (["--target", "10.77.0.2", "--rate", "0"], "rate"),
    (["--target", "10.77.0.2", "--port", "0"], "port"),
    (["--target", "10.77.0.2", "--pool", "70000"], "pool"),
    (["--target", "not-an-ip"], "IPv4"),
    (["--target", "10.77.0.1", "--source-net", "10.77.0.1/32"], "no spoofable source"),
])
def test_refusals(argv: list[str], why: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert synflood.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert why in err


def test_sources_exclude_network_broadcast_and_target() -> None:
    args = synflood._parse_args(["--target", "10.77.0.2"])
    plan = synflood.make_plan(args)
    assert len(plan.sources) == 253
    assert not {"10.77.0.0", "10.77.0.255", "10.77.0.2"} & set(plan.sources)


def test_sources_exclude_this_hosts_addresses() -> None:
    # every address of 127.0.0.0/8 is this host's: a flood from one of them would draw RSTs
    with pytest.raises(synflood.Refusal, match="no spoofable source"):
        synflood.make_plan(
            synflood._parse_args(["--target", "127.0.0.1", "--source-net", "127.0.0.0/29"]))


def test_a_16_is_accepted() -> None:
    plan = synflood.make_plan(
        synflood._parse_args(["--target", "10.5.3.4", "--source-net", "10.5.0.0/16"]))
    assert len(plan.sources) == 65533


def test_pool_frames_are_syns() -> None:
    plan = synflood.make_plan(synflood._parse_args(
        ["--target", "10.77.0.2", "--port", "8080", "--mss", "1300", "--pool", "300"]))
    pool = synflood.build_pool(plan, random.Random(3))
    assert len(pool) == 300
    net = ipaddress.IPv4Network("10.77.0.0/24")
    for src, frame in pool:
        ip = dpkt.ip.IP(frame)
        assert socket.inet_ntoa(ip.src) == src
        assert ipaddress.IPv4Address(src) in net
        assert socket.inet_ntoa(ip.dst) == "10.77.0.2"
        assert dpkt.in_cksum(frame[:20]) == 0
        tcp = ip.data
        assert tcp.flags == dpkt.tcp.TH_SYN
        assert tcp.dport == 8080
        assert dpkt.tcp.parse_opts(tcp.opts) == [(dpkt.tcp.TCP_OPT_MSS, (1300).to_bytes(2, "big"))]
        pseudo = ip.src + ip.dst + bytes([0, 6]) + (len(frame) - 20).to_bytes(2, "big")
        assert dpkt.in_cksum(pseudo + frame[20:]) == 0
    # deterministic with a seed
    assert synflood.build_pool(plan, random.Random(3)) == pool


def test_pool_no_larger_than_count() -> None:
    plan = synflood.make_plan(synflood._parse_args(["--target", "10.77.0.2", "--count", "10"]))
    assert len(synflood.build_pool(plan, random.Random(0))) == 10


class FakeSocket:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self.frames.append(data)
        return len(data)


def test_flood_stops_at_count() -> None:
    plan = synflood.make_plan(synflood._parse_args(
        ["--target", "10.77.0.2", "--count", "500", "--rate", "1000000", "--pool", "64"]))
    frames = [f for _, f in synflood.build_pool(plan, random.Random(0))]
    sock = FakeSocket()
    res = synflood.flood(sock, plan, frames)
    assert res.sent == len(sock.frames) == 500
    assert sock.frames[:64] == frames and sock.frames[64:128] == frames  # round robin
    assert res.last_index == (500 - 1) % 64


def test_flood_paced_and_bounded_by_duration() -> None:
    plan = synflood.make_plan(synflood._parse_args(
        ["--target", "10.77.0.2", "--rate", "2000", "--duration", "0.25", "--pool", "16"]))
    frames = [f for _, f in synflood.build_pool(plan, random.Random(0))]
    res = synflood.flood(FakeSocket(), plan, frames)
    assert 0.25 <= res.elapsed < 0.4
    assert 350 <= res.sent <= 501
