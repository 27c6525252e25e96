"""The ``ustcp`` command's parsing, its checks before start-up, and the control clients."""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import AsyncIterator

import pytest
import trio

from ustcp import cli, daemon
from ustcp.config import IGNORED, StackConfig
from ustcp.mib import Counters, Mib
from ustcp.obs import control
from ustcp.obs.nstat import Nstat

_names = itertools.count()


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(list(argv))


def test_serve_defaults() -> None:
    args = parse("serve")
    assert (args.tun, args.addr, args.peer, args.mtu) == ("ustcp0", "10.77.0.2",
                                                          "10.77.0.1/24", 1500)
    assert args.app is None and args.sysctl == [] and args.offload == "on"
    assert args.log_level == "info"
    assert parse("connect", "10.77.0.1", "80").log_level == "warning"


@pytest.mark.parametrize("argv", [
    ("serve", "--sysctl", "bogus=1"),
    ("serve", "--sysctl", "tcp_syncookies=lots"),
    ("serve", "--sysctl", "no-equals-sign"),
    ("serve", "--app", "gopher:70"),
    ("serve", "--app", "http:99999"),
    ("serve", "--addr", "10.77.0.256"),
    ("serve", "--impair", "loss=lots"),
    ("serve", "--mtu", "20"),
    ("serve", "--peer", "10.77.0.1/33"),
    ("serve", "--app", "echo:7", "--app", "http:7"),
    ("connect", "10.77.0.1", "80", "--sysctl", "tcp_sack=-1"),
])
def test_bad_arguments_are_refused_with_status_2(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ustcp: "), err


def test_busy_polling_sysctls_reach_the_stack_config() -> None:
    """``--sysctl net.core.busy_poll=N`` and ``net.core.busy_read=N`` are read under their
    Linux names into the config the daemon's Stack runs with."""
    setup = daemon._check(parse("serve", "--sysctl", "net.core.busy_poll=50",
                                "--sysctl", "net.core.busy_read=30"))
    assert (setup.config.busy_poll, setup.config.busy_read) == (50, 30)


def test_without_privileges_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(daemon, "_has_cap_net_admin", lambda: False)
    assert cli.main(["serve"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "root or CAP_NET_ADMIN" in err[0]


def test_no_daemon_is_one_line_and_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["nstat", "--control", f"ustcp-nobody-{os.getpid()}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no ustcp daemon" in err[0]


@pytest.fixture
async def control_name() -> AsyncIterator[str]:
    name = f"ustcp-cli-test-{os.getpid()}-{next(_names)}"
    counters = Counters()
    counters.inc(Mib.TcpPassiveOpens, 5)
    server = control.ControlServer(name)
    server.add("nstat", Nstat(counters))
    server.add("ss", lambda request: {"sockets": [
        {"state": "LISTEN", "recv_q": 0, "send_q": 4096, "local": "10.77.0.2:80",
         "peer": "*:*", "timer": None, "syn_queue": 0},
    ]})
    listener = await server.bind()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve, listener)
        yield name
        nursery.cancel_scope.cancel()


async def test_nstat_and_ss_print_what_the_daemon_says(
    control_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def run(*argv: str) -> str:
        status = await trio.to_thread.run_sync(cli.main, [*argv, "--control", control_name])
        assert status == 0
        return capsys.readouterr().out

    table = await run("nstat")
    assert "TcpPassiveOpens" in table and "TcpInSegs" not in table
    assert "TcpInSegs" in await run("nstat", "--all")
    assert '"TcpPassiveOpens": 5' in await run("nstat", "--json")
    listing = await run("ss")
    assert "LISTEN" in listing and "10.77.0.2:80" in listing


def test_ignored_sysctls_are_accepted_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    """A knob StackConfig accepts but ustcp does not act on says so, one line each; a knob
    that works says nothing."""
    setup = daemon._check(parse("serve", "--sysctl", "net.ipv4.tcp_ecn=1",
                                "--sysctl", "tcp_min_rtt_wlen=10", "--sysctl", "tcp_sack=0"))
    assert setup.config.tcp_ecn == 1 and setup.config.tcp_sack == 0
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["warning"] * 2
    assert "tcp_ecn is accepted but ignored" in lines[0]
    assert "tcp_min_rtt_wlen is accepted but ignored" in lines[1]
    assert set(IGNORED) <= set(StackConfig().as_dict())
