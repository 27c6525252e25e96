"""The conformance table: every shared script with its expected outcome.

``tests/conformance/expected.json`` maps a script's path under ``shared/conformance`` to
``"pass"``, or, for a script that does not pass, to ``{"outcome": "fail" | "skip",
"reason": "why"}``. The test fails when a script recorded as passing does not pass;
``tools/update_conformance_table.py`` rewrites the outcomes from a fresh run and keeps each
recorded reason while its outcome stays the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .runner import Result, run_file
from .scripts import find_scripts


def run_suite(root: Path) -> Iterator[tuple[str, Result]]:
    """(path relative to ``root``, result) of every script under ``root``, sorted."""
    for path in find_scripts([root]):
        key = path.relative_to(root).as_posix()
        yield key, run_file(path, key)


def _entries(path: Path) -> dict[str, str | dict[str, str]]:
    entries: dict[str, str | dict[str, str]] = json.loads(path.read_text())
    return entries


def load_table(path: Path) -> dict[str, str]:
    """Script -> recorded outcome ("pass", "fail" or "skip")."""
    return {key: value if isinstance(value, str) else value["outcome"]
            for key, value in _entries(path).items()}


def load_reasons(path: Path) -> dict[str, str]:
    """Script -> why it does not pass, for the scripts whose entry says."""
    return {key: value["reason"] for key, value in _entries(path).items()
            if not isinstance(value, str) and value.get("reason")}


def write_table(path: Path, results: dict[str, Result]) -> None:
    """Record each script's outcome; a reason stays while its outcome does not change."""
    old = load_table(path) if path.exists() else {}
    reasons = load_reasons(path) if path.exists() else {}
    table: dict[str, str | dict[str, str]] = {}
    for key, result in sorted(results.items()):
        reason = reasons.get(key) if old.get(key) == result.status else None
        table[key] = {"outcome": result.status, "reason": reason} \
            if reason and result.status != "pass" else result.status
    path.write_text(json.dumps(table, indent=2) + "\n")
