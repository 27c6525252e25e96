"""The in-process link pair: delivery, batching and the drops it counts."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from ustcp.link.base import RECEIVE_BATCH_MAX
from ustcp.link.memory import memory_link_pair
from ustcp.mib import Counters


async def test_frames_cross_in_order_and_in_batches() -> None:
    a, b = memory_link_pair()
    frames = [bytes([0x45]) + i.to_bytes(2, "big") for i in range(RECEIVE_BATCH_MAX + 10)]
    a.send_batch([(f, 0) for f in frames])
    first = await b.receive_batch()
    second = await b.receive_batch()
    assert len(first) == RECEIVE_BATCH_MAX
    assert [f.data for f in first + second] == frames
    assert not any(f.csum_verified for f in first + second)
    b.send_batch([(b"back", 0)])
    assert [f.data for f in await a.receive_batch()] == [b"back"]


async def test_full_channel_and_oversize_frames_are_counted() -> None:
    ca = Counters()
    a, _b = memory_link_pair(mtu=100, counters=(ca, Counters()), capacity=4)
    a.send_batch([(bytes(101), 0)] + [(bytes(50), 0)] * 6)
    assert ca["UstcpLinkTxTooBig"] == 1
    assert ca["UstcpLinkTxDrops"] == 2


async def test_closed_peer_is_a_silent_wire(autojump_clock: MockClock) -> None:
    a, b = memory_link_pair()
    await b.aclose()
    a.send_batch([(b"lost", 0)])
    with trio.move_on_after(10) as scope:
        await a.receive_batch()
    assert scope.cancelled_caught
    with pytest.raises(trio.ClosedResourceError):
        await b.receive_batch()
