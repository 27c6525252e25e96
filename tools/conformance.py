#!/usr/bin/env python3
"""Every shared packetdrill script on the engine, the kernel, or both side by side.

    sudo .venv/bin/python tools/conformance.py [--target both|kernel|engine] [-v]

Runs ``ustcp packetdrill`` on ``../shared/conformance`` (about 2 minutes for both targets:
the kernel runs on real time) and prints its table: per script the kernel's and ustcp's
result, where they part, why a script is skipped, the kernel version, and the runner's
timing on this machine, then why each script recorded as not passing in
``tests/conformance/expected.json`` does not. The exit status is the command's (with
``both``: 0 when the two agree on every script both ran).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ustcp.packetdrill.cli import main as packetdrill  # noqa: E402
from ustcp.packetdrill.table import load_reasons, load_table  # noqa: E402

ROOT = REPO.parent / "shared" / "conformance"
TABLE = REPO / "tests" / "conformance" / "expected.json"


def print_reasons() -> None:
    """The recorded outcome and reason of every script the table says does not pass."""
    outcomes, reasons = load_table(TABLE), load_reasons(TABLE)
    rows = sorted(key for key, outcome in outcomes.items() if outcome != "pass")
    if rows:
        print(f"recorded in {TABLE.relative_to(REPO)}: {len(rows)} not passing")
    for key in rows:
        print(f"  {key}: {outcomes[key]}: {reasons.get(key, '(no reason recorded)')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("engine", "kernel", "both"), default="both")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if not ROOT.is_dir():
        print(f"no scripts: {ROOT} is missing")
        return 2
    status = packetdrill(["--target", args.target, str(ROOT), *(["-v"] if args.verbose else [])])
    print_reasons()
    return status


if __name__ == "__main__":
    sys.exit(main())
