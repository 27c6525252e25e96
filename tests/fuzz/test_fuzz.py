"""The fuzzers at a small budget, as CI runs them (a few seconds each). For longer runs:
``tools/fuzz.py --frames 1000000 --examples 10000``, or set ``USTCP_FUZZ_EXAMPLES`` (the
hypothesis examples per test) and ``USTCP_FUZZ_FRAMES`` for this file."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .engine import SEGMENTS, PairMachine, Spec, run_hostile
from .frames import fuzz_frames

EXAMPLES = int(os.environ.get("USTCP_FUZZ_EXAMPLES", "25"))
FRAMES = int(os.environ.get("USTCP_FUZZ_FRAMES", "20000"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, stateful_step_count=30,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TestPair = PairMachine.TestCase
TestPair.settings = SETTINGS


@SETTINGS
@given(specs=SEGMENTS, sack=st.booleans(), ts=st.booleans())
def test_hostile_segments_never_break_a_connection(specs: list[Spec], sack: bool,
                                                   ts: bool) -> None:
    run_hostile(specs, sack, ts)


def test_mutated_frames_are_each_counted_and_never_raise() -> None:
    report = fuzz_frames(FRAMES, seed=int(os.environ.get("USTCP_FUZZ_SEED", "0")))
    assert report.frames == FRAMES
    assert report.reached_tcp > FRAMES // 10  # the mutations get past the checksums
    assert report.counters["TcpInSegs"] and report.counters["UstcpDropIpBadChecksum"]
