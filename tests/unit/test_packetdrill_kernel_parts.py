"""The kernel target's pure parts: the comparison table, tcp_info decoding, the planning of
shell commands, and which system calls it can express."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from ustcp.packetdrill.ast import IntExpr, SyscallSpec, WordExpr
from ustcp.packetdrill.kernel import commands
from ustcp.packetdrill.kernel.compare import Row, render
from ustcp.packetdrill.kernel.runner import syscall_reason
from ustcp.packetdrill.runner import Result
from ustcp.packetdrill.symbols import Unsupported
from ustcp.tcp.tcpinfo import TcpInfo, parse_tcp_info


def result(status: str, line: int | None = None, message: str = "",
           sent: dict[int, str] | None = None) -> Result:
    return Result("s.pkt", status, line, message, sent=sent or {})  # type: ignore[arg-type]


# ------------------------------------------------------------------ the table


def test_same_status_and_line_agree() -> None:
    assert Row("s.pkt", result("pass"), result("pass")).agree
    assert Row("s.pkt", result("fail", 9, "a"), result("fail", 9, "b")).agree
    assert not Row("s.pkt", result("fail", 9), result("fail", 12)).agree


def test_a_skip_on_either_side_is_not_compared() -> None:
    row = Row("s.pkt", result("skip", message="needs fq"), result("fail", 3))
    assert not row.compared and row.agree
    assert "    kernel skipped: needs fq" in render([row])


def test_parting_names_the_first_line_and_what_each_side_sent() -> None:
    kernel = result("fail", 24, "ack: expected 1001 actual 1", {24: "> . 1:1(0) ack 1"})
    engine = result("pass", sent={24: "> . 1:1(0) ack 1001"})
    row = Row("s.pkt", kernel, engine)
    assert row.parting() == ("line 24: kernel: ack: expected 1001 actual 1; "
                             "ustcp: sent > . 1:1(0) ack 1001")
    lines = render([row])
    assert lines[1].split() == ["s.pkt", "fail:24", "pass", "NO"]
    assert lines[2] == "    parts at " + row.parting()


def test_a_known_difference_is_noted_only_when_the_kernel_fails() -> None:
    note = "HZ=250"
    assert "    note: HZ=250" in render([Row("s.pkt", result("fail", 3), result("pass"), note)])
    assert not any("note" in line
                   for line in render([Row("s.pkt", result("pass"), result("pass"), note)]))


def test_parting_at_the_earlier_of_two_failures() -> None:
    row = Row("s.pkt", result("fail", 30, "late"), result("fail", 12, "flags"))
    assert row.parting() == "line 12: kernel: as the script; ustcp: flags"


# ------------------------------------------------------------------ tcp_info


def test_tcp_info_fields_decoded_from_the_kernel_layout() -> None:
    info = TcpInfo(tcpi_state=1, tcpi_snd_wscale=7, tcpi_rcv_wscale=8, tcpi_snd_mss=1448,
                   tcpi_snd_cwnd=10, tcpi_bytes_acked=1 << 40, tcpi_total_rto_time=5)
    fields = parse_tcp_info(bytes(info))
    assert fields["tcpi_state"] == 1
    assert (fields["tcpi_snd_wscale"], fields["tcpi_rcv_wscale"]) == (7, 8)
    assert fields["tcpi_snd_mss"] == 1448 and fields["tcpi_snd_cwnd"] == 10
    assert fields["tcpi_bytes_acked"] == 1 << 40
    assert fields["tcpi_total_rto_time"] == 5


def test_an_older_kernels_shorter_tcp_info_leaves_the_newer_fields_out() -> None:
    cut = TcpInfo.tcpi_pacing_rate.offset
    fields = parse_tcp_info(bytes(TcpInfo(tcpi_total_retrans=3))[:cut])
    assert fields["tcpi_total_retrans"] == 3
    assert "tcpi_pacing_rate" not in fields and "tcpi_snd_wnd" not in fields
    assert ctypes.sizeof(TcpInfo) > cut


# ------------------------------------------------------------------ shell commands


def test_sysctl_lines_become_namespace_proc_writes(tmp_path: Path) -> None:
    steps = commands.plan('sysctl -q net.ipv4.tcp_rmem="4096 $((64*1024)) 1048576" '
                          "net.ipv4.tcp_sack=0\n"
                          "../common/set_sysctls.py /proc/sys/net/ipv4/tcp_timestamps=0\n"
                          "sysctl -q net.ipv4.tcp_pacing_ca_ratio=1.5", tmp_path)
    assert [(s.kind, s.target, s.value) for s in steps] == [
        ("sysctl", "/proc/sys/net/ipv4/tcp_rmem", "4096 65536 1048576"),
        ("sysctl", "/proc/sys/net/ipv4/tcp_sack", "0"),
        ("sysctl", "/proc/sys/net/ipv4/tcp_timestamps", "0"),
        ("sysctl", "/proc/sys/net/ipv4/tcp_pacing_ca_ratio", "1.5"),
    ]


def test_tools_run_and_restore_scripts_are_noted(tmp_path: Path) -> None:
    steps = commands.plan("tc qdisc add dev tun0 root pfifo\n"
                          "ip tcp_metrics flush all > /dev/null 2>&1\n"
                          "/tmp/sysctl_restore_${PPID}.sh", tmp_path)
    assert [s.kind for s in steps] == ["run", "run", "note"]
    assert steps[1].argv == ("ip", "tcp_metrics", "flush", "all")


def test_nstat_lines_run_whole_and_their_status_judges(tmp_path: Path) -> None:
    line = 'nstat | grep -q "TcpPassiveOpens *1 " # a comment'
    steps = commands.plan(f"nstat -n\n{line}\nip link show > /dev/null || true", tmp_path)
    assert [s.kind for s in steps] == ["check", "check", "run"]
    assert steps[1].argv[-3:] == ("sh", "-c", line)
    assert steps[1].argv[1] == f"NSTAT_HISTORY={commands.nstat_history()}"
    assert commands.run(commands.Step("check", "true", argv=("true",))) is None
    with pytest.raises(commands.CheckFailed, match="'false' exited with status 1"):
        commands.run(commands.Step("check", "false", argv=("false",)))


@pytest.mark.parametrize("line", ["rm -rf /tmp/x", "sysctl -q kernel.panic=1",
                                  "sysctl -q net.ipv4.tcp_sack", "ip route > /tmp/routes",
                                  "ip link | grep tun0"])
def test_commands_that_are_not_namespace_local_skip(line: str, tmp_path: Path) -> None:
    with pytest.raises(Unsupported):
        commands.plan(line, tmp_path)


def test_a_failing_tc_skips_the_script_and_a_missing_program_too() -> None:
    # A read-only tc that fails (no such device), as a qdisc this kernel lacks would.
    failing = commands.Step("run", "tc qdisc show dev nosuchdev",
                            argv=("tc", "qdisc", "show", "dev", "nosuchdev"))
    with pytest.raises(Unsupported, match="needs a qdisc this kernel lacks"):
        commands.run(failing)
    absent = commands.Step("run", "ethtool-x", argv=("no-such-program-ustcp",))
    with pytest.raises(Unsupported, match="not installed"):
        commands.run(absent)


# ------------------------------------------------------------------ system calls


def test_system_calls_the_kernel_target_expresses() -> None:
    def call(name: str, *args: str | int) -> SyscallSpec:
        exprs = tuple(IntExpr(a) if isinstance(a, int) else WordExpr(a) for a in args)
        return SyscallSpec(name, exprs, IntExpr(0))

    assert syscall_reason(call("setsockopt", 3, "SOL_TCP", "TCP_CONGESTION")) is None
    assert syscall_reason(call("epoll_create", 1)) is None
    assert syscall_reason(call("recvmsg", 4)) == "recvmsg without a msghdr"
    assert syscall_reason(call("sendfile", 4, 5)) == "system call sendfile"
    assert syscall_reason(call("setsockopt", 3, "SOL_TCP", "TCP_NO_SUCH")) == \
        "symbol TCP_NO_SUCH"
