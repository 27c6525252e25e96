"""Two in-process links joined back to back, for tests and demos.

Each direction is a bounded trio memory channel; a frame sent when it is full is dropped
and counted (``UstcpLinkTxDrops``), as a full device queue would. Frames longer than the
MTU are dropped too (``UstcpLinkTxTooBig``): the memory link does no GSO, so such a frame is a
bug above. Impairments for a direction are applied on the receiving side, by an
:class:`~ustcp.link.impaired.ImpairedLink`, so the receiver's own receive loop paces them.
Everything runs on trio's clock, so a :class:`trio.testing.MockClock` gives virtual time.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
import trio

from ..mib import Counters, Mib
from .base import RECEIVE_BATCH_MAX, Link, OutFrame, ReceivedFrame
from .impair import ImpairmentSpec
from .impaired import ImpairedLink

log = structlog.get_logger("ustcp.link")

DEFAULT_CAPACITY = 4096  # frames in flight per direction


class MemoryLink:
    """One end of an in-process link: sends into one channel, receives from another."""

    gso_max_size = 0
    tx_csum_offload = False

    def __init__(self, tx: trio.MemorySendChannel[bytes], rx: trio.MemoryReceiveChannel[bytes],
                 mtu: int, counters: Counters) -> None:
        self.mtu = mtu
        self.counters = counters
        self._tx = tx
        self._rx = rx

    async def receive_batch(self, unscheduled: bool = False) -> list[ReceivedFrame]:
        # ``unscheduled`` changes nothing here: the frames come from another task, which
        # only the scheduler runs.
        try:
            first = await self._rx.receive()
        except trio.EndOfChannel:
            await trio.sleep_forever()  # the peer hung up: a silent wire
        return [ReceivedFrame(first, False), *self._take_queued(RECEIVE_BATCH_MAX - 1)]

    def poll_batch(self) -> list[ReceivedFrame]:
        return self._take_queued(RECEIVE_BATCH_MAX)

    def _take_queued(self, limit: int) -> list[ReceivedFrame]:
        frames: list[ReceivedFrame] = []
        while len(frames) < limit:
            try:
                frames.append(ReceivedFrame(self._rx.receive_nowait(), False))
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        return frames

    def send_batch(self, frames: list[OutFrame]) -> None:
        for frame, _gso_size in frames:
            if len(frame) > self.mtu:
                self.counters.inc(Mib.UstcpLinkTxTooBig)
                log.warning("drop", reason="frame_exceeds_mtu", length=len(frame), mtu=self.mtu)
                continue
            try:
                self._tx.send_nowait(frame)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.counters.inc(Mib.UstcpLinkTxDrops)

    async def aclose(self) -> None:
        await self._tx.aclose()
        await self._rx.aclose()


def memory_link_pair(mtu: int = 1500, impair_a_to_b: ImpairmentSpec | None = None,
                     impair_b_to_a: ImpairmentSpec | None = None, *,
                     clock: Callable[[], float] = trio.current_time,
                     counters: tuple[Counters, Counters] | None = None,
                     capacity: int = DEFAULT_CAPACITY) -> tuple[Link, Link]:
    """Links ``(a, b)``: what ``a`` sends, ``b`` receives, and back. ``counters`` are the
    two stacks' counters, where link drops and impairments are counted."""
    ca, cb = counters if counters is not None else (Counters(), Counters())
    a_tx, b_rx = trio.open_memory_channel[bytes](capacity)
    b_tx, a_rx = trio.open_memory_channel[bytes](capacity)
    a: Link = MemoryLink(a_tx, a_rx, mtu, ca)
    b: Link = MemoryLink(b_tx, b_rx, mtu, cb)
    if impair_b_to_a is not None:
        a = ImpairedLink(a, impair_b_to_a, None, counters=ca, clock=clock)
    if impair_a_to_b is not None:
        b = ImpairedLink(b, impair_a_to_b, None, counters=cb, clock=clock)
    return a, b
