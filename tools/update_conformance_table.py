#!/usr/bin/env python3
"""Rewrite tests/conformance/expected.json from a fresh run of every shared script.

    .venv/bin/python tools/update_conformance_table.py

Prints one line per script (as ``ustcp packetdrill`` does), what changed in the table, and
each script that does not pass with the reason recorded for it (an entry whose outcome
changed loses its reason: write the new one in by hand).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ustcp.packetdrill.scripts import quiet_engine_logs  # noqa: E402
from ustcp.packetdrill.table import load_reasons, load_table, run_suite, write_table  # noqa: E402

ROOT = REPO.parent / "shared" / "conformance"
TABLE = REPO / "tests" / "conformance" / "expected.json"


def main() -> int:
    if not ROOT.is_dir():
        print(f"no scripts: {ROOT} is missing")
        return 2
    old = load_table(TABLE) if TABLE.exists() else {}
    results = {}
    with quiet_engine_logs():
        for key, result in run_suite(ROOT):
            results[key] = result
            print(result.summary())
    write_table(TABLE, results)
    for key, result in sorted(results.items()):
        if old.get(key) != result.status:
            print(f"changed: {key}: {old.get(key, 'absent')} -> {result.status}")
    for key in sorted(set(old) - set(results)):
        print(f"removed: {key}")
    reasons = load_reasons(TABLE)
    for key, result in sorted(results.items()):
        if result.status != "pass":
            print(f"not passing: {key}: {reasons.get(key, 'no reason recorded: add one')}")
    counts = [sum(r.status == s for r in results.values()) for s in ("pass", "fail", "skip")]
    print(f"{counts[0]} passed, {counts[1]} failed, {counts[2]} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
