"""Run chosen tests N times, each time in a fresh pytest process, and count what failed.

    sudo .venv/bin/python tools/flake.py [-n N] [--tail LINES] [--stop-after K]
                                         [--pytest-arg ARG ...] NODE_ID...

``make flake TESTS='tests/kernel' N=20`` runs it from the Makefile. A node id is anything
pytest takes: a directory, a file, ``file::test`` or ``file::test[param]``. Each run is one
``python -m pytest`` over all of them (so module fixtures are set up as in CI), with a JUnit
XML report from which every test's outcome is read. Every failure is reported as it happens,
with the tail of its traceback and captured output; at the end one line per test that failed
at least once, and the totals::

    run 3/20: 31 passed, 1 failed in 41.2 s
      FAILED tests/kernel/test_demos.py::test_demo_runs_and_keeps_its_promises[tw-reuse]
        ...the last lines of its report...
    ...
    flake: 19/20 runs green; 639 passed, 1 failed
      1/20  tests/kernel/test_demos.py::test_demo_runs_and_keeps_its_promises[tw-reuse]

The exit status is 0 when every run was green, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 3600.0  # seconds one pytest run may take before it counts as failed


@dataclass
class Outcome:
    """One pytest run: the node ids that passed, and each failure's report."""

    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    seconds: float = 0.0


def _node_id(case: ET.Element) -> str:
    """The pytest node id of a JUnit ``testcase`` (classname ``tests.kernel.test_x``)."""
    classname, name = case.get("classname", ""), case.get("name", "")
    parts = classname.split(".")
    # The module path is the longest prefix of classname that names a file; the rest are
    # test classes.
    for cut in range(len(parts), 0, -1):
        path = Path(*parts[:cut]).with_suffix(".py")
        if (ROOT / path).exists():
            return "::".join([path.as_posix(), *parts[cut:], name])
    return f"{classname}::{name}"


def parse_junit(path: Path) -> Outcome:
    outcome = Outcome()
    for case in ET.parse(path).getroot().iter("testcase"):
        node = _node_id(case)
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            out = case.findtext("system-out") or ""
            err = case.findtext("system-err") or ""
            outcome.failed[node] = "\n".join(
                part for part in (bad.get("message", ""), bad.text or "", out, err) if part)
        elif case.find("skipped") is not None:
            outcome.skipped += 1
        else:
            outcome.passed.append(node)
    return outcome


def run_once(nodes: list[str], extra: list[str]) -> Outcome:
    """One fresh pytest process over ``nodes``."""
    with tempfile.TemporaryDirectory(prefix="ustcp-flake-") as tmp:
        report = Path(tmp) / "junit.xml"
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                f"--junitxml={report}", "-o", "junit_logging=all", *extra, *nodes]
        started = time.monotonic()
        try:
            done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                                  timeout=RUN_TIMEOUT)
            output = done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            output = f"pytest did not finish in {RUN_TIMEOUT:g} s: {exc}"
            done = None
        seconds = time.monotonic() - started
        outcome = parse_junit(report) if report.exists() else Outcome()
        if done is None or (done.returncode not in (0, 1, 5) and not outcome.failed):
            # Collection errors, a crash, a timeout: the whole run failed.
            outcome.failed["(pytest run)"] = output
        outcome.seconds = seconds
        return outcome


def tail(text: str, lines: int) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("nodes", nargs="+", metavar="NODE_ID", help="what pytest should run")
    parser.add_argument("-n", "--runs", type=int, default=20, help="how many runs (20)")
    parser.add_argument("--tail", type=int, default=30, metavar="LINES",
                        help="lines of each failure's report to show (30)")
    parser.add_argument("--stop-after", type=int, default=0, metavar="K",
                        help="stop after K failing runs (0: never)")
    parser.add_argument("--pytest-arg", action="append", default=[], metavar="ARG",
                        help="an extra argument for pytest (repeatable)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("-n must be at least 1")

    fails: collections.Counter[str] = collections.Counter()
    passed = green = failing_runs = 0
    runs = 0
    started = time.monotonic()
    for run in range(1, args.runs + 1):
        outcome = run_once(args.nodes, args.pytest_arg)
        runs = run
        passed += len(outcome.passed)
        fails.update(outcome.failed.keys())
        green += not outcome.failed
        print(f"run {run}/{args.runs}: {len(outcome.passed)} passed, {len(outcome.failed)} "
              f"failed, {outcome.skipped} skipped in {outcome.seconds:.1f} s", flush=True)
        for node, report in outcome.failed.items():
            print(f"  FAILED {node}\n{tail(report, args.tail)}", flush=True)
        if outcome.failed:
            failing_runs += 1
            if args.stop_after and failing_runs >= args.stop_after:
                break
    minutes = (time.monotonic() - started) / 60
    print(f"flake: {green}/{runs} runs green; {passed} passed, {sum(fails.values())} failed "
          f"({minutes:.1f} min)")
    for node, count in fails.most_common():
        print(f"  {count}/{runs}  {node}")
    return 0 if green == runs else 1


if __name__ == "__main__":
    sys.exit(main())
