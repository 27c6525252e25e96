"""The ``ustcp`` command's parsing, its checks before start-up, and the control clients."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
from collections.abc import AsyncIterator

import pytest
import trio

from ustcp import cli, daemon
from ustcp.config import IGNORED, RANGES, StackConfig
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
    ("serve", "--addr", "10.78.0.2"),  # outside --peer's prefix: the kernel cannot reach it
    ("serve", "--addr", "10.77.0.1"),  # the kernel side's own address
    ("serve", "--metrics", "10.9.9.9:9100"),  # only on the stack's own address
    ("serve", "--metrics", "80"),  # http's port
    ("serve", "--app", "echo:7", "--app", "http:7"),
    ("connect", "10.77.0.1", "80", "--sysctl", "tcp_sack=-1"),
    # issue 13: values outside Linux's own ranges, refused as sysctl -w would refuse them
    ("serve", "--sysctl", "ip_default_ttl=300"),
    ("serve", "--sysctl", "ip_default_ttl=0"),
    ("serve", "--sysctl", "tcp_rmem=1 1 1"),
    ("serve", "--sysctl", "tcp_wmem=0 1 1"),
    ("serve", "--sysctl", "tcp_syn_retries=0"),
    ("serve", "--sysctl", "tcp_syn_retries=128"),
    ("serve", "--sysctl", "tcp_tw_reuse=3"),
    ("serve", "--sysctl", "tcp_synack_retries=256"),
    ("serve", "--sysctl", "tcp_reordering=301"),  # above tcp_max_reordering (300)
    ("serve", "--sysctl", "tcp_min_rtt_wlen=86401"),
    ("serve", "--mtu", "68"),
    ("serve", "--mtu", "127"),
    ("serve", "--addr", "10.77.2"),
    ("serve", "--pcap", "/nonexistent-ustcp-dir/capture.pcap"),
])
def test_bad_arguments_are_refused_with_status_2(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ustcp: "), err


@pytest.mark.parametrize("argv", [
    ("serve", "--mtu", "abc"),
    ("serve", "--no-such-option"),
    ("serve", "--offload", "maybe"),
    ("connect", "10.77.0.1", "http"),
])
def test_argparse_errors_are_one_line_and_status_2(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(argv))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ustcp"), err


def test_a_control_commands_argparse_error_prints_its_usage(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["nstat", "--bogus"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ustcp") and err.count("\n") > 1
    assert "unrecognized arguments: --bogus" in err


def test_linux_edge_values_are_accepted() -> None:
    setup = daemon._check(parse(
        "serve", "--mtu", "128", "--sysctl", "ip_default_ttl=255",
        "--sysctl", "tcp_rmem=4096 4096 4096", "--sysctl", "tcp_wmem=1 1 1",
        "--sysctl", "tcp_syn_retries=127", "--sysctl", "tcp_max_reordering=500",
        "--sysctl", "tcp_reordering=500", "--sysctl", "tcp_ecn=2"))
    config = setup.config
    assert (config.ip_default_ttl, config.tcp_rmem, config.tcp_syn_retries,
            config.tcp_reordering) == (255, (4096, 4096, 4096), 127, 500)


def test_every_integer_sysctl_has_a_range() -> None:
    """A knob added without its Linux range would take any value again."""
    defaults = StackConfig()
    ints = {f.name for f in dataclasses.fields(StackConfig)
            if type(getattr(defaults, f.name)) is int}
    assert ints == set(RANGES)
    for name, (lo, hi) in RANGES.items():
        assert lo <= getattr(defaults, name) <= hi, name  # Linux's default is in range


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
    assert table.splitlines() == ["#kernel", f"{'TcpPassiveOpens':<32}5"]
    assert await run("nstat") == "#kernel\n"  # no increments since the last look
    assert "TcpInSegs" in await run("nstat", "-az")
    assert json.loads(await run("nstat", "-a", "--json")) == {"kernel": {"TcpPassiveOpens": 5}}
    assert json.loads(await run("nstat", "-azj", "Tcp*Opens")) == {
        "kernel": {"TcpActiveOpens": 0, "TcpPassiveOpens": 5}}
    assert await run("nstat", "--prometheus", "TcpPassiveOpens", "TcpExtListenDrops") == (
        "# HELP ustcp_netstat_TcpExt_ListenDrops nstat's TcpExtListenDrops.\n"
        "# TYPE ustcp_netstat_TcpExt_ListenDrops counter\n"
        "ustcp_netstat_TcpExt_ListenDrops 0\n"
        "# HELP ustcp_netstat_Tcp_PassiveOpens nstat's TcpPassiveOpens.\n"
        "# TYPE ustcp_netstat_Tcp_PassiveOpens counter\n"
        "ustcp_netstat_Tcp_PassiveOpens 5\n")
    assert await run("ss") == (
        "State Recv-Q Send-Q Local Address:Port Peer Address:Port\n")  # ss: no listeners
    listing = await run("ss", "-l")
    assert "LISTEN" in listing and "10.77.0.2:80" in listing


def test_ignored_sysctls_are_accepted_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    """A knob StackConfig accepts but ustcp does not act on says so, one line each; a knob
    that works says nothing."""
    setup = daemon._check(parse("serve", "--sysctl", "net.ipv4.tcp_ecn=1",
                                "--sysctl", "tcp_min_rtt_wlen=10", "--sysctl", "tcp_sack=0"))
    assert setup.config.tcp_ecn == 1 and setup.config.tcp_sack == 0
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["warning"]
    assert "tcp_min_rtt_wlen is accepted but ignored" in lines[0]
    assert set(IGNORED) <= set(StackConfig().as_dict())


async def test_sysctl_reads_and_sets_a_running_daemons_knobs(
    capsys: pytest.CaptureFixture[str]
) -> None:
    from ustcp.config import StackConfig
    from ustcp.obs import sysctl

    name = f"ustcp-cli-test-{os.getpid()}-{next(_names)}"
    config = StackConfig()
    server = control.ControlServer(name)
    server.add("sysctl", sysctl.control_command(config))
    listener = await server.bind()

    async def run(*argv: str) -> tuple[int, str, str]:
        status = await trio.to_thread.run_sync(cli.main, ["sysctl", *argv, "--control", name])
        out, err = capsys.readouterr()
        return status, out, err

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve, listener)
        assert await run("tcp_syncookies", "net.core.somaxconn") == (
            0, "net.ipv4.tcp_syncookies = 1\nnet.core.somaxconn = 4096\n", "")
        assert await run("-n", "tcp_rmem") == (0, "4096\t131072\t6291456\n", "")
        assert await run("net.ipv4.tcp_syncookies=2", "tcp_sack=0") == (
            0, "net.ipv4.tcp_syncookies = 2\nnet.ipv4.tcp_sack = 0\n", "")
        assert (config.tcp_syncookies, config.tcp_sack) == (2, 0)  # the live config
        status, out, err = await run("tcp_sack=1", "tcp_bogus=1")
        assert status == 2 and out == "" and "unknown sysctl 'tcp_bogus'" in err
        assert err.startswith("usage: ustcp sysctl")
        assert config.tcp_sack == 0  # all or nothing
        status, out, _ = await run()
        assert status == 0 and "net.ipv4.tcp_congestion_control = cubic\n" in out
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("command", ["nstat", "ss", "sysctl", "trace"])
def test_control_commands_import_nothing_heavy(command: str) -> None:
    """What makes ``ustcp nstat`` start fast: a control command (here finding no daemon)
    imports neither trio, structlog, h11, dpkt nor the engine."""
    import subprocess
    import sys

    code = ("import sys; from ustcp import cli; "
            f"status = cli.main([{command!r}, '--control', 'ustcp-nobody-{os.getpid()}']); "
            "heavy = ('trio', 'structlog', 'h11', 'dpkt', 'ustcp.tcp.engine', 'ustcp.apps'); "
            "print(status, sorted(m for m in heavy if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "1 []", done.stderr
