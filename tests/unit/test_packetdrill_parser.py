"""The packetdrill lexer and parser: each construct of the grammar, and every shared script."""

from __future__ import annotations

from pathlib import Path

import pytest

from ustcp.packetdrill.ast import (
    BinaryExpr,
    BraceExpr,
    CallExpr,
    CodeSpec,
    CommandSpec,
    EllipsisExpr,
    Event,
    IcmpSpec,
    IntExpr,
    ListExpr,
    PacketSpec,
    StringExpr,
    StructExpr,
    SyscallSpec,
    TcpOptionSpec,
    TimeKind,
    WordExpr,
)
from ustcp.packetdrill.lexer import Tok, tokenize
from ustcp.packetdrill.parser import ParseError, UnsupportedSyntax, parse_file, parse_script

CONFORMANCE = Path(__file__).parents[2].parent / "shared" / "conformance"


def one_event(line: str) -> Event:
    script = parse_script(f"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n{line}\n")
    return script.events[1]


def packet(line: str) -> PacketSpec:
    action = one_event(line).action
    assert isinstance(action, PacketSpec)
    return action


def syscall(line: str) -> SyscallSpec:
    action = one_event(line).action
    assert isinstance(action, SyscallSpec)
    return action


# ------------------------------------------------------------------ lexer


def test_lexer_numbers_follow_longest_match() -> None:
    kinds = [(t.kind, t.text) for t in tokenize("+0...0.200 .5 -1 0x7fff 1:1001 192.0.2.1")]
    assert kinds == [
        (Tok.PUNCT, "+"), (Tok.INT, "0"), (Tok.ELLIPSIS, "..."), (Tok.FLOAT, "0.200"),
        (Tok.FLOAT, ".5"), (Tok.INT, "-1"), (Tok.INT, "0x7fff"), (Tok.INT, "1"),
        (Tok.PUNCT, ":"), (Tok.INT, "1001"), (Tok.IPV4, "192.0.2.1"), (Tok.EOF, ""),
    ]


def test_lexer_comments_strings_commands_code_and_lines() -> None:
    text = ('--tolerance_usecs=1000 // comment\n/* block\ncomment */ "a\\"b" `sysctl -q x=1`\n'
            "%{ assert x == 1 }% word")
    tokens = tokenize(text)
    assert [(t.kind, t.text, t.line) for t in tokens] == [
        (Tok.OPTION, "tolerance_usecs", 1), (Tok.PUNCT, "=", 1), (Tok.INT, "1000", 1),
        (Tok.STRING, 'a\\"b', 3), (Tok.COMMAND, "sysctl -q x=1", 3),
        (Tok.CODE, "assert x == 1", 4), (Tok.WORD, "word", 4), (Tok.EOF, "", 4),
    ]


# ------------------------------------------------------------------ script structure


def test_options_init_and_cleanup_commands() -> None:
    script = parse_script("--tolerance_usecs=10000\n--strict_segments\n`../common/defaults.sh`\n"
                          "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n`/tmp/restore.sh`\n")
    assert script.options == [("tolerance_usecs", "10000"), ("strict_segments", None)]
    assert script.init_command is not None
    assert script.init_command.spec.text == "../common/defaults.sh"
    assert script.init_command.line == 3
    assert script.cleanup_command is not None and script.cleanup_command.line == 5
    assert len(script.events) == 1 and script.events[0].line == 4


def test_timed_command_and_code_events() -> None:
    script = parse_script("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
                          "+0 `tc qdisc show`\n+.1 %{\nassert tcpi_state == 1\n}%\n")
    command, code = script.events[1].action, script.events[2].action
    assert command == CommandSpec("tc qdisc show")
    assert isinstance(code, CodeSpec) and "assert tcpi_state == 1" in code.text


@pytest.mark.parametrize(("text", "kind", "start", "end"), [
    ("0.1 > . 1:1(0) ack 1", TimeKind.ABSOLUTE, 0.1, None),
    ("+.1 > . 1:1(0) ack 1", TimeKind.RELATIVE, 0.1, None),
    ("* > . 1:1(0) ack 1", TimeKind.ANY, 0.0, None),
    ("0.3~0.4 > . 1:1(0) ack 1", TimeKind.ABSOLUTE_RANGE, 0.3, 0.4),
    ("+.3~+.303 > . 1:1(0) ack 1", TimeKind.RELATIVE_RANGE, 0.3, 0.303),
    ("+2 > . 1:1(0) ack 1", TimeKind.RELATIVE, 2.0, None),
])
def test_event_times(text: str, kind: TimeKind, start: float, end: float | None) -> None:
    event = one_event(text)
    assert event.time.kind is kind
    assert event.time.start == pytest.approx(start)
    assert event.time.end == (pytest.approx(end) if end is not None else None)


def test_blocking_syscall_end_time() -> None:
    call = syscall("+.1...0.200 connect(3, ..., ...) = 0")
    assert call.end_time == pytest.approx(0.2)
    assert syscall("+0...0.000 read(4, ..., 1000) = 1000").end_time == 0.0


@pytest.mark.parametrize("text", [
    "* < . 1:1(0) ack 1 win 100",
    "+.1~+.2 write(3, ..., 1) = 1",
    "0.1~0.2 < . 1:1(0) ack 1 win 100",
])
def test_star_and_ranges_only_for_outbound_packets(text: str) -> None:
    with pytest.raises(ParseError):
        one_event(text)


# ------------------------------------------------------------------ packets


def test_inbound_syn_with_options() -> None:
    spec = packet("+0 < S 0:0(0) win 32792 <mss 1460,sackOK,nop,nop,nop,wscale 7>")
    assert spec.direction == "<" and spec.flags == "S"
    assert (spec.start_seq, spec.end_seq, spec.payload_len) == (0, 0, 0)
    assert spec.window == 32792 and spec.ack is None
    assert spec.options == (TcpOptionSpec("mss", (1460,)), TcpOptionSpec("sackOK"),
                            TcpOptionSpec("nop"), TcpOptionSpec("nop"), TcpOptionSpec("nop"),
                            TcpOptionSpec("wscale", (7,)))


@pytest.mark.parametrize(("text", "flags"), [
    ("> S. 0:0(0) ack 1", "S."), ("> . 1:1(0) ack 1", "."), ("> FP. 1:11(10) ack 1", "FP."),
    ("> R 1:1(0)", "R"), ("< - 1:1001(1000) win 20000", ""), ("> P. 1:2(1) ack 1", "P."),
])
def test_flags(text: str, flags: str) -> None:
    assert packet(f"+0 {text}").flags == flags


def test_outbound_data_ack_window_and_wildcard_options() -> None:
    spec = packet("+0 > P. 1:10001(10000) ack 1 win 257 <...>")
    assert (spec.start_seq, spec.end_seq, spec.payload_len) == (1, 10001, 10000)
    assert spec.ack == 1 and spec.window == 257 and spec.options is None
    assert packet("+0 > . 1:1(0) ack 1").options == ()


def test_timestamp_sack_and_eol_options() -> None:
    spec = packet("+0 < . 1:1(0) ack 1 win 257 <nop,nop,TS val 200 ecr 100,"
                  "sack 1001:2001 3001:4001,eol>")
    assert spec.options == (TcpOptionSpec("nop"), TcpOptionSpec("nop"),
                            TcpOptionSpec("TS", (200, 100)),
                            TcpOptionSpec("sack", (1001, 2001, 3001, 4001)),
                            TcpOptionSpec("eol"))


def test_fast_open_option_parses_with_cookie() -> None:
    spec = packet("+0 < S. 123:123(0) ack 1 win 14600 <mss 1460,FO abcd1234,nop,nop>")
    assert spec.options is not None and spec.options[1] == TcpOptionSpec("FO", (), "abcd1234")


def test_accecn_ace_digit_and_option_parse() -> None:
    spec = packet("+0 < S.5 0:0(0) ack 1 win 100 <mss 1460,ECN e1b 1 ceb 2 e0b 3,nop>")
    assert (spec.flags, spec.ace) == ("S.", 5)
    assert spec.options is not None
    assert spec.options[1] == TcpOptionSpec("ECN", (1, 2, 3), "e1b ceb e0b")
    assert packet("+0 > .3 1:1(0) ack 1").ace == 3
    assert packet("+0 > SEWA 0:0(0) <ECN>").flags == "SEWA"
    assert packet("+0 > S. 0:0(0) ack 1").ace is None


def test_option_values_run_to_the_end_of_their_line() -> None:
    script = parse_script("--remote_ip=192.0.2.1/24\n--ip_version=ipv4-mapped-ipv6 "
                          "--mss=1000\n--local_ip=fd3d:fa7b:d17d::0\n--send_omit_free\n"
                          "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n")
    assert script.options == [("remote_ip", "192.0.2.1/24"),
                              ("ip_version", "ipv4-mapped-ipv6"), ("mss", "1000"),
                              ("local_ip", "fd3d:fa7b:d17d::0"), ("send_omit_free", None)]


def test_ip_info_is_kept_for_the_runner_to_judge() -> None:
    assert packet("+0 > [ect0] . 1:1(0) ack 1").ip_info == "[ect0]"
    assert packet("+0 < (tos 0x4) . 1:1(0) ack 1 win 1").ip_info == "(tos 0x4)"


def test_icmp_lines_keep_type_code_mtu_and_the_quoted_segment() -> None:
    action = one_event("+.01 < icmp unreachable frag_needed mtu 1200 [1:1461(1460)]").action
    assert action == IcmpSpec("<", "unreachable", "frag_needed", 1200, 1, 1460)
    bare = one_event("+0 < icmp unreachable").action
    assert bare == IcmpSpec("<", "unreachable", None, None, 0, 0)
    assert one_event("+0 < icmp packet_too_big mtu 1400").action == \
        IcmpSpec("<", "packet_too_big", None, 1400, 0, 0)
    with pytest.raises(ParseError, match="inconsistent"):
        one_event("+0 < icmp unreachable [1:10(5)]")


@pytest.mark.parametrize("text", [
    "+0 < udp (100)",
    "+0 < icmp echo_reply id 5",
    "+0 < icmp unreachable port_unreachable [udp (10)]",
    "+0 < . 1:1(0) ack 1 win 100 {mut tcp mss}",
    "+0 > . 1:1(0) ack 1 <mpcapable v1 flags 0>",
])
def test_unsupported_packet_syntax(text: str) -> None:
    with pytest.raises(UnsupportedSyntax):
        one_event(text)


@pytest.mark.parametrize(("text", "message"), [
    ("+0 < . 1:10(5) ack 1 win 100", "inconsistent"),
    ("+0 < . 1:1(0) ack 1", "window"),
    ("+0 < . 1:1(0) ack 1 win 1 <...>", "outbound"),
    ("+0 > S.8 0:0(0) ack 1", "bad AccECN ACE field"),
    ("+0 > S. 0:0(0) ack 1 <ECN ceb 1 e0b 2>", "AccECN fields out of order"),
    ("+0 > X 1:1(0)", "bad TCP flags"),
])
def test_packet_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        one_event(text)


# ------------------------------------------------------------------ system calls


def test_syscall_arguments_and_errno() -> None:
    call = syscall("+0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0")
    assert call.args == (IntExpr(4), WordExpr("F_SETFL"),
                         BinaryExpr("|", WordExpr("O_RDWR"), WordExpr("O_NONBLOCK")))
    call = syscall("+0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)")
    assert call.args[1] == EllipsisExpr() and call.result == IntExpr(-1)
    assert call.errno == "EINPROGRESS" and call.note == "Operation now in progress"


def test_pointer_and_struct_arguments() -> None:
    call = syscall("+0 setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0")
    linger = call.args[3]
    assert isinstance(linger, StructExpr)
    assert linger.get("onoff") is not None and linger.get("linger") is not None
    assert syscall("+0 getsockopt(4, SOL_TCP, TCP_MAXSEG, [1100], [4]) = 0").args[3] == \
        ListExpr((IntExpr(1100),))


def test_msghdr_with_iovecs() -> None:
    call = syscall("+0 sendmsg(4, {msg_name(...)=..., msg_iov(2)=[{..., 40}, {..., 20}], "
                   "msg_flags=0}, MSG_MORE) = 60")
    msg = call.args[1]
    assert isinstance(msg, StructExpr)
    iov = msg.get("msg_iov")
    assert iov is not None and iov.arg == IntExpr(2)
    assert iov.value == ListExpr((BraceExpr((EllipsisExpr(), IntExpr(40))),
                                  BraceExpr((EllipsisExpr(), IntExpr(20)))))
    name = msg.get("msg_name")
    assert name is not None and name.arg == EllipsisExpr()


def test_calls_strings_and_sockaddr() -> None:
    call = syscall('+0 connect(3, {sa_family=AF_INET, sin_port=htons(8080), '
                   'sin_addr=inet_addr("192.0.2.1")}, 16) = 0')
    addr = call.args[1]
    assert isinstance(addr, StructExpr)
    port = addr.get("sin_port")
    assert port is not None and port.value == CallExpr("htons", (IntExpr(8080),))
    ip = addr.get("sin_addr")
    assert ip is not None and ip.value == CallExpr("inet_addr", (StringExpr("192.0.2.1"),))


def test_poll_struct_and_empty_args() -> None:
    call = syscall("+0 poll([{fd=4, events=POLLIN, revents=POLLIN}], 1, 0) = 1")
    fds = call.args[0]
    assert isinstance(fds, ListExpr) and isinstance(fds.items[0], StructExpr)
    assert syscall("+0 getpid() = ...").args == ()


# ------------------------------------------------------------------ the shared scripts


def shared_scripts() -> list[Path]:
    if not CONFORMANCE.is_dir():
        return []
    return sorted(CONFORMANCE.rglob("*.pkt"))


@pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="../shared/conformance is missing")
@pytest.mark.parametrize("path", shared_scripts(), ids=lambda p: p.name)
def test_every_shared_script_parses_or_reports_a_reason(path: Path) -> None:
    try:
        script = parse_file(path)
    except UnsupportedSyntax as exc:
        assert exc.message
        return
    assert script.events


def test_definitions_stand_for_their_value() -> None:
    """packetdrill's -D NAME=VALUE: the word NAME takes VALUE's place wherever it stands
    (the Fast Open cookie of Google's server scripts); other words are left alone."""
    text = ("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
            "+0 < S 0:10(10) win 32792 <mss 1460,sackOK,nop,nop,FOEXP TFO_COOKIE>\n")
    for definitions, cookie in (({}, "TFO_COOKIE"),  # undefined: the word itself
                                ({"TFO_COOKIE": "3021b9d889017eeb", "UNUSED": "1"},
                                 "3021b9d889017eeb")):
        spec = parse_script(text, definitions).events[1].action
        assert isinstance(spec, PacketSpec) and spec.options is not None
        assert spec.options[-1] == TcpOptionSpec("FOEXP", (), cookie)
