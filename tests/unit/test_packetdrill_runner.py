"""The packetdrill runner on small inline scripts, the shell mapping and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from ustcp.packetdrill.cli import main
from ustcp.packetdrill.parser import parse_script
from ustcp.packetdrill.runner import Result, Runner, run_file
from ustcp.packetdrill.shell import find_defaults, plan_command
from ustcp.tcp.engine import TcpEngine

SERVER = """\
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0 > S. 0:0(0) ack 1 <...>
+.1 < . 1:1(0) ack 1 win 257
+0 accept(3, ..., ...) = 4
"""  # the accept is line 8


def run(text: str, tmp_path: Path | None = None) -> Result:
    return Runner(parse_script(text), tmp_path or Path("."), "inline").run()


def test_handshake_write_and_ack_pass() -> None:
    result = run(SERVER + "+0 write(4, ..., 1000) = 1000\n+0 > P. 1:1001(1000) ack 1\n"
                          "+.1 < . 1:1(0) ack 1001 win 257\n")
    assert result.status == "pass", result.message
    assert any("> S. 0:0(0) ack 1" in line for line in result.log)


def test_wrong_ack_fails_at_its_line_with_expected_and_actual() -> None:
    result = run(SERVER + "+0 write(4, ..., 1000) = 1000\n+0 > P. 1:1001(1000) ack 2\n")
    assert result.status == "fail"
    assert result.line == 10
    assert result.message.startswith("ack: expected 2 actual 1")


def test_result_keeps_what_came_at_each_expected_packet_line() -> None:
    # --target both names what each side sent at the line where they part.
    result = run(SERVER + "+0 write(4, ..., 1000) = 1000\n+0 > P. 1:1001(1000) ack 2\n")
    assert result.sent[6].startswith("> S. 0:0(0) ack 1 win ")
    assert result.sent[10].startswith("> P. 1:1001(1000) ack 1 win ")  # the failing line


def test_segments_aggregate_unless_strict() -> None:
    text = SERVER + "+0 write(4, ..., 3000) = 3000\n+0 > P. 1:3001(3000) ack 1\n"
    assert run(text).status == "pass"
    strict = run("--strict_segments\n" + text)
    assert strict.status == "fail"
    assert "payload: expected 3000 bytes actual 1000 bytes" in strict.message


def test_packet_sent_at_the_wrong_time_is_a_timing_failure() -> None:
    result = run(SERVER + "+0 write(4, ..., 1000) = 1000\n+.5 > P. 1:1001(1000) ack 1\n")
    assert result.status == "fail"
    assert "timing: expected outbound packet at 0.600000 s actual 0.100000 s" in \
        result.message


def test_missing_packet_fails() -> None:
    result = run(SERVER + "+0 > F. 1:1(0) ack 1\n")
    assert result.status == "fail" and result.line == 9
    assert "actual no packet sent" in result.message


def test_system_call_results_and_errno() -> None:
    result = run(SERVER + "+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n"
                          "+0 fcntl(4, F_GETFL) = O_RDWR|O_NONBLOCK\n"
                          "+0 read(4, ..., 100) = -1 EAGAIN (Resource temporarily unavailable)\n"
                          "+0 getsockopt(4, SOL_TCP, TCP_MAXSEG, [1000], [4]) = 0\n"
                          "+0 getsockopt(4, SOL_TCP, TCP_INFO, {tcpi_state=1, tcpi_snd_mss=1000},"
                          " [104]) = 0\n")
    assert result.status == "pass", result.message
    wrong = run(SERVER + "+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n"
                         "+0 read(4, ..., 100) = -1 ECONNRESET\n")
    assert wrong.status == "fail"
    assert wrong.message == "read: expected -1 ECONNRESET actual -1 EAGAIN"


def test_a_script_fd_is_a_name_the_newest_descriptor_takes() -> None:
    """As packetdrill's CHECK_FD: a second accept the script calls 4 while the first 4 is
    still open is 4 (not the kernel's 5); the older one stays open, unnamed (Google's
    fastopen/server/pure-syn-data.pkt does this, and passes on both targets now)."""
    again = ("+0 close(3) = 0\n"
             "+0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
             "+0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0\n"
             "+0 bind(3, ..., ...) = 0\n+0 listen(3, 1) = 0\n"
             "+0 < S 500:500(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>\n"
             "+0 > S. 0:0(0) ack 501 <...>\n+.1 < . 501:501(0) ack 1 win 257\n"
             "+0 accept(3, ..., ...) = 4\n")
    result = run(SERVER + again)
    assert result.status == "pass", result.message


def test_blocking_read_returns_when_data_arrives() -> None:
    result = run(SERVER + "+0...0.050 read(4, ..., 1000) = 1000\n"
                          "+.05 < P. 1:1001(1000) ack 1 win 257\n")
    assert result.status == "pass", result.message
    late = run(SERVER + "+0...0.300 read(4, ..., 1000) = 1000\n"
                        "+.05 < P. 1:1001(1000) ack 1 win 257\n")
    assert late.status == "fail" and late.line == 9
    assert "expected system call return at 0.400000 s actual 0.150000 s" in late.message


def test_blocking_accept_waits_for_the_handshake() -> None:
    result = run("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n"
                 "+0 listen(3, 1) = 0\n+0...0.200 accept(3, ..., ...) = 4\n"
                 "+.1 < S 0:0(0) win 32792 <mss 1000,nop,wscale 7>\n"
                 "+0 > S. 0:0(0) ack 1 <...>\n+.1 < . 1:1(0) ack 1 win 257\n")
    assert result.status == "pass", result.message


def test_code_blocks_see_tcp_info_and_report_failed_asserts() -> None:
    result = run(SERVER + "+0 %{ cwnd = tcpi_snd_cwnd }%\n"
                          "+0 %{ assert tcpi_state == TCP_ESTABLISHED and cwnd == 10 }%\n")
    assert result.status == "pass", result.message
    failed = run(SERVER + "+0 %{ assert tcpi_snd_cwnd == 99, tcpi_snd_cwnd }%\n")
    assert failed.status == "fail" and failed.line == 9
    assert failed.message == "assert: expected tcpi_snd_cwnd == 99 actual tcpi_snd_cwnd=10"


def test_a_code_block_may_end_in_a_line_continuation() -> None:
    """As packetdrill's code.c writes a newline after each block, a last line ending in a
    backslash (Google's tcp-info-rwnd-limited.pkt) continues into nothing."""
    result = run(SERVER + "+0 %{ assert tcpi_snd_cwnd == 10, tcpi_snd_cwnd;\\\n"
                          "      assert tcpi_state == TCP_ESTABLISHED;\\\n}%\n")
    assert result.status == "pass", result.message


def test_unmapped_ts_ecr_is_reported() -> None:
    result = run(SERVER + "+0 < . 1:1(0) ack 1 win 257 <nop,nop,TS val 1 ecr 12345>\n")
    assert result.status == "fail"
    assert "unable to infer live TS ecr for script TS ecr 12345" in result.message


@pytest.mark.parametrize(("line", "reason"), [
    ("+0 setsockopt(3, SOL_TCP, 99, [1], 4) = 0", "socket option SOL_TCP/99"),
    ("+0 send(3, ..., 40, 0x1) = 40", "send flag MSG_OOB"),
    ("+0 `ifconfig tun0 mtu 5060`", "shell command 'ifconfig tun0 mtu 5060'"),
    ("+0 sendfile(3, 4, NULL, 5) = 5", "system call sendfile"),
    ("+0 < (tos 0x4) S 0:0(0) win 100", "IP header fields (tos 0x4)"),
    ("+0 < S.5 0:0(0) win 100", "the AccECN ACE field"),
    ("+0 < S 0:0(0) win 100 <mss 1000,ECN e1b 1>", "the AccECN option"),
    ("+0 `sysctl -a > /tmp/x`", "shell command 'sysctl -a > /tmp/x' (writes a file)"),
    ("+0 `nstat | sort`", "shell command 'nstat | sort'"),
    ("+0 > icmp unreachable", "outbound ICMP packets"),
    ("+0 < icmp unreachable CODE", "bad ICMP code CODE"),
    ("+0 < icmp packet_too_big mtu 1400", "bad ICMP type packet_too_big"),
    ("+0 < icmp unreachable port_unreachable mtu 1400", "an ICMP MTU is only valid for"),
])
def test_missing_features_are_skipped_with_a_reason(line: str, reason: str) -> None:
    result = run(f"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n{line}\n")
    assert result.status == "skip"
    assert result.message.startswith(f"unsupported: {reason}")


@pytest.mark.parametrize(("option", "message"), [
    ("--mss=0", "bad --mss: 0"),
    ("--local_ip=10.0.0", "bad --local_ip: 10.0.0"),
])
def test_bad_option_values_fail(option: str, message: str) -> None:
    result = run(f"{option}\n" + SERVER)
    assert result.status == "fail" and result.message.startswith(message)


def test_an_unknown_ip_version_skips() -> None:
    result = run("--ip_version=ipv5\n" + SERVER)
    assert result.status == "skip" and result.message == "unsupported: --ip_version=ipv5"


def test_address_options_name_the_4_tuple() -> None:
    runner = Runner(parse_script("--local_ip=192.168.7.7\n--remote_ip=192.0.2.9/24\n"
                                 "--gateway_ip=192.168.0.254\n--send_omit_free\n" + SERVER),
                    Path("."), "inline")
    assert runner.run().status == "pass"
    conn = runner.sockets.info_conn
    assert conn is not None
    assert (conn.local_ip, conn.remote_ip) == (bytes([192, 168, 7, 7]), bytes([192, 0, 2, 9]))


def test_mss_option_cuts_outbound_segments_before_matching() -> None:
    text = SERVER + "+0 write(4, ..., 1000) = 1000\n+0 > . 1:401(400) ack 1\n" \
                    "+0 > . 401:801(400) ack 1\n+0 > P. 801:1001(200) ack 1\n"
    assert run("--strict_segments\n--mss=400\n" + text).status == "pass"
    without = run("--strict_segments\n" + text)
    assert without.status == "fail" and "expected 400 bytes actual 1000" in without.message


def test_nstat_checks_read_the_stack_counters() -> None:
    ok = run("`nstat -n`\n" + SERVER + "+0 `nstat | grep -q \"^TcpPassiveOpens *1 \" "
                                        "# one passive open`\n"
             "+0 `nstat | grep TcpPassiveOpens >/dev/null 2>&1 || true`\n")
    assert ok.status == "pass", ok.message
    assert "# $ nstat | grep -q ^TcpPassiveOpens *1 : status 0" in ok.log
    again = run("`nstat -n`\n" + SERVER + "+0 `nstat -s`\n"
                "+0 `nstat | grep -q -E 'TcpPassiveOpens +1 '`\n"
                "+0 `nstat -a | grep -qw TcpActiveOpens`\n")
    assert again.status == "fail" and again.line == 12
    assert again.message == "shell command 'nstat -a | grep -qw TcpActiveOpens' exited " \
                            "with status 1"


def test_active_open_learns_the_isn_from_the_syn() -> None:
    result = run("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
                 "+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n"
                 "+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)\n"
                 "+0 > S 0:0(0) <...>\n"
                 "+.1 < S. 0:0(0) ack 1 win 5792 <mss 1460,nop,wscale 2,nop,nop,sackOK>\n"
                 "+0 > . 1:1(0) ack 1\n+0 write(3, ..., 100) = 100\n"
                 "+0 > P. 1:101(100) ack 1\n")
    assert result.status == "pass", result.message


def test_parse_errors_fail_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.pkt"
    path.write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < . 1:5(1) ack 1 win 1\n")
    result = run_file(path)
    assert result.status == "fail" and result.line == 2
    assert result.message.startswith("parse error: inconsistent TCP sequence numbers")


# ------------------------------------------------------------------ shell commands


def test_defaults_profile_is_read_not_run(tmp_path: Path) -> None:
    common = tmp_path / "common"
    common.mkdir()
    (common / "defaults.sh").write_text(
        "#!/bin/bash\n# comment\nip tcp_metrics flush all > /dev/null 2>&1\n"
        'sysctl -q net.ipv4.tcp_rmem="4096 540000 $((15*1024*1024))"\n'
        "sysctl -q net.ipv4.tcp_early_retrans=4 net.ipv4.tcp_recovery=1\n"
        "sysctl -q net.ipv4.tcp_pacing_ss_ratio=200\ntc qdisc add dev tun0 root pfifo\n")
    script_dir = tmp_path / "suite" / "sub"
    script_dir.mkdir(parents=True)
    assert find_defaults("../common/defaults.sh", script_dir) == common / "defaults.sh"
    plan = plan_command("../common/defaults.sh\n../common/set_sysctls.py "
                        "/proc/sys/net/ipv4/tcp_timestamps=0 \\\n"
                        "   /proc/sys/net/ipv4/tcp_sack=0", script_dir)
    assert plan.sysctls == [("tcp_rmem", "4096 540000 15728640"),
                            ("tcp_early_retrans", "4"), ("tcp_recovery", "1"),
                            ("tcp_pacing_ss_ratio", "200"),
                            ("tcp_timestamps", "0"), ("tcp_sack", "0")]
    assert len(plan.notes) == 1 and not plan.unsupported  # tc; ip tcp_metrics flush is run
    assert plan.flush_metrics


def test_shell_lines_read_as_bash_lists(tmp_path: Path) -> None:
    plan = plan_command("sysctl -q net.ipv4.tcp_sack=0 > /dev/null 2>&1  # not needed\n"
                        "sysctl -q net.ipv4.tcp_dsack=0 && sysctl -q net.ipv4.tcp_ecn=1 "
                        "|| true; ip link set tun0 up 2>/dev/null\n"
                        "sysctl -q net.ipv4.tcp_fack=0 &>/dev/null\n", tmp_path)
    assert plan.sysctls == [("tcp_sack", "0"), ("tcp_dsack", "0"), ("tcp_ecn", "1")]
    assert not plan.unsupported and not plan.checks
    assert [item.connector for item in plan.steps] == [";", ";", "&&", "||", ";", ";"]
    for line in ("sysctl -q a=1 |", "sleep 1 &", "cat < /etc/passwd"):
        assert plan_command(line, tmp_path).unsupported, line


def test_shell_lines_the_runner_cannot_map(tmp_path: Path) -> None:
    assert plan_command("tc qdisc replace dev tun0 root pfifo limit 0", tmp_path).unsupported
    assert plan_command("echo 3 > /sys/module/tcp_cubic/parameters/hystart_detect",
                        tmp_path).notes
    assert plan_command("echo 0 > /sys/module/tcp_cubic/parameters/hystart_detect",
                        tmp_path).unsupported
    assert plan_command("/tmp/sysctl_restore_${PPID}.sh", tmp_path).notes
    assert plan_command("../common/defaults.sh", tmp_path).unsupported


def test_script_sysctls_reach_the_engine_config() -> None:
    result = run("`sysctl -q net.ipv4.tcp_timestamps=0`\n" + SERVER.replace("<...>", "<mss 1460,"
                 "nop,nop,sackOK,nop,wscale 7>"))
    assert result.status == "pass", result.message
    bad = run("`sysctl -q net.ipv4.tcp_no_such_knob=1`\n" + SERVER)
    assert bad.status == "skip" and "tcp_no_such_knob" in bad.message


# ------------------------------------------------------------------ the command line


def test_cli_reports_each_script_and_the_totals(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a_pass.pkt").write_text(SERVER)
    (tmp_path / "b_fail.pkt").write_text(SERVER + "+0 > F. 1:1(0) ack 1\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "c_skip.pkt").write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
                                    "+0 `ifconfig tun0 up`\n")
    assert main([str(tmp_path)]) == 1
    # Other tests may have cached loggers that still print engine events: keep the report.
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith(("PASS ", "FAIL ", "SKIP ")) or line.endswith(" skipped")]
    assert lines[0] == f"PASS {tmp_path / 'a_pass.pkt'}"
    assert lines[1].startswith(f"FAIL {tmp_path / 'b_fail.pkt'}:9 expected > F. 1:1(0) ack 1")
    assert lines[2].startswith(f"SKIP {sub / 'c_skip.pkt'} (unsupported: shell command")
    assert lines[3] == "1 passed, 1 failed, 1 skipped"
    assert main(["-v", str(tmp_path / "a_pass.pkt")]) == 0
    verbose = capsys.readouterr().out
    assert "< S 0:0(0) win 32792" in verbose and "accept(3, ..., ...) = 4" in verbose


def test_absolute_times_must_start_at_zero_and_not_go_back() -> None:
    late_start = run("0.5 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n")
    assert late_start.status == "fail" and "first event should be at time 0" in late_start.message
    backwards = run("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n0.2 bind(3, ..., ...) = 0\n"
                    "0.1 listen(3, 1) = 0\n")
    assert backwards.status == "fail" and backwards.line == 3
    assert "time goes backward" in backwards.message


def test_an_exception_inside_the_engine_fails_only_that_script(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(TcpEngine, "on_segment", broken)
    result = run(SERVER)
    assert result.status == "fail" and result.line == 5
    assert result.message == "internal error: RuntimeError: boom"
    assert any("Traceback" in line for line in result.log)


@pytest.mark.parametrize(("ip_version", "addr_len"), [
    ("ipv4", 4), ("ipv6", 16), ("ipv4-mapped-ipv6", 4)])
def test_ip_version_modes(ip_version: str, addr_len: int) -> None:
    """--ip_version (as the CLI and run_file set it): IPv6 addresses with MTU 1520, as
    Linux's runner sets it, so the SYN-ACK still says MSS 1460; or IPv4 packets from
    AF_INET6 sockets. The same script passes in every mode."""
    text = SERVER.replace("+0 > S. 0:0(0) ack 1 <...>",
                          "+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 7>")
    if ip_version != "ipv4":
        text = text.replace("socket(..., SOCK_STREAM", "socket(AF_INET6, SOCK_STREAM")
    runner = Runner(parse_script(text), Path("."), "inline")
    runner.ip_version = ip_version
    result = runner.run()
    assert result.status == "pass", result.message
    [conn] = runner.engine.connections.values()
    assert len(conn.remote_ip) == addr_len


def test_ip_version_option_in_a_script() -> None:
    runner = Runner(parse_script("--ip_version=ipv6\n" + SERVER), Path("."), "inline")
    assert runner.run().status == "pass"
    [conn] = runner.engine.connections.values()
    assert len(conn.remote_ip) == 16


def test_ipv6_sockets_need_an_ipv6_mode() -> None:
    result = run(SERVER.replace("socket(..., SOCK_STREAM", "socket(AF_INET6, SOCK_STREAM"))
    assert result.status == "skip" and "ip_version" in result.message
