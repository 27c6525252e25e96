#!/usr/bin/env python3
"""Every shared packetdrill script on the engine, the kernel, or both side by side.

    sudo .venv/bin/python tools/conformance.py [--target both|kernel|engine] [-v]

Runs ``ustcp packetdrill`` on ``../shared/conformance`` (about 2 minutes for both targets:
the kernel runs on real time) and prints its table: per script the kernel's and ustcp's
result, where they part, why a script is skipped, the kernel version, and the runner's
timing on this machine. The exit status is the command's (with ``both``: 0 when the two
agree on every script both ran).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ustcp.packetdrill.cli import main as packetdrill  # noqa: E402

ROOT = REPO.parent / "shared" / "conformance"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("engine", "kernel", "both"), default="both")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if not ROOT.is_dir():
        print(f"no scripts: {ROOT} is missing")
        return 2
    return packetdrill(["--target", args.target, str(ROOT), *(["-v"] if args.verbose else [])])


if __name__ == "__main__":
    sys.exit(main())
