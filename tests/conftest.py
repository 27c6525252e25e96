"""Test-wide set-up: quiet structured logging unless a test asks for events; tests marked
``pure_only`` skipped on the compiled engine (``make test`` runs them in its pure pass)."""

from __future__ import annotations

import pytest

import ustcp
from ustcp.obs.log import configure_logging

configure_logging("console", level="warning")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if ustcp.ENGINE != "compiled":
        return
    skip = pytest.mark.skip(reason="replaces engine methods: runs on pure Python only "
                            "(USTCP_ENGINE=pure)")
    for item in items:
        if item.get_closest_marker("pure_only"):
            item.add_marker(skip)
