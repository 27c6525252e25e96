"""Every packetdrill script under ../shared/conformance against the checked-in table.

A script recorded as ``pass`` must still pass (a regression fails the test), and pass in
packetdrill's two other modes too (``--ip_version=ipv6`` and ``ipv4-mapped-ipv6``), as
Linux's runner runs every script in all three unless the script names its version. A script that
passes but is recorded otherwise, or is not in the table, is reported as a warning: run
``tools/update_conformance_table.py`` to record the progress. Every script recorded as not
passing says why.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ustcp.packetdrill.runner import run_file
from ustcp.packetdrill.scripts import find_scripts, quiet_engine_logs
from ustcp.packetdrill.table import load_reasons, load_table

ROOT = Path(__file__).parents[2].parent / "shared" / "conformance"
TABLE = Path(__file__).with_name("expected.json")
SCRIPTS = sorted(p.relative_to(ROOT).as_posix() for p in find_scripts([ROOT])) \
    if ROOT.is_dir() else []

pytestmark = pytest.mark.skipif(not ROOT.is_dir(), reason="../shared/conformance is missing")


@pytest.fixture(scope="module", autouse=True)
def _quiet() -> Iterator[None]:
    with quiet_engine_logs():
        yield


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_meets_its_recorded_outcome(script: str) -> None:
    expected = load_table(TABLE).get(script)
    result = run_file(ROOT / script, script)
    if expected == "pass":
        assert result.status == "pass", result.summary()
    elif result.status == "pass":
        message = f"newly passing: {script} (recorded as {expected or 'absent'})"
        print(message)
        warnings.warn(message, stacklevel=1)


PASSING = sorted(s for s, outcome in load_table(TABLE).items() if outcome == "pass") \
    if ROOT.is_dir() else []


@pytest.mark.parametrize("ip_version", ["ipv6", "ipv4-mapped-ipv6"])
@pytest.mark.parametrize("script", PASSING)
def test_passing_script_passes_in_the_ipv6_modes(script: str, ip_version: str) -> None:
    result = run_file(ROOT / script, script, ip_version=ip_version)
    assert result.status == "pass", result.summary()


def test_table_lists_only_existing_scripts() -> None:
    stale = sorted(set(load_table(TABLE)) - set(SCRIPTS))
    assert not stale, f"expected.json names scripts that are gone: {stale}"


def test_every_script_not_passing_says_why() -> None:
    table, reasons = load_table(TABLE), load_reasons(TABLE)
    silent = sorted(s for s, outcome in table.items() if outcome != "pass" and s not in reasons)
    assert not silent, f"expected.json: no reason recorded for {silent}"
