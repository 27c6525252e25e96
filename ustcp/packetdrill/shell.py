"""Backtick shell commands of a script, read (never run) and mapped to the stack's config.

``sysctl -q net.ipv4.NAME=VALUE`` and ``set_sysctls.py /proc/sys/net/ipv4/NAME=VALUE`` become
sysctl assignments; ``defaults.sh`` is read line by line the same way. ``ip tcp_metrics flush``
empties the client's Fast Open cache. ``tc qdisc add|replace dev tun0 root KIND`` chooses the
qdisc in front of the engine's output: ``fq`` (without options) is the model in
:mod:`ustcp.qdisc`, which paces TCP; any other kind holds nothing (pfifo). Commands that set up
the host rather than TCP (other ``ip`` and ``tc`` commands, ``ethtool``, the sysctl-restore
cleanup script) are reported and ignored. ``nstat`` (alone or piped into ``grep``) becomes a
check run against the stack's counters when its event comes. Anything else is unsupported:
a script needing it is skipped with that reason.

A line is read as bash would split it: ``#`` comments, lists joined by ``;``, ``&&`` and
``||``, redirections to ``/dev/null`` or to another descriptor (dropped). The exit status of
a command is that of the last list element run, as under ``bash -c``; only the nstat checks
can fail.
"""

from __future__ import annotations

import ast
import itertools
import operator
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Sysctls of Linux features the stack does not have, which a script's profile sets without
# depending on them (the AccECN option, FACK, TSO deferral).
IGNORED_SYSCTLS = frozenset({
    "tcp_ecn_option",
    "tcp_fack", "tcp_tso_win_divisor",
})

# Kernel module parameters with their Linux defaults: writing the default is a no-op.
MODULE_DEFAULTS = {"/sys/module/tcp_cubic/parameters/hystart_detect": "3"}


@dataclass(frozen=True, slots=True)
class NstatCheck:
    """``nstat [-a] [-n] [-s] [-z] [| grep ...]...``: run on the stack's counters."""

    text: str  # the pipeline as written
    absolute: bool = False  # -a: values since boot, not since the last nstat
    update: bool = True  # not -s: remember the values for the next nstat
    output: bool = True  # not -n
    zeros: bool = False  # -z: print counters that are zero too
    greps: tuple[Grep, ...] = ()


@dataclass(frozen=True, slots=True)
class Grep:
    pattern: re.Pattern[str]
    invert: bool = False  # -v


@dataclass(frozen=True, slots=True)
class ListItem:
    """One element of a command list: what joins it to the previous element (``;``,
    ``&&``, ``||``) and, for a check, the check (None: a command that always succeeds)."""

    connector: str
    check: NstatCheck | None = None


@dataclass(slots=True)
class ShellPlan:
    """What a command asks for."""

    sysctls: list[tuple[str, str]] = field(default_factory=list)
    flush_metrics: bool = False  # ip tcp_metrics flush: the client forgets Fast Open cookies
    qdisc: str | None = None  # the root qdisc a `tc qdisc` line installs; None: unchanged
    notes: list[str] = field(default_factory=list)  # ignored lines, reported with -v
    unsupported: list[str] = field(default_factory=list)  # reasons to skip the script
    steps: list[ListItem] = field(default_factory=list)  # for the exit status

    def extend(self, other: ShellPlan) -> None:
        self.sysctls.extend(other.sysctls)
        self.flush_metrics = self.flush_metrics or other.flush_metrics
        if other.qdisc is not None:
            self.qdisc = other.qdisc
        self.notes.extend(other.notes)
        self.unsupported.extend(other.unsupported)
        self.steps.extend(other.steps)

    @property
    def checks(self) -> bool:
        return any(item.check is not None for item in self.steps)


def plan_command(text: str, script_dir: Path) -> ShellPlan:
    plan = ShellPlan()
    for line in logical_lines(text):
        try:
            commands = command_list(line)
        except ValueError as exc:
            plan.unsupported.append(f"shell command {line!r}: {exc}")
            continue
        for connector, pipeline in commands:
            plan.extend(_plan_pipeline(connector, pipeline, line, script_dir))
    return plan


def logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined; comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


Pipeline = list[list[str]]  # the words of each command of a pipeline
_SEPARATORS = (";", "&&", "||")
_REDIRECTIONS = frozenset({">", ">>", "<", ">&", "<&", "&>", "&>>", ">|"})


def command_list(line: str) -> list[tuple[str, Pipeline]]:
    """A line as bash reads a list: ``(connector, pipeline)`` pairs, the first connector
    ``;``. ``$((...))`` is expanded, quotes removed, comments and redirections to
    /dev/null or to a descriptor dropped (a redirection to a file stays, as ``> PATH``).
    Raises ValueError on quoting, arithmetic or operators it cannot read."""
    lexer = shlex.shlex(_expand_arithmetic(line), posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    tokens = list(lexer)
    out: list[tuple[str, Pipeline]] = []
    connector = ";"
    pipeline: Pipeline = [[]]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _SEPARATORS or token == "|":
            if not pipeline[-1]:
                raise ValueError(f"{token!r} without a command before it")
            if token == "|":
                pipeline.append([])
            else:
                out.append((connector, pipeline))
                connector, pipeline = token, [[]]
        elif token in _REDIRECTIONS:
            if i + 1 >= len(tokens):
                raise ValueError(f"redirection {token!r} without a target")
            words = pipeline[-1]
            if len(words) > 1 and words[-1] in ("0", "1", "2") and words[0] != "echo":
                words.pop()  # "2>/dev/null": the descriptor, not an argument
            target = tokens[i + 1]
            if target != "/dev/null" and not (token.endswith("&") and target.isdigit()):
                words.extend((">", target))
            i += 1
        elif set(token) <= set(";&|<>"):
            raise ValueError(f"operator {token!r}")
        else:
            pipeline[-1].append(token)
        i += 1
    if pipeline[-1]:
        out.append((connector, pipeline))
    elif out or len(pipeline) > 1:
        raise ValueError("a list that ends with an operator")
    return out


def command_words(line: str) -> list[str]:
    """The words of a line that is one simple command (see :func:`command_list`)."""
    commands = command_list(line)
    if not commands:
        return []
    if len(commands) > 1 or len(commands[0][1]) > 1:
        raise ValueError("a list or a pipeline where one command was expected")
    return commands[0][1][0]


def _plan_pipeline(connector: str, pipeline: Pipeline, line: str,
                   script_dir: Path) -> ShellPlan:
    if pipeline[0][0].rsplit("/", 1)[-1] == "nstat":
        plan = ShellPlan()
        try:
            text = " | ".join(" ".join(words) for words in pipeline)
            plan.steps.append(ListItem(connector, nstat_check(pipeline, text)))
        except ValueError as exc:
            plan.unsupported.append(f"shell command {line!r}: {exc}")
        return plan
    if len(pipeline) > 1:
        return ShellPlan(unsupported=[f"shell pipeline {line!r}"])
    plan = _plan_words(pipeline[0], line, script_dir)
    plan.steps.insert(0, ListItem(connector))
    return plan


def nstat_check(pipeline: Pipeline, text: str) -> NstatCheck:
    """``nstat`` with the options that pick what it prints, then ``grep`` filters."""
    flags = set()
    for word in pipeline[0][1:]:
        if not re.fullmatch(r"-[ansz]+", word):
            raise ValueError(f"nstat argument {word!r}")
        flags |= set(word[1:])
    greps = tuple(_grep(words) for words in pipeline[1:])
    return NstatCheck(text, absolute="a" in flags, update="s" not in flags,
                      output="n" not in flags, zeros="z" in flags, greps=greps)


def _grep(words: list[str]) -> Grep:
    if words[0] != "grep":
        raise ValueError(f"{words[0]!r} after nstat (only grep)")
    flags: set[str] = set()
    pattern: str | None = None
    args = iter(words[1:])
    for word in args:
        if word == "-e":
            pattern = next(args, None)
        elif word.startswith("-") and len(word) > 1 and pattern is None:
            flags |= set(word[1:])
        elif pattern is None:
            pattern = word
        else:
            raise ValueError("grep reads standard input only")
    if pattern is None or flags - set("qEwvi"):
        raise ValueError(f"grep {' '.join(words[1:])!r}")
    if "E" not in flags:  # a basic regular expression: \( \) \| \+ \? are the operators
        pattern = re.sub(r"\\([()|+?{}])|([()|+?{}])",
                         lambda m: m.group(1) or "\\" + m.group(2), pattern)
    if "w" in flags:
        pattern = rf"(?<!\w)(?:{pattern})(?!\w)"
    return Grep(re.compile(pattern, re.IGNORECASE if "i" in flags else 0), "v" in flags)


def nstat_output(check: NstatCheck, counters: dict[str, int],
                 history: dict[str, int]) -> list[str]:
    """What the check's nstat prints (one line per counter, nstat's layout); ``history``
    holds the values of the last nstat and is updated unless -s."""
    shown = counters if check.absolute else \
        {name: value - history.get(name, 0) for name, value in counters.items()}
    if check.update:
        history.clear()
        history.update(counters)
    if not check.output:
        return []
    return [f"{name:<32}{value:<19}0.0" for name, value in sorted(shown.items())
            if value or check.zeros]


def check_status(check: NstatCheck, counters: dict[str, int],
                 history: dict[str, int]) -> int:
    """The exit status of the pipeline: that of its last grep (0 when a line is left)."""
    lines = nstat_output(check, counters, history)
    if not check.greps:
        return 0
    for grep in check.greps:
        lines = [line for line in lines if bool(grep.pattern.search(line)) != grep.invert]
    return 0 if lines else 1


def _plan_words(words: list[str], line: str, script_dir: Path) -> ShellPlan:
    plan = ShellPlan()
    program = words[0]
    name = program.rsplit("/", 1)[-1]
    if ">" in words and name != "echo":
        plan.unsupported.append(f"shell command {line!r} (writes a file)")
    elif name == "sysctl":
        for arg in words[1:]:
            if not arg.startswith("-"):
                _add_assignment(plan, arg, line)
    elif name == "set_sysctls.py":
        for arg in words[1:]:
            _add_assignment(plan, arg.removeprefix("/proc/sys/"), line)
    elif name == "defaults.sh":
        _plan_defaults(plan, program, script_dir)
    elif name == "echo" and len(words) == 4 and words[2] == ">":
        _plan_module_param(plan, words[3], words[1], line)
    elif name == "ip" and words[1:3] == ["tcp_metrics", "flush"]:
        plan.flush_metrics = True
    elif name == "tc" and _drops_everything(words):
        plan.unsupported.append(f"a local qdisc that drops every packet ({line!r})")
    elif name == "tc" and words[1:2] == ["qdisc"] and words[2:3] in (["add"], ["replace"]) \
            and "root" in words:
        kind = words[words.index("root") + 1:]
        if kind[:1] == ["fq"] and kind[1:]:
            plan.unsupported.append(f"fq options the model lacks ({line!r})")
        plan.qdisc = kind[0] if kind else "pfifo"
        plan.notes.append(f"qdisc {plan.qdisc}: {line}")
    elif name in ("ip", "tc", "ethtool") or re.fullmatch(r"sysctl_restore_.*\.sh", name):
        plan.notes.append(f"ignored: {line}")
    elif name in ("true", ":"):
        pass
    else:
        plan.unsupported.append(f"shell command {line!r}")
    return plan


def _drops_everything(words: list[str]) -> bool:
    return any(a == "limit" and b == "0" for a, b in itertools.pairwise(words))


def _add_assignment(plan: ShellPlan, arg: str, line: str) -> None:
    name, sep, value = arg.partition("=")
    if not sep:
        plan.unsupported.append(f"sysctl read {arg!r} in {line!r}")
        return
    name = name.replace("/", ".").removeprefix("net.ipv4.").removeprefix("net.core.")
    if name in IGNORED_SYSCTLS:
        plan.notes.append(f"ignored sysctl {name}={value} (feature not modelled)")
    else:
        plan.sysctls.append((name, value))


def _plan_defaults(plan: ShellPlan, program: str, script_dir: Path) -> None:
    path = find_defaults(program, script_dir)
    if path is None:
        plan.unsupported.append(f"{program} not found")
        return
    plan.extend(plan_command(path.read_text(), path.parent))


def find_defaults(program: str, script_dir: Path) -> Path | None:
    """``program`` relative to the script; failing that, the nearest ``common/<name>`` in the
    script's folder or a parent (the profile may sit at a different depth than upstream)."""
    direct = (script_dir / program).resolve()
    if direct.is_file():
        return direct
    name = Path(program).name
    for folder in (script_dir, *script_dir.parents):
        candidate = folder / "common" / name
        if candidate.is_file():
            return candidate
    return None


def _plan_module_param(plan: ShellPlan, path: str, value: str, line: str) -> None:
    if MODULE_DEFAULTS.get(path) == value:
        plan.notes.append(f"ignored: {line} (the Linux default)")
    else:
        plan.unsupported.append(f"module parameter {line!r}")


# ------------------------------------------------------------------ $((arithmetic))

_ARITH = re.compile(r"\$\(\(([^()]*(?:\([^()]*\)[^()]*)*)\)\)")
_OPS: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv, ast.Div: operator.floordiv,
    ast.LShift: operator.lshift, ast.RShift: operator.rshift,
}


def _expand_arithmetic(line: str) -> str:
    return _ARITH.sub(lambda m: str(_eval_int(m.group(1))), line)


def _eval_int(expr: str) -> int:
    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise ValueError(f"unsupported arithmetic {expr!r}")
    try:
        return walk(ast.parse(expr.strip(), mode="eval"))
    except SyntaxError as exc:
        raise ValueError(f"bad arithmetic {expr!r}") from exc
