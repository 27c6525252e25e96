"""Run the fuzzers of tests/fuzz/ longer than CI does, and print what they covered.

Run: ``.venv/bin/python tools/fuzz.py --frames 1000000 --examples 10000 [--seed N]``.

- ``--frames``: mutated real frames through ``IpLayer.on_frame`` (tests/fuzz/frames.py);
  every one must be counted and none may raise;
- ``--examples``: hypothesis examples for each of the two engine fuzzers
  (tests/fuzz/engine.py): the two-engine state machine and the hostile-segment test.

Stops at the first failure with its reproducer (hypothesis prints the shortest sequence of
steps; the frame fuzzer prints the frame in hex and its seed). CI runs the same tests at a
small budget (tests/fuzz/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/fuzz

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from tests.fuzz.engine import SEGMENTS, PairMachine, Spec, run_hostile
from tests.fuzz.frames import fuzz_frames
from ustcp.obs.log import configure_logging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the frame fuzzer")
    parser.add_argument("--steps", type=int, default=50, help="steps per stateful example")
    parser.add_argument("--only", choices=("frames", "pair", "hostile"),
                        help="run one fuzzer (run three at once on three cores)")
    args = parser.parse_args()
    configure_logging(level="error")
    common = settings(max_examples=args.examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))

    if args.frames and args.only in (None, "frames"):
        cpu = time.process_time()
        report = fuzz_frames(args.frames, args.seed)
        print(f"frames: {report.frames} in {report.seconds:.1f} s "
              f"({time.process_time() - cpu:.1f} s CPU), "
              f"{report.reached_tcp} reached TCP, none raised, every one counted", flush=True)
        top = sorted(report.counters.items(), key=lambda kv: -kv[1])[:12]
        print("  " + ", ".join(f"{k}={v}" for k, v in top), flush=True)

    if args.examples and args.only in (None, "pair"):
        start, cpu = time.perf_counter(), time.process_time()
        run_state_machine_as_test(PairMachine, settings=settings(
            common, stateful_step_count=args.steps))
        print(f"pair state machine: {args.examples} examples (up to {args.steps} steps each) in "
              f"{time.perf_counter() - start:.1f} s ({time.process_time() - cpu:.1f} s CPU)",
              flush=True)

    if args.examples and args.only in (None, "hostile"):

        @common
        @given(specs=SEGMENTS, sack=st.booleans(), ts=st.booleans())
        def hostile(specs: list[Spec], sack: bool, ts: bool) -> None:
            run_hostile(specs, sack, ts)

        start, cpu = time.perf_counter(), time.process_time()
        hostile()
        print(f"hostile segments: {args.examples} examples (up to 40 segments each) in "
              f"{time.perf_counter() - start:.1f} s ({time.process_time() - cpu:.1f} s CPU)",
              flush=True)


if __name__ == "__main__":
    main()
