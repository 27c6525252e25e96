"""The daemon's ``memory`` control command: where its memory is (issue 13, defect 6).

``{"cmd": "memory"}`` answers with

- ``rss_kb``: the process's resident set (``VmRSS``);
- ``tables``: each table of the engine as ``[entries, bytes its storage takes]`` (a dict
  keeps the slots it grew to; see ``ustcp/tcp/tables.py``);
- ``pymalloc``: CPython's small-object allocator, from ``sys._debugmallocstats``: arenas
  (1 MiB each) in use and at the high-water mark, bytes in live blocks, free blocks in
  used pools, and whole unused pools: an arena goes back to the kernel only when all of
  its pools are unused, so a few live objects can pin many arenas;
- ``objects``: live objects by type, the :data:`TOP` most numerous (``gc.get_objects``),
  and ``connections_alive``: Connection objects, which after a close should number no
  more than the connection table holds;
- ``tracemalloc``, when the daemon runs under ``PYTHONTRACEMALLOC=1`` (or deeper): the
  source lines whose allocations are alive now and were not at the baseline, most blocks
  first. The first request takes the baseline; ``"baseline": true`` takes a new one.

``"collect": true`` runs a full ``gc.collect()`` first, ``"trim": true`` glibc's
``malloc_trim(0)`` after that. A debugging aid that ``tools/burst.py --census`` prints:
a census walks every object (tens of ms per 100,000), so nothing calls it on its own.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import os
import re
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ustcp.tcp.connection import Connection

if TYPE_CHECKING:
    from ustcp.stack import Stack

TOP = 20  # object types and allocation sites reported

# The lines of sys._debugmallocstats() kept, and their names in the reply.
PYMALLOC_LINES = {
    "# arenas allocated current": "arenas",
    "# arenas highwater mark": "arenas_highwater",
    "# bytes in allocated blocks": "allocated_bytes",
    "# bytes in available blocks": "available_bytes",
    "unused pools *": "unused_pool_bytes",
}


def rss_kb(pid: int | str = "self") -> int:
    """VmRSS of ``pid`` in KB (0 if unreadable)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _glibc(name: str) -> Callable[..., int] | None:
    """A function of glibc's; None on another C library."""
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    return function


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, which returns the free pages of the heap to the kernel
    (anywhere in it, not only at its top); None on another C library."""
    return _glibc("malloc_trim")


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD: Final = -1
M_MMAP_THRESHOLD: Final = -3
# A bulk transfer allocates and frees buffers of 64-256 KB (a write's chunk in the send
# buffer, a read's join) thousands of times a second. By default glibc maps each one above
# its mmap threshold afresh, or, once that threshold has grown, hands the top of the heap
# back whenever 2x the threshold is free there: either way every page of the next buffer
# faults in again (perf, chargen at 6 Gbit/s: 187,000 minor faults in 6 s, 23 % of the
# daemon's samples in the fault path; 10,000 with these). Buffers below MMAP_THRESHOLD come
# from the heap, and up to TRIM_THRESHOLD of free heap stays mapped; MemoryTrimmer's
# malloc_trim(0) still returns all of it after a burst.
MMAP_THRESHOLD: Final = 1 << 20
TRIM_THRESHOLD: Final = 16 << 20


def keep_heap_for_buffers() -> bool:
    """Set :data:`MMAP_THRESHOLD` and :data:`TRIM_THRESHOLD` with glibc's ``mallopt``
    (which also stops glibc moving them by itself); False on another C library."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def pymalloc_stats() -> dict[str, int]:
    """The arena figures of ``sys._debugmallocstats``, which writes to the C-level stderr
    only (so fd 2 goes to a file meanwhile). Empty when pymalloc is not in use
    (``PYTHONMALLOC=malloc``)."""
    with tempfile.TemporaryFile(mode="w+") as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()  # noqa: SLF001 -- CPython's only report of its arenas
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()
    stats: dict[str, int] = {}
    for line in text.splitlines():
        for label, key in PYMALLOC_LINES.items():
            match = re.search(r"=\s*([\d,]+)\s*$", line) if label in line else None
            if match:
                stats[key] = int(match.group(1).replace(",", ""))
    return stats


def tables(stack: Stack) -> dict[str, list[int]]:
    """Each table of the engine: [entries, bytes its storage takes]."""
    engine = stack.engine
    found: dict[str, Any] = {"connections": engine.connections,
                             "time_wait": engine.time_wait.entries}
    for listener in engine.listeners.values():
        found[f"{listener.name} syn_queue"] = listener.syn_queue
        found[f"{listener.name} accept_queue"] = listener.accept_queue
    return {name: [len(table), sys.getsizeof(table)] for name, table in found.items()}


def control_command(stack: Stack) -> Callable[[dict[str, Any]], dict[str, Any]]:
    baseline: list[tracemalloc.Snapshot] = []

    def memory(request: dict[str, Any]) -> dict[str, Any]:
        if request.get("collect"):
            gc.collect()
        trim = malloc_trim()
        if request.get("trim") and trim is not None:
            trim(0)
        counts = collections.Counter(type(obj).__qualname__ for obj in gc.get_objects())
        reply: dict[str, Any] = {
            "rss_kb": rss_kb(),
            "tables": tables(stack),
            "pymalloc": pymalloc_stats(),
            "connections_alive": counts[Connection.__qualname__],
            "objects": counts.most_common(TOP),
        }
        if tracemalloc.is_tracing():
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)])
            if request.get("baseline") or not baseline:
                baseline[:] = [snapshot]
            stats = sorted(snapshot.compare_to(baseline[0], "lineno"),
                           key=lambda stat: -stat.count_diff)
            reply["tracemalloc"] = [(str(stat.traceback[0]), stat.size_diff, stat.count_diff)
                                    for stat in stats[:TOP]]
        return reply

    return memory
