"""Kernel tests: the daemon on a TUN device inside a network namespace each test creates.

The whole folder is skipped unless this is root with /dev/net/tun and a working ``ip netns``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kernel.nsutil import Daemon, daemon, kernel_unavailable, netns


@pytest.fixture(autouse=True)
def _needs_kernel() -> None:
    reason = kernel_unavailable()
    if reason is not None:
        pytest.skip(f"kernel tests: {reason}")


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon with the default apps, shared by a module's tests."""
    if kernel_unavailable() is not None:
        pytest.skip(f"kernel tests: {kernel_unavailable()}")
    log = tmp_path_factory.mktemp("daemon") / "serve.log"
    with netns() as ns, daemon(ns, log) as d:
        yield d


@pytest.fixture
def empty_ns() -> Iterator[str]:
    """A namespace of the test's own, with nothing in it but lo."""
    with netns() as ns:
        yield ns
