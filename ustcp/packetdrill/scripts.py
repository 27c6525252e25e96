"""Finding scripts and quieting the engine while they run: shared by the command
(``cli.py``), the kernel target's report (``kernel/report.py``), the conformance table
(``table.py``) and the conformance tests, below all of them so that none imports another's
entry point."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import structlog


@contextmanager
def quiet_engine_logs() -> Iterator[None]:
    """The engine's debug events would drown the report (-v shows the exchange instead);
    the previous structlog configuration comes back afterwards."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        yield
    finally:
        structlog.configure(**saved)


def find_scripts(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(path.rglob("*.pkt"))
        else:
            yield path
