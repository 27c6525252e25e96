"""Tokens of the packetdrill language (google/packetdrill lexer.l), longest match first.

Numbers follow lexer.l: ``-?[0-9]*.[0-9]+`` is a float, ``-?[0-9]+`` an integer and
``0x...`` a hex integer; a run of letters, digits and ``_`` is a word (keywords such as
``ack`` or ``win`` stay words: the parser reads them in context). ``...`` is an ellipsis,
``--name`` an option, ``"..."`` a string, backticks a shell command, ``%{ ... }%`` Python.
``//`` and ``/* */`` are comments. Any other character is a token of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Tok(Enum):
    INT = "integer"
    FLOAT = "float"
    WORD = "word"
    STRING = "string"
    COMMAND = "backquoted command"
    CODE = "code"
    ELLIPSIS = "..."
    OPTION = "option"
    IPV4 = "IPv4 address"
    PUNCT = "character"
    EOF = "end of script"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Tok
    text: str  # the value: digits, word, string contents, punctuation character
    line: int

    def is_punct(self, char: str) -> bool:
        return self.kind is Tok.PUNCT and self.text == char

    def is_word(self, word: str) -> bool:
        return self.kind is Tok.WORD and self.text == word

    def describe(self) -> str:
        if self.kind is Tok.EOF:
            return "end of script"
        return f"{self.kind.value} {self.text!r}"


class LexError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


# Candidates tried at each position; the longest match wins and ties go to the earlier
# pattern, as in flex.
_PATTERNS: tuple[tuple[Tok, re.Pattern[str]], ...] = (
    (Tok.ELLIPSIS, re.compile(r"\.\.\.")),
    (Tok.OPTION, re.compile(r"--[A-Za-z0-9_]+")),
    (Tok.FLOAT, re.compile(r"-?[0-9]*\.[0-9]+")),
    (Tok.INT, re.compile(r"-?[0-9]+")),
    (Tok.INT, re.compile(r"0x[0-9a-fA-F]+")),
    (Tok.WORD, re.compile(r"[A-Za-z0-9_]+")),
    (Tok.IPV4, re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")),
)
_SPACE = re.compile(r"[ \t\r\n]+")
_LINE_COMMENT = re.compile(r"//[^\n]*")
_BLOCK_COMMENT = re.compile(r"/\*(?:[^*]|\*(?!/))*\*/")
_CODE = re.compile(r"%\{((?:[^}]|\}(?!%))*)\}%")
_STRING = re.compile(r'"((?:\\.|[^"])*)"')
_COMMAND = re.compile(r"`((?:\\.|[^`])*)`")


def tokenize(text: str) -> list[Token]:
    """Split a script into tokens; the list ends with an EOF token."""
    tokens: list[Token] = []
    pos = 0
    line = 1
    end = len(text)
    while pos < end:
        m = _SPACE.match(text, pos) or _LINE_COMMENT.match(text, pos) \
            or _BLOCK_COMMENT.match(text, pos)
        if m:
            line += m.group(0).count("\n")
            pos = m.end()
            continue
        token, new_pos = _next_token(text, pos, line)
        tokens.append(token)
        line += text.count("\n", pos, new_pos)
        pos = new_pos
    tokens.append(Token(Tok.EOF, "", line))
    return tokens


def _next_token(text: str, pos: int, line: int) -> tuple[Token, int]:
    char = text[pos]
    if char == "%" and text.startswith("%{", pos):
        m = _CODE.match(text, pos)
        if not m:
            raise LexError(line, "unterminated %{ code block")
        return Token(Tok.CODE, m.group(1).strip(" \t"), line), m.end()
    if char == '"':
        m = _STRING.match(text, pos)
        if not m:
            raise LexError(line, "unterminated string")
        return Token(Tok.STRING, m.group(1), line), m.end()
    if char == "`":
        m = _COMMAND.match(text, pos)
        if not m:
            raise LexError(line, "unterminated backquoted command")
        return Token(Tok.COMMAND, m.group(1), line), m.end()
    best: tuple[Tok, re.Match[str]] | None = None
    for kind, pattern in _PATTERNS:
        m = pattern.match(text, pos)
        if m and (best is None or m.end() > best[1].end()):
            best = (kind, m)
    if best is not None:
        kind, m = best
        value = m.group(0)
        if kind is Tok.OPTION:
            value = value[2:]
        return Token(kind, value, line), m.end()
    return Token(Tok.PUNCT, char, line), pos + 1
