"""Fixtures for engine tests on virtual time."""

from __future__ import annotations

import pytest

from .harness import Net


@pytest.fixture
def net() -> Net:
    return Net()
