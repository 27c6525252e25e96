"""Build or check the mypyc-compiled engine in build/mypyc/ (see ustcp/compiled.py).

    .venv/bin/python tools/build_engine.py [--force]   # compile unless the build is fresh
    .venv/bin/python tools/build_engine.py --check     # exit 1 unless it matches the sources

``make compiled`` runs the first; ``make test`` and ``make run`` depend on it.
"""

from __future__ import annotations

import argparse
import os
import sys

# Importing ustcp picks an engine; this tool only builds one: no "stale build" notice.
os.environ["USTCP_ENGINE"] = "pure"

from ustcp.compiled import BUILD_DIR, StaleBuild, build, check_build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="compile even if fresh")
    parser.add_argument("--check", action="store_true", help="only check the build")
    args = parser.parse_args(argv)
    if args.check:
        try:
            check_build()
        except StaleBuild as exc:
            print(f"ustcp: {exc}", file=sys.stderr)
            return 1
        print(f"ustcp: the compiled engine in {BUILD_DIR} matches the sources")
        return 0
    built = build(args.force)
    print(f"ustcp: compiled engine {'built' if built else 'up to date'} in {BUILD_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
