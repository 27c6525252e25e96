"""Backtick shell commands of a script, read (never run) and mapped to the stack's config.

``sysctl -q net.ipv4.NAME=VALUE`` and ``set_sysctls.py /proc/sys/net/ipv4/NAME=VALUE`` become
sysctl assignments; ``defaults.sh`` is read line by line the same way. Commands that set up
the host rather than TCP (``ip tcp_metrics``, ``tc qdisc``, ``ethtool``, the sysctl-restore
cleanup script) are reported and ignored. Anything else is unsupported: a script needing it
is skipped with that reason.
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
# depending on them (pacing and TSO sizing, the AccECN option, the Fast Open key).
IGNORED_SYSCTLS = frozenset({
    "tcp_pacing_ss_ratio", "tcp_pacing_ca_ratio", "tcp_min_tso_segs", "tcp_ecn_option",
    "tcp_fastopen_key", "tcp_fastopen", "tcp_frto", "tcp_fack", "tcp_tso_win_divisor",
    "tcp_notsent_lowat",
})

# Kernel module parameters with their Linux defaults: writing the default is a no-op.
MODULE_DEFAULTS = {"/sys/module/tcp_cubic/parameters/hystart_detect": "3"}


@dataclass(slots=True)
class ShellPlan:
    """What a command asks for."""

    sysctls: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # ignored lines, reported with -v
    unsupported: list[str] = field(default_factory=list)  # reasons to skip the script

    def extend(self, other: ShellPlan) -> None:
        self.sysctls.extend(other.sysctls)
        self.notes.extend(other.notes)
        self.unsupported.extend(other.unsupported)


def plan_command(text: str, script_dir: Path) -> ShellPlan:
    plan = ShellPlan()
    for line in logical_lines(text):
        plan.extend(_plan_line(line, script_dir))
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


def command_words(line: str) -> list[str]:
    """A command line's words: ``$((...))`` expanded, quotes removed, redirections dropped.
    Raises ValueError on quoting or arithmetic it cannot read."""
    return _strip_redirections(shlex.split(_expand_arithmetic(line)))


def _plan_line(line: str, script_dir: Path) -> ShellPlan:
    plan = ShellPlan()
    try:
        words = command_words(line)
    except ValueError as exc:
        plan.unsupported.append(f"shell command {line!r}: {exc}")
        return plan
    if not words:
        return plan
    program = words[0]
    name = program.rsplit("/", 1)[-1]
    if name == "sysctl":
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
    elif name == "tc" and _drops_everything(words):
        plan.unsupported.append(f"a local qdisc that drops every packet ({line!r})")
    elif name in ("ip", "tc", "ethtool") or re.fullmatch(r"sysctl_restore_.*\.sh", name):
        plan.notes.append(f"ignored: {line}")
    else:
        plan.unsupported.append(f"shell command {line!r}")
    return plan


def _drops_everything(words: list[str]) -> bool:
    return any(a == "limit" and b == "0" for a, b in itertools.pairwise(words))


def _strip_redirections(words: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word in (">", "2>", ">>") and out and out[0] != "echo":
            skip = True
            continue
        if re.fullmatch(r"\d?>&\d|\d?>/dev/null", word):
            continue
        out.append(word)
    return out


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
