"""A script's backtick commands on the kernel target: run inside the script's namespace.

The engine target reads commands and maps them to its config (``shell.py``); here they act
on the kernel itself, but only on what belongs to the namespace: a sysctl is written to the
namespace's own ``/proc/sys/net`` (a sysctl global to the host is not visible from a child
namespace, so it can never be written by accident), ``ip``, ``tc`` and ``ethtool`` run as
child processes of the namespaced worker. A module parameter is global to the host: it is
accepted when it already has the script's value and skips the script otherwise.

Each command line is planned before the script starts (so a skip leaves nothing half done)
and run when its event comes. As under ``bash -c``, a failing line is reported and the next
runs; only a ``tc`` that fails (a qdisc this kernel lacks) skips the script, since the
script's timing depends on it.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..shell import command_list, find_defaults, logical_lines
from ..symbols import Unsupported

COMMAND_TIMEOUT = 10.0
PROGRAMS = ("ip", "tc", "ethtool")  # namespace-local tools a script may run

Kind = Literal["sysctl", "run", "check", "module", "note"]


class CheckFailed(Exception):
    """A counter check (``nstat | grep``) exited non-zero: the script fails."""


@dataclass(frozen=True, slots=True)
class Step:
    kind: Kind
    target: str  # /proc/sys path, module parameter path, or the command line
    value: str = ""
    argv: tuple[str, ...] = ()


def plan(text: str, script_dir: Path) -> list[Step]:
    """The steps of a command. Raises :class:`Unsupported` for a command we will not run."""
    steps: list[Step] = []
    for line in logical_lines(text):
        steps.extend(_plan_line(line, script_dir))
    return steps


def _plan_line(line: str, script_dir: Path) -> list[Step]:
    try:
        commands = command_list(line)
    except ValueError as exc:
        raise Unsupported(f"shell command {line!r}: {exc}") from exc
    if any(pipeline[0][0].rsplit("/", 1)[-1] == "nstat" for _, pipeline in commands):
        # A counter check: the line runs whole under sh, its status judges the script
        # (nstat reads the namespace's own counters; its history file is this run's).
        history = f"NSTAT_HISTORY={nstat_history()}"
        return [Step("check", line, argv=("env", history, "sh", "-c", line))]
    steps: list[Step] = []
    for _, pipeline in commands:
        if len(pipeline) > 1:
            raise Unsupported(f"shell pipeline {line!r}")
        steps.extend(_plan_words(pipeline[0], line, script_dir))
    return steps


def nstat_history() -> Path:
    """The history file of this process's nstat checks (removed when a script ends)."""
    return Path(f"/tmp/ustcp-nstat-{os.getpid()}")


def _plan_words(words: list[str], line: str, script_dir: Path) -> list[Step]:
    program = words[0]
    name = program.rsplit("/", 1)[-1]
    if name == "sysctl":
        return [_sysctl(_slashed(arg), line) for arg in words[1:] if not arg.startswith("-")]
    if name == "set_sysctls.py":
        return [_sysctl(arg.removeprefix("/proc/sys/"), line) for arg in words[1:]]
    if name == "defaults.sh":
        path = find_defaults(program, script_dir)
        if path is None:
            raise Unsupported(f"{program} not found")
        return plan(path.read_text(), path.parent)
    if name == "echo" and len(words) == 4 and words[2] == ">" and \
            words[3].startswith("/sys/module/"):
        return [Step("module", words[3], words[1])]
    if name in PROGRAMS and ">" not in words:
        return [Step("run", line, argv=tuple(words))]
    if name in ("true", ":"):
        return []
    if re.fullmatch(r"sysctl_restore_.*\.sh", name):
        return [Step("note", f"ignored: {line} (the namespace goes away with its settings)")]
    raise Unsupported(f"shell command {line!r}")


def _sysctl(assignment: str, line: str) -> Step:
    name, sep, value = assignment.partition("=")
    if not sep or not name.startswith("net/"):
        raise Unsupported(f"sysctl {assignment!r} in {line!r} (only net.* assignments)")
    return Step("sysctl", f"/proc/sys/{name}", value)


def run(step: Step) -> str | None:
    """Carry out one step inside the current namespace; returns a note for the log.
    Raises :class:`Unsupported` when the script cannot run as written on this kernel."""
    if step.kind == "note":
        return step.target
    if step.kind == "sysctl":
        path = Path(step.target)
        if not path.exists():  # global to the host, or absent from this kernel
            return f"not applied: {_dotted(step.target)}={step.value} (no such sysctl in " \
                   "this namespace)"
        try:
            path.write_text(step.value + "\n")
        except OSError as exc:
            return f"not applied: {_dotted(step.target)}={step.value} ({exc.strerror})"
        return None
    if step.kind == "module":
        try:
            current = Path(step.target).read_text().strip()
        except OSError as exc:
            raise Unsupported(f"module parameter {step.target}: {exc.strerror}") from exc
        if current != step.value:
            raise Unsupported(f"module parameter {step.target}={step.value} is global to the "
                              f"host (it is {current})")
        return f"module parameter {step.target} is already {current}"
    try:
        done = subprocess.run(step.argv, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, check=False)
    except FileNotFoundError as exc:
        raise Unsupported(f"needs {step.argv[0]}, which is not installed") from exc
    if done.returncode == 0:
        return None
    if step.kind == "check":
        raise CheckFailed(f"shell command {step.target!r} exited with status "
                          f"{done.returncode}")
    error = (done.stderr or done.stdout).strip().splitlines()
    reason = f"{step.target!r} failed: {error[-1] if error else done.returncode}"
    if step.argv[0] == "tc":
        raise Unsupported(f"needs a qdisc this kernel lacks: {reason}")
    return reason


def _slashed(assignment: str) -> str:
    """``net.ipv4.x=v`` as ``net/ipv4/x=v`` (the value keeps its dots)."""
    name, sep, value = assignment.partition("=")
    return name.replace(".", "/") + sep + value


def _dotted(path: str) -> str:
    return path.removeprefix("/proc/sys/").replace("/", ".")
