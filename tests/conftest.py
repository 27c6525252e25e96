"""Test-wide set-up: quiet structured logging unless a test asks for events; SIGINT heard;
tests marked ``pure_only`` skipped on the compiled engine (``make test`` runs them in its
pure pass)."""

from __future__ import annotations

import signal

import pytest

import ustcp
from ustcp.obs.log import configure_logging

configure_logging("console", level="warning")

# A shell without job control starts background commands (`make test &`, nohup ... &) with
# SIGINT ignored, and every program a test starts inherits that: the Python API examples,
# stopped with SIGINT as a user stops them with Ctrl-C, then never left (tools/flake.py run
# in the background failed test_echo_server_and_quiet_logging every time). Python's own
# handler here makes the children start with SIGINT at its default again.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if ustcp.ENGINE != "compiled":
        return
    skip = pytest.mark.skip(reason="replaces engine methods: runs on pure Python only "
                            "(USTCP_ENGINE=pure)")
    for item in items:
        if item.get_closest_marker("pure_only"):
            item.add_marker(skip)
