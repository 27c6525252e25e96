"""The daemon's own bounds (issue 13): the memory trimmer after a burst and the idle reaper."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, cast

import trio
from trio.testing import MockClock

from ustcp import daemon
from ustcp.mib import Counters


class FakeStack:
    def __init__(self) -> None:
        self.count = 0

    def open_connections(self) -> int:
        return self.count


# A send buffer of eight 256 KB chunks filled and acknowledged at once, 250 times, as a bulk
# transfer does; the minor page faults that cost. With glibc's defaults the 2 MB freed at
# the heap's top is handed back each time and faults in again: 56,165 faults with the pure
# engine loaded, 119,972 with the compiled one; 288 and 476 with keep_heap_for_buffers
# (deterministic on this machine).
BUFFER_CHURN = """
import resource, sys
from ustcp.obs import memory
if sys.argv[1] == "keep":
    assert memory.keep_heap_for_buffers()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(250):
    chunks = [bytes([i & 0xFF]) * 262144 for _ in range(8)]
    del chunks
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_buffers_reuse_the_heap_instead_of_faulting_in_afresh() -> None:
    faults = {}
    for mode in ("default", "keep"):
        done = subprocess.run([sys.executable, "-c", BUFFER_CHURN, mode], capture_output=True,
                              text=True, timeout=60, check=True)
        faults[mode] = int(done.stdout)
    assert faults["default"] > 250 * 64, faults  # a good part of the 512 pages, every round
    assert faults["keep"] < 5000, faults  # the heap's pages, faulted in about once


def test_memory_is_trimmed_once_a_burst_has_drained() -> None:
    stack = FakeStack()
    trimmer = daemon.MemoryTrimmer(cast(Any, stack))
    calls: list[int] = []
    trimmer._trim = calls.append
    for count in (5000, 5000, 3000, 900, 0):  # still closing: a trim now would leave the
        stack.count = count                   # garbage of those closed after it
        trimmer.check()
    assert calls == []
    trimmer.check()  # quiet at 0, 5000 below the peak
    assert calls == [0] and trimmer.peak == 0  # malloc_trim(0), a new baseline
    trimmer.check()
    assert calls == [0]
    for count in (950, 950, 0, 0):  # a fall of 950: not a burst
        stack.count = count
        trimmer.check()
    assert calls == [0]
    for count in (1500, 1450, 1400, 1350, 600, 550, 500):  # a slow drain trims as it goes
        stack.count = count
        trimmer.check()
    assert calls == [0, 0] and trimmer.peak == 500


class FakeReceiver:
    def __init__(self) -> None:
        self.bytes_received = 0


class FakeSender:
    def __init__(self) -> None:
        self.bytes_acked = 0


class FakeConnection:
    def __init__(self) -> None:
        self.rcv = FakeReceiver()
        self.snd = FakeSender()
        self.remote_ip = bytes([10, 77, 0, 1])
        self.remote_port = 40000


class FakeStream:
    def __init__(self) -> None:
        self.connection = FakeConnection()
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_the_idle_reaper_ends_idle_handlers_and_spares_busy_ones(
        autojump_clock: MockClock) -> None:
    counters = Counters()
    reaper = daemon.IdleReaper(4.0, counters)
    idle, busy = FakeStream(), FakeStream()
    ended: dict[str, float] = {}

    async def handler(stream: Any) -> None:
        name = "idle" if stream is idle else "busy"
        try:
            await trio.sleep(30)
        finally:
            ended[name] = trio.current_time()

    async def keep_busy() -> None:
        for _ in range(20):  # a byte acknowledged every second
            await trio.sleep(1)
            busy.connection.snd.bytes_acked += 1

    wrapped = reaper.wrap(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reaper.sweep)
        nursery.start_soon(wrapped, idle)
        nursery.start_soon(wrapped, busy)
        nursery.start_soon(keep_busy)
        await trio.sleep(35)
        nursery.cancel_scope.cancel()
    assert 4.0 <= ended["idle"] <= 5.0 and idle.closed  # 1 to 1.25 timeouts
    assert ended["busy"] >= 20  # lived while it moved bytes (then 4-5 s more)
    assert counters["UstcpAppIdleTimeouts"] == 2
    assert not reaper.watched
