"""One kernel-target run in a child process with a network namespace of its own.

``in_child(job)`` forks; the child calls ``unshare(CLONE_NEWNET)`` before anything else,
runs the job (a script, or the timing probe) and sends its result back as JSON over a
pipe, then exits. So every run gets a fresh namespace, and the namespace dies with the
child whatever happens to it (end of script, failure, Ctrl-C, kill); forking also spares
each run the interpreter's start-up. The caller is single-threaded (the engine target and
the report loop run no threads), which makes fork safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..runner import Result, run_file
from .runner import KernelRunner
from .world import enter_private_netns

Job = Callable[[], dict[str, object]]


class _Recording(KernelRunner):
    """Keeps the last runner so its timing samples can be reported with the result."""

    last: KernelRunner | None = None

    def run(self) -> Result:
        _Recording.last = self
        return super().run()


def script_job(path: Path, name: str, definitions: Mapping[str, str] | None = None) -> Job:
    def job() -> dict[str, object]:
        result = run_file(path, name, _Recording, definitions=definitions)
        runner = _Recording.last
        return {"result": dataclasses.asdict(result),
                "inject_lateness": runner.inject_lateness if runner is not None else []}
    return job


def in_child(job: Job, timeout: float) -> dict[str, object]:
    """Run ``job`` in a forked child inside a new namespace; its JSON-able answer."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            os.close(read_end)
            enter_private_netns()
            realtime_priority()
            data = json.dumps(job()).encode()
            with os.fdopen(write_end, "wb") as out:
                out.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    finished = False
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([read_end], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError(f"kernel run took more than {timeout:.0f} s")
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        finished = True
    finally:  # a timeout or Ctrl-C kills the child, and with it the namespace
        os.close(read_end)
        if not finished:
            _kill(pid)
        _, status = os.waitpid(pid, 0)
    if status != 0 or not chunks:
        raise RuntimeError(f"kernel run exited with status {status:#x}")
    answer: dict[str, object] = json.loads(b"".join(chunks))
    return answer


def realtime_priority() -> None:
    """SCHED_RR at the lowest real-time priority, as packetdrill runs (run.c
    set_scheduling_priority): a loaded machine then delays the script's events by the
    kernel's own latency, not by the time slices of every other busy process. The
    threads the run starts inherit it; the kernel's RT throttling keeps a share of each
    second for everything else. Without the privilege the run goes on at normal priority."""
    if (os.cpu_count() or 1) < 2:
        return
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_RR,
                              os.sched_param(os.sched_get_priority_min(os.SCHED_RR)))


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
