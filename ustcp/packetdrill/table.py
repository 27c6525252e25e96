"""The conformance table: every shared script with its expected outcome.

``tests/conformance/expected.json`` maps a script's path under ``shared/conformance`` to
``"pass"``, ``"fail"`` or ``"skip"``. The test fails when a script recorded as passing does
not pass; ``tools/update_conformance_table.py`` rewrites the table from a fresh run.
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


def load_table(path: Path) -> dict[str, str]:
    table: dict[str, str] = json.loads(path.read_text())
    return table


def write_table(path: Path, results: dict[str, Result]) -> None:
    table = {key: result.status for key, result in sorted(results.items())}
    path.write_text(json.dumps(table, indent=2) + "\n")
