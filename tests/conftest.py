"""Test-wide set-up: quiet structured logging unless a test asks for events."""

from __future__ import annotations

from ustcp.obs.log import configure_logging

configure_logging("console", level="warning")
