"""A Link wrapper that keeps the headers of the last frames in and out (``serve --web``).

The live view draws the ladder of a chosen connection's last segments from this ring. Each
entry is the link clock's time and the frame's first :data:`HEADER_BYTES` bytes (an IPv4 and
a TCP header with every option fit); nothing is parsed on the data path, so the cost per
frame is one slice and one append. The ring holds :data:`RING_SIZE` frames; older ones fall
out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio

from .base import Link, OutFrame, ReceivedFrame

RING_SIZE = 4096
HEADER_BYTES = 128  # 60 bytes of IPv4 header at most, 60 of TCP header


class RingTap:
    """``inner`` plus a bounded ring of ``(time, header bytes)`` for the frames both ways."""

    def __init__(self, inner: Link, *, size: int = RING_SIZE,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.inner = inner
        self.mtu = inner.mtu
        self.gso_max_size = inner.gso_max_size
        self.tx_csum_offload = inner.tx_csum_offload
        self._clock = clock
        self.frames: deque[tuple[float, bytes]] = deque(maxlen=size)

    def _keep(self, frames: list[bytes | memoryview]) -> None:
        now = self._clock()
        append = self.frames.append
        for frame in frames:
            append((now, bytes(frame[:HEADER_BYTES])))

    async def receive_batch(self, unscheduled: bool = False) -> list[ReceivedFrame]:
        frames = await self.inner.receive_batch(unscheduled)
        self._keep([f.data for f in frames])
        return frames

    def poll_batch(self) -> list[ReceivedFrame]:
        frames = self.inner.poll_batch()
        if frames:
            self._keep([f.data for f in frames])
        return frames

    def send_batch(self, frames: list[OutFrame]) -> None:
        self._keep([frame for frame, _gso_size in frames])
        self.inner.send_batch(frames)

    async def aclose(self) -> None:
        await self.inner.aclose()
