"""``ustcp packetdrill --target kernel|both``: run, print, summarise (kernel version and the
runner's timing on this machine)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..runner import Result, run_file
from ..scripts import find_scripts, quiet_engine_logs
from . import compare
from .jitter import describe
from .known import known_difference
from .target import RETRIES, kernel_release, probe_timing, run_on_kernel, unavailable

PROBE_SAMPLES = 200


def display_names(scripts: list[Path]) -> list[str]:
    """Script paths relative to the folder they all share."""
    if len(scripts) < 2:
        return [str(s) for s in scripts]
    root = os.path.commonpath([s.resolve().parent for s in scripts])
    return [s.resolve().relative_to(root).as_posix() for s in scripts]


def print_log(result: Result, label: str = "") -> None:
    if label:
        print(f"  [{label}]")
    for line in result.log:
        print(f"    {line}")


def main(paths: Sequence[Path], target: str, verbose: bool, retries: int | None,
         definitions: Mapping[str, str] | None = None) -> int:
    reason = unavailable()
    if reason:
        print(f"ustcp packetdrill: {reason}", file=sys.stderr)
        return 1
    scripts = list(find_scripts(paths))
    names = display_names(scripts)
    counts = {"pass": 0, "fail": 0, "skip": 0}
    rows: list[compare.Row] = []
    lateness: list[float] = []
    retried = 0
    with quiet_engine_logs():
        for script, name in zip(scripts, names, strict=True):
            note = known_difference(name)
            # A known difference is not retried: a lucky attempt would only hide it.
            run = run_on_kernel(script, name,
                                0 if note else RETRIES if retries is None else retries,
                                definitions)
            lateness.extend(x * 1e6 for x in run.inject_lateness)
            retried += run.attempts > 1 and run.result.status == "pass"
            kernel = run.result
            counts[kernel.status] += 1
            if target == "kernel":
                again = f" (attempt {run.attempts})" if run.attempts > 1 else ""
                print(kernel.summary() + again + (f"  [known: {note}]" if note and
                                                  kernel.status == "fail" else ""))
                if verbose:
                    print_log(kernel)
            else:
                engine = run_file(script, name, definitions=definitions)
                rows.append(compare.Row(name, kernel, engine, note))
                if verbose:
                    print(f"{name}")
                    print_log(kernel, "kernel")
                    print_log(engine, "ustcp")
            sys.stdout.flush()
    if rows:
        for line in compare.render(rows):
            print(line)
    probe = probe_timing(PROBE_SAMPLES)
    print(f"kernel {kernel_release()}: {counts['pass']} passed, {counts['fail']} failed, "
          f"{counts['skip']} skipped ({retried} scripts passed only on a later attempt)")
    if rows:
        engine_counts = {s: sum(r.engine.status == s for r in rows) for s in counts}
        compared = [r for r in rows if r.compared]
        differ = [r for r in compared if not r.agree]
        print(f"ustcp: {engine_counts['pass']} passed, {engine_counts['fail']} failed, "
              f"{engine_counts['skip']} skipped")
        print(f"agree on {len(compared) - len(differ)} of {len(compared)} scripts run on "
              f"both; {len(differ)} disagree")
    print("timing on this machine: " + describe("injected packet reaches the kernel late by",
                                                lateness))
    print("    " + describe("probe: injected SYN late by", probe.get("inject_late_us", [])))
    print("    " + describe("probe: runner sees the SYN-ACK late by",
                            probe.get("outbound_lag_us", [])))
    if rows:
        return 1 if any(not r.agree for r in rows) else 0
    return 1 if counts["fail"] else 0
