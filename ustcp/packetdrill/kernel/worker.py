"""``python -m ustcp.packetdrill.kernel.worker PATH NAME``: one script on the kernel target,
in a network namespace private to this process; prints the result as one JSON object.

The parent (``target.py``) starts one worker per script and attempt, so every run gets a
fresh namespace, and the namespace dies with the worker whatever happens to it.
``--probe N`` instead measures the runner's timing on this machine (``jitter.py``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cli import quiet_engine_logs
from ..runner import Result, run_file
from .runner import KernelRunner
from .world import enter_private_netns


class _Recording(KernelRunner):
    """Keeps the last runner so its timing samples can be reported with the result."""

    last: KernelRunner | None = None

    def run(self) -> Result:
        _Recording.last = self
        return super().run()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    enter_private_netns()
    if args[:1] == ["--probe"]:
        from .jitter import probe
        print(json.dumps(probe(int(args[1]))))
        return 0
    path, name = Path(args[0]), args[1]
    with quiet_engine_logs():
        result = run_file(path, name, _Recording)
    runner = _Recording.last
    payload = {"result": dataclasses.asdict(result),
               "inject_lateness": runner.inject_lateness if runner is not None else []}
    print(json.dumps(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
