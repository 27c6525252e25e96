"""What every link offers the stack: batches of raw IP frames in, batches of frames out.

A frame is one IPv4 packet with no link-layer header. ``OutFrame`` pairs it with its
``gso_size``: when non-zero the frame is a GSO super-packet (one IP+TCP header and up to
64 KB of payload) that the link, or the kernel behind it, cuts into ``gso_size`` pieces.
Links that cannot do that report ``gso_max_size == 0`` and never receive one.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

RECEIVE_BATCH_MAX = 256  # frames returned by one receive_batch() at most

OutFrame = tuple[bytes, int]  # (frame, gso_size)


class ReceivedFrame(NamedTuple):
    """One frame read from a link. ``csum_verified`` is True when something below us (the
    kernel, through the virtio-net header) vouches for the transport checksum."""

    data: bytes | memoryview
    csum_verified: bool


class Link(Protocol):
    """A source and sink of raw IPv4 frames.

    ``receive_batch`` waits for at least one frame and returns every frame already there, up
    to :data:`RECEIVE_BATCH_MAX`; only one task may call it at a time. It is a schedule
    point, as trio's own receives are, unless ``unscheduled``: then the caller woke no task
    since its last one, and a link that can may, while the scheduler has nothing to run,
    return the frames already there without a schedule point and sleep briefly for the
    next one outside the scheduler (a TUN device does, in poll(2), 1 ms at most and only
    with a whole millisecond before the scheduler's next deadline). ``poll_batch``
    returns the frames already there without waiting, ``[]`` if none (busy polling calls
    it; it may run while a ``receive_batch`` waits). ``send_batch`` never blocks the event
    loop: a frame the device cannot take is dropped and counted.
    """

    mtu: int
    gso_max_size: int  # largest super-packet send_batch accepts; 0 = no GSO on send
    tx_csum_offload: bool  # send_batch accepts TCP frames with a partial checksum

    async def receive_batch(self, unscheduled: bool = False) -> list[ReceivedFrame]: ...

    def poll_batch(self) -> list[ReceivedFrame]: ...

    def send_batch(self, frames: list[OutFrame]) -> None: ...

    async def aclose(self) -> None: ...
