"""A hand-written recursive-descent parser for packetdrill scripts.

It follows google/packetdrill's grammar (parser.y): options, an optional init command, timed
events (packets, system calls, shell commands, Python code) and an optional cleanup command.
Constructs of that grammar that the runner cannot use (UDP packets, encapsulation
headers, fuzzing specs, IPv6 addresses) raise :class:`UnsupportedSyntax`, so that a caller can
skip the script with the reason; malformed input raises :class:`ParseError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .ast import (
    BinaryExpr,
    BraceExpr,
    CallExpr,
    CodeSpec,
    Command,
    CommandSpec,
    EllipsisExpr,
    Event,
    EventTime,
    Expr,
    Field,
    IcmpSpec,
    IntExpr,
    ListExpr,
    PacketSpec,
    Script,
    StringExpr,
    StructExpr,
    SyscallSpec,
    TcpOptionSpec,
    TimeKind,
    WordExpr,
)
from .lexer import LexError, Tok, Token, tokenize

FLAG_LETTERS = frozenset("FSRP.EWUA")
# AccECN option fields (RFC 9768 3.2.3): the order of the first one names the option kind.
ACCECN_FIELDS = ("e0b", "ceb", "e1b")
_UNSUPPORTED_PACKET_WORDS = {
    "udp": "UDP packets",
    "ipv4": "encapsulation headers",
    "ipv6": "encapsulation headers",
    "gre": "GRE encapsulation",
    "GREv0": "GRE encapsulation",
    "mpls": "MPLS encapsulation",
}


class ParseError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


class UnsupportedSyntax(ParseError):
    """Valid packetdrill that this interpreter does not implement."""


def parse_file(path: Path, definitions: Mapping[str, str] | None = None) -> Script:
    return parse_script(path.read_text(), definitions)


def parse_script(text: str, definitions: Mapping[str, str] | None = None) -> Script:
    """A script's syntax tree. ``definitions`` are packetdrill's ``-D NAME=VALUE``: a word
    NAME anywhere in the script stands for VALUE's tokens (Google's runner defines
    TFO_COOKIE, the Fast Open cookie the server's key gives the client, this way)."""
    try:
        tokens = tokenize(text)
        if definitions:
            tokens = _substitute(tokens, definitions)
    except LexError as exc:
        raise ParseError(exc.line, exc.message) from exc
    return _Parser(tokens).script()


def _substitute(tokens: list[Token], definitions: Mapping[str, str]) -> list[Token]:
    out: list[Token] = []
    for token in tokens:
        value = definitions.get(token.text) if token.kind is Tok.WORD else None
        if value is None:
            out.append(token)
            continue
        out.extend(Token(t.kind, t.text, token.line) for t in tokenize(value)
                   if t.kind is not Tok.EOF)
    return out


def int_value(text: str) -> int:
    """An integer token's value (decimal, negative, or 0x hex)."""
    return int(text, 16) if text.startswith("0x") else int(text)


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    # ------------------------------------------------------------------ helpers

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind is not Tok.EOF:
            self.pos += 1
        return token

    def error(self, message: str, token: Token | None = None) -> ParseError:
        return ParseError((token or self.tok).line, message)

    def expect_punct(self, char: str) -> Token:
        if not self.tok.is_punct(char):
            raise self.error(f"expected {char!r}, found {self.tok.describe()}")
        return self.advance()

    def expect_word(self, word: str | None = None) -> Token:
        if self.tok.kind is not Tok.WORD or (word is not None and self.tok.text != word):
            raise self.error(f"expected {word or 'a word'}, found {self.tok.describe()}")
        return self.advance()

    def expect_int(self) -> int:
        if self.tok.kind is not Tok.INT:
            raise self.error(f"expected an integer, found {self.tok.describe()}")
        return int_value(self.advance().text)

    def accept_punct(self, char: str) -> bool:
        if self.tok.is_punct(char):
            self.advance()
            return True
        return False

    # ------------------------------------------------------------------ script

    def script(self) -> Script:
        options: list[tuple[str, str | None]] = []
        while self.tok.kind is Tok.OPTION:
            name = self.advance().text
            value: str | None = None
            if self.accept_punct("="):
                value = self.option_value()
            options.append((name, value))
        init = None
        if self.tok.kind is Tok.COMMAND:
            token = self.advance()
            init = Command(token.line, CommandSpec(token.text))
        events: list[Event] = []
        cleanup = None
        while self.tok.kind is not Tok.EOF:
            if self.tok.kind is Tok.COMMAND and self.peek().kind is Tok.EOF and events:
                token = self.advance()
                cleanup = Command(token.line, CommandSpec(token.text))
                break
            events.append(self.event())
        if not events:
            raise self.error("a script needs at least one event")
        return Script(options, init, events, cleanup)

    def option_value(self) -> str:
        """The rest of the option's line up to the next option, as written without spaces
        (``192.0.2.1/24``, ``ipv4-mapped-ipv6``, ``fd3d:fa7b:d17d::0``, ``a=b``)."""
        token = self.advance()
        if token.kind not in (Tok.INT, Tok.FLOAT, Tok.WORD, Tok.STRING, Tok.IPV4):
            raise self.error(f"bad option value {token.describe()}", token)
        value = token.text
        while self.tok.line == token.line and self.tok.kind not in (Tok.OPTION, Tok.EOF,
                                                                      Tok.COMMAND):
            value += self.advance().text
        return value

    # ------------------------------------------------------------------ events

    def event(self) -> Event:
        line = self.tok.line
        when = self.event_time()
        action: PacketSpec | IcmpSpec | SyscallSpec | CommandSpec | CodeSpec
        token = self.tok
        if token.is_punct("<") or token.is_punct(">"):
            action = self.packet()
        elif token.kind is Tok.COMMAND:
            action = CommandSpec(self.advance().text)
        elif token.kind is Tok.CODE:
            action = CodeSpec(self.advance().text)
        elif token.kind is Tok.ELLIPSIS or token.kind is Tok.WORD:
            action = self.syscall()
        else:
            raise self.error(f"expected a packet, system call, command or code, found "
                             f"{token.describe()}")
        outbound = isinstance(action, (PacketSpec, IcmpSpec)) and action.direction == ">"
        if when.kind is TimeKind.ANY and not outbound:
            raise ParseError(line, "event time * can only be used with outbound packets")
        if when.kind in (TimeKind.ABSOLUTE_RANGE, TimeKind.RELATIVE_RANGE):
            if not outbound:
                raise ParseError(line, "event time range can only be used with outbound "
                                       "packets")
            if when.end is not None and when.end < when.start:
                raise ParseError(line, "time range is backwards")
        return Event(line, when, action)

    def time_value(self) -> float:
        token = self.tok
        if token.kind not in (Tok.INT, Tok.FLOAT):
            raise self.error(f"expected a time, found {token.describe()}")
        self.advance()
        value = float(token.text) if token.kind is Tok.FLOAT else float(int_value(token.text))
        if value < 0:
            raise self.error("negative time", token)
        return value

    def event_time(self) -> EventTime:
        if self.accept_punct("*"):
            return EventTime(TimeKind.ANY)
        if self.accept_punct("+"):
            start = self.time_value()
            if self.accept_punct("~"):
                self.expect_punct("+")
                return EventTime(TimeKind.RELATIVE_RANGE, start, self.time_value())
            return EventTime(TimeKind.RELATIVE, start)
        start = self.time_value()
        if self.accept_punct("~"):
            return EventTime(TimeKind.ABSOLUTE_RANGE, start, self.time_value())
        return EventTime(TimeKind.ABSOLUTE, start)

    # ------------------------------------------------------------------ packets

    def packet(self) -> PacketSpec | IcmpSpec:
        direction = self.advance().text
        word = self.tok.text if self.tok.kind is Tok.WORD else ""
        if word in _UNSUPPORTED_PACKET_WORDS:
            raise UnsupportedSyntax(self.tok.line, _UNSUPPORTED_PACKET_WORDS[word])
        ip_info = ""
        if self.tok.is_punct("(") or self.tok.is_punct("["):
            ip_info = self.bracketed_text()
        if self.tok.is_word("icmp"):
            self.advance()
            return self.icmp_packet(direction, ip_info)
        ports = None
        if self.tok.kind is Tok.INT and self.peek().is_punct(">"):
            src = self.expect_int()
            self.expect_punct(">")
            ports = (src, self.expect_int())
        word = self.tok.text if self.tok.kind is Tok.WORD else ""
        if word in _UNSUPPORTED_PACKET_WORDS:
            raise UnsupportedSyntax(self.tok.line, _UNSUPPORTED_PACKET_WORDS[word])
        flags, ace = self.flags()
        start, end, length = self.sequence()
        ack = window = None
        urg = 0
        if self.tok.is_word("ack"):
            self.advance()
            ack = self.expect_int()
        if self.tok.is_word("win"):
            self.advance()
            window = self.expect_int()
        if self.tok.is_word("urg"):
            self.advance()
            urg = self.expect_int()
        options: tuple[TcpOptionSpec, ...] | None = ()
        if self.tok.is_punct("<"):
            options = self.tcp_options()
        if self.tok.is_punct("{"):
            raise UnsupportedSyntax(self.tok.line, "packet fuzzing specs")
        if direction == "<" and window is None:
            raise self.error("inbound packets need a window (win N)")
        if direction == "<" and options is None:
            raise self.error("<...> for TCP options can only be used with outbound packets")
        return PacketSpec(direction, flags, start, end, length, ack, window, urg, options,
                          ip_info, ports, ace)

    def icmp_packet(self, direction: str, ip_info: str) -> IcmpSpec:
        """``icmp TYPE [CODE] [mtu N] [[seq]]`` after the direction and IP info (parser.y
        icmp_packet_spec; echo identifiers and UDP or raw quotes are not supported)."""
        icmp_type = self.expect_word().text
        code = None
        if self.tok.kind is Tok.WORD and self.tok.text not in ("mtu", "id"):
            code = self.advance().text
        mtu = None
        if self.tok.is_word("mtu"):
            self.advance()
            mtu = self.expect_int()
        if self.tok.is_word("id"):
            raise UnsupportedSyntax(self.tok.line, "ICMP echo identifiers")
        seq = length = 0
        if self.accept_punct("["):
            if self.tok.kind is not Tok.INT:
                raise UnsupportedSyntax(self.tok.line, "ICMP quoting a UDP or raw packet")
            seq, _end, length = self.sequence()
            self.expect_punct("]")
        return IcmpSpec(direction, icmp_type, code, mtu, seq, length, ip_info)

    def sequence(self) -> tuple[int, int, int]:
        """``start:end(length)``, the three consistent (parser.y seq)."""
        start = self.expect_int()
        self.expect_punct(":")
        end = self.expect_int()
        self.expect_punct("(")
        length = self.expect_int()
        self.expect_punct(")")
        if end != (start + length) % (1 << 32):
            raise self.error("inconsistent TCP sequence numbers and payload size")
        return start, end, length

    def bracketed_text(self) -> str:
        close = ")" if self.advance().text == "(" else "]"
        words: list[str] = []
        while not self.tok.is_punct(close):
            if self.tok.kind is Tok.EOF:
                raise self.error(f"missing {close!r}")
            words.append(self.advance().text)
        self.advance()
        opening = "(" if close == ")" else "["
        return f"{opening}{' '.join(words)}{close}"

    def flags(self) -> tuple[str, int | None]:
        """The flag letters, and the AccECN ACE field when written as a digit after the
        ACK dot (``S.5``, ``.3``: AE, CWR and ECE as one 3-bit counter, RFC 9768 3.2.2)."""
        token = self.tok
        ace: int | None = None
        if token.is_punct("-"):
            self.advance()
            return "", None
        if token.is_punct("."):
            self.advance()
            text = "."
        elif token.kind is Tok.WORD:
            self.advance()
            text = token.text
            if self.tok.kind is Tok.FLOAT and self.tok.text.startswith("."):
                text += "."
                ace = self.ace_digit(self.advance())
            elif self.accept_punct("."):
                text += "."
        elif token.kind is Tok.FLOAT and token.text.startswith("."):
            self.advance()
            text = "."
            ace = self.ace_digit(token)
        else:
            raise self.error(f"expected TCP flags, found {token.describe()}")
        bad = set(text) - FLAG_LETTERS
        if bad:
            raise ParseError(token.line, f"bad TCP flags {text!r}")
        return text, ace

    @staticmethod
    def ace_digit(token: Token) -> int:
        digits = token.text.removeprefix(".")
        if len(digits) != 1 or not "0" <= digits <= "7":
            raise ParseError(token.line, f"bad AccECN ACE field {token.text!r} (0 to 7)")
        return int(digits)

    def tcp_options(self) -> tuple[TcpOptionSpec, ...] | None:
        self.expect_punct("<")
        if self.tok.kind is Tok.ELLIPSIS:
            self.advance()
            self.expect_punct(">")
            return None
        options = [self.tcp_option()]
        while self.accept_punct(","):
            options.append(self.tcp_option())
        self.expect_punct(">")
        return tuple(options)

    def tcp_option(self) -> TcpOptionSpec:
        token = self.expect_word()
        name = token.text
        if name in ("nop", "eol", "sackOK"):
            return TcpOptionSpec(name)
        if name == "mss":
            value = self.expect_int()
            if not 0 <= value <= 0xFFFF:
                raise ParseError(token.line, "mss value out of range")
            return TcpOptionSpec(name, (value,))
        if name == "wscale":
            value = self.expect_int()
            if not 0 <= value <= 0xFF:
                raise ParseError(token.line, "window scale shift count out of range")
            return TcpOptionSpec(name, (value,))
        if name == "sack":
            blocks: list[int] = []
            while self.tok.kind is Tok.INT:
                blocks.append(self.expect_int())
                self.expect_punct(":")
                blocks.append(self.expect_int())
            if not blocks:
                raise ParseError(token.line, "sack needs at least one block")
            return TcpOptionSpec(name, tuple(blocks))
        if name == "TS":
            self.expect_word("val")
            val = self.expect_int()
            self.expect_word("ecr")
            return TcpOptionSpec(name, (val, self.expect_int()))
        if name == "ECN":
            return self.accecn_option(token)
        if name in ("FO", "FOEXP", "md5"):
            blob = ""
            if self.tok.kind in (Tok.WORD, Tok.INT):
                blob = self.advance().text
            return TcpOptionSpec(name, (), blob)
        # packetdrill knows options this runner does not (MPTCP, experimental kinds).
        raise UnsupportedSyntax(token.line, f"TCP option {name!r}")

    def accecn_option(self, token: Token) -> TcpOptionSpec:
        """``ECN [e0b N] [ceb N] [e1b N]``: the AccECN option (RFC 9768 3.2.3), its byte
        counters in the order written; starting with e1b makes it AccECN1 (kind 174)."""
        names: list[str] = []
        values: list[int] = []
        while self.tok.kind is Tok.WORD and self.tok.text in ACCECN_FIELDS:
            names.append(self.advance().text)
            value = self.expect_int()
            if not 0 <= value < 1 << 24:
                raise ParseError(token.line, "AccECN counter out of range (24 bits)")
            values.append(value)
        order = ACCECN_FIELDS[::-1] if names[:1] == ["e1b"] else ACCECN_FIELDS
        if names != list(order[:len(names)]):
            raise ParseError(token.line, f"AccECN fields out of order: {' '.join(names)} "
                                         f"(expected {' '.join(order)})")
        return TcpOptionSpec("ECN", tuple(values), " ".join(names))

    # ------------------------------------------------------------------ system calls

    def syscall(self) -> SyscallSpec:
        end_time = None
        if self.tok.kind is Tok.ELLIPSIS:
            self.advance()
            end_time = self.time_value()
        name = self.expect_word().text
        self.expect_punct("(")
        args: list[Expr] = []
        if not self.tok.is_punct(")"):
            args = self.expression_list()
        self.expect_punct(")")
        self.expect_punct("=")
        result = self.expression()
        errno_name = note = None
        if self.tok.kind is Tok.WORD:
            errno_name = self.advance().text
        if self.tok.is_punct("("):
            note = self.bracketed_text()[1:-1]
        return SyscallSpec(name, tuple(args), result, errno_name, note, end_time)

    def expression_list(self) -> list[Expr]:
        items = [self.expression()]
        while self.accept_punct(","):
            items.append(self.expression())
        return items

    def expression(self) -> Expr:
        expr = self.primary()
        while self.accept_punct("|"):
            expr = BinaryExpr("|", expr, self.primary())
        return expr

    def primary(self) -> Expr:
        token = self.tok
        if token.kind is Tok.ELLIPSIS:
            self.advance()
            return EllipsisExpr()
        if token.kind is Tok.INT:
            self.advance()
            return IntExpr(int_value(token.text))
        if token.kind is Tok.STRING:
            text = ""
            while self.tok.kind is Tok.STRING:
                text += self.advance().text
            if self.tok.kind is Tok.ELLIPSIS:
                self.advance()
            return StringExpr(text)
        if token.kind is Tok.WORD:
            self.advance()
            if self.tok.is_punct("("):
                return CallExpr(token.text, tuple(self.call_args()))
            return WordExpr(token.text)
        if token.is_punct("["):
            self.advance()
            items: list[Expr] = []
            if not self.tok.is_punct("]"):
                items = self.expression_list()
            self.expect_punct("]")
            return ListExpr(tuple(items))
        if token.is_punct("{"):
            return self.brace()
        raise self.error(f"expected an expression, found {token.describe()}")

    def call_args(self) -> list[Expr]:
        self.expect_punct("(")
        args: list[Expr] = []
        if not self.tok.is_punct(")"):
            args = self.expression_list()
        self.expect_punct(")")
        return args

    def brace(self) -> Expr:
        self.expect_punct("{")
        fields: list[Field] = []
        items: list[Expr] = []
        while not self.tok.is_punct("}"):
            if self.tok.kind is Tok.WORD and (self.peek().is_punct("=")
                                              or self.peek().is_punct("(")):
                name = self.advance().text
                arg: Expr | None = None
                if self.tok.is_punct("("):
                    call = self.call_args()
                    if not self.tok.is_punct("="):
                        items.append(CallExpr(name, tuple(call)))
                        if not self.accept_punct(","):
                            break
                        continue
                    arg = call[0] if call else EllipsisExpr()
                self.expect_punct("=")
                fields.append(Field(name, self.expression(), arg))
            else:
                items.append(self.expression())
            if not self.accept_punct(","):
                break
        self.expect_punct("}")
        if fields and items:
            raise self.error("mixed named and positional struct members")
        if fields:
            return StructExpr(tuple(fields))
        return BraceExpr(tuple(items))
