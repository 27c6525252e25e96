"""Impairment specs and the seeded impairment stage."""

from __future__ import annotations

import dataclasses
import math
import struct

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from ustcp.link.base import ReceivedFrame
from ustcp.link.impair import Impairer, ImpairmentSpec, parse_impairments
from ustcp.link.impaired import ImpairedLink
from ustcp.link.memory import memory_link_pair
from ustcp.mib import Counters


def frame(n: int, size: int = 100) -> bytes:
    """A 20-byte IPv4-looking header (IHL 5) followed by a numbered payload."""
    header = bytes([0x45]) + bytes(19)
    return header + struct.pack("!I", n) + bytes(size - 24)


# ---------------------------------------------------------------------- parsing


def test_parse_full_spec() -> None:
    spec = ImpairmentSpec.parse(
        "loss=2%,delay=10ms,jitter=2ms,reorder=2%,duplicate=1%,corrupt=0.5%,rate=100mbit,seed=11")
    assert spec.loss == pytest.approx(0.02)
    assert spec.delay == pytest.approx(0.010)
    assert spec.jitter == pytest.approx(0.002)
    assert spec.reorder == pytest.approx(0.02)
    assert spec.duplicate == pytest.approx(0.01)
    assert spec.corrupt == pytest.approx(0.005)
    assert spec.rate == pytest.approx(100e6)
    assert spec.seed == 11


@pytest.mark.parametrize(("text", "field", "value"), [
    ("delay=250us", "delay", 250e-6),
    ("delay=1.5s", "delay", 1.5),
    ("rate=512kbit", "rate", 512e3),
    ("rate=1gbit", "rate", 1e9),
    ("rate=9600bit", "rate", 9600.0),
    ("loss=.5%", "loss", 0.005),
    ("LOSS=100%", "loss", 1.0),
    ("limit=5", "limit", 5),
    ("reorder_delay=3ms", "reorder_delay", 0.003),
])
def test_parse_units(text: str, field: str, value: float) -> None:
    assert getattr(ImpairmentSpec.parse(text), field) == pytest.approx(value)


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "empty"),
    ("loss=2", "percentage"),
    ("loss=101%", "above 100%"),
    ("delay=10", "time"),
    ("delay=10min", "time"),
    ("rate=100", "bit rate"),
    ("rate=0mbit", "positive"),
    ("bogus=1", "unknown setting"),
    ("loss", "key=value"),
    ("loss=1%,,delay=1ms", "key=value"),
    ("seed=-1", "integer"),
    ("limit=0", "at least 1"),
    ("in:loss=1%", "prefix"),
])
def test_parse_errors_are_one_line(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        ImpairmentSpec.parse(text)
    assert "\n" not in str(info.value)


def test_parse_directions() -> None:
    inbound, outbound = parse_impairments("loss=1%,out:delay=20ms,in:loss=3%,seed=4")
    assert inbound == ImpairmentSpec(loss=0.03, seed=4)
    assert outbound == ImpairmentSpec(loss=0.01, delay=0.02, seed=4)
    inbound, outbound = parse_impairments("out:corrupt=1%")
    assert inbound is None
    assert outbound == ImpairmentSpec(corrupt=0.01)
    with pytest.raises(ValueError, match="'in:' or 'out:'"):
        parse_impairments("up:loss=1%")


# ---------------------------------------------------------------------- decisions


def run_frames(spec: ImpairmentSpec, n: int, stream: str = "") -> list[tuple[int, float, bool]]:
    impairer = Impairer(spec, stream=stream)
    out = []
    for i in range(n):
        for d in impairer.process(i * 0.001, frame(i)):
            out.append((struct.unpack_from("!I", d.data, 20)[0], d.at, d.corrupted))
    return out


MIXED = ImpairmentSpec(loss=0.05, duplicate=0.05, corrupt=0.05, reorder=0.05, delay=0.01,
                       jitter=0.002, rate=10e6, seed=11)


def test_same_seed_same_decisions() -> None:
    assert run_frames(MIXED, 2000) == run_frames(MIXED, 2000)


def test_other_seed_or_stream_other_decisions() -> None:
    baseline = run_frames(MIXED, 2000)
    assert run_frames(dataclasses.replace(MIXED, seed=12), 2000) != baseline
    assert run_frames(MIXED, 2000, stream="in") != baseline


def test_loss_rate_within_bounds() -> None:
    n, p = 10_000, 0.02
    delivered = len(run_frames(ImpairmentSpec(loss=p, seed=7), n))
    lost = n - delivered
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(lost - n * p) < 4 * sigma


def test_duplicate_rate_within_bounds() -> None:
    n, p = 10_000, 0.01
    extra = len(run_frames(ImpairmentSpec(duplicate=p, seed=3), n)) - n
    assert abs(extra - n * p) < 4 * math.sqrt(n * p * (1 - p))


def test_corruption_flips_one_byte() -> None:
    impairer = Impairer(ImpairmentSpec(corrupt=1.0, seed=5))
    in_header = 0
    for i in range(400):
        original = frame(i)
        [d] = impairer.process(0.0, original)
        assert d.corrupted
        diff = [k for k in range(len(original)) if original[k] != d.data[k]]
        assert len(diff) == 1
        in_header += diff[0] < 20
    assert 0 < in_header < 400 // 2  # mostly after the IP header, sometimes inside it


def test_header_only_corruption() -> None:
    impairer = Impairer(ImpairmentSpec(corrupt=1.0, seed=5), header_only_corruption=True)
    for i in range(200):
        original = frame(i)
        [d] = impairer.process(0.0, original)
        assert original[20:] == d.data[20:]
        assert original[:20] != d.data[:20]


def test_reorder_lets_later_frames_overtake() -> None:
    deliveries = run_frames(ImpairmentSpec(reorder=0.1, reorder_delay=0.005, seed=2), 1000)
    order = [n for n, _at, _c in sorted(deliveries, key=lambda t: t[1])]
    assert sorted(order) == list(range(1000))
    assert order != sorted(order)


def test_rate_serializes_frames() -> None:
    impairer = Impairer(ImpairmentSpec(rate=8e6))  # 1 byte per microsecond
    times = [impairer.process(0.0, frame(i, 1000))[0].at for i in range(3)]
    assert times == pytest.approx([0.001, 0.002, 0.003])


def test_delay_and_jitter_bounds() -> None:
    impairer = Impairer(ImpairmentSpec(delay=0.01, jitter=0.002))
    ats = [impairer.process(1.0, frame(i))[0].at - 1.0 for i in range(500)]
    assert min(ats) >= 0.008 - 1e-12
    assert max(ats) <= 0.012 + 1e-12
    assert max(ats) - min(ats) > 0.002


# ---------------------------------------------------------------------- the Link wrapper


async def test_impaired_link_delays_and_keeps_order(autojump_clock: MockClock) -> None:
    a, b = memory_link_pair(impair_a_to_b=ImpairmentSpec(delay=0.05))
    start = trio.current_time()
    a.send_batch([(frame(i), 0) for i in range(5)])
    got = await b.receive_batch()
    assert trio.current_time() - start == pytest.approx(0.05)
    assert [struct.unpack_from("!I", f.data, 20)[0] for f in got] == list(range(5))


async def test_impaired_link_poll_batch_holds_frames_until_due(autojump_clock: MockClock) -> None:
    """Busy polling through an impaired link sees a delayed frame only once it is due."""
    a, b = memory_link_pair(impair_a_to_b=ImpairmentSpec(delay=0.05))
    a.send_batch([(frame(1), 0)])
    assert b.poll_batch() == []
    await trio.sleep(0.049)
    assert b.poll_batch() == []
    await trio.sleep(0.001)
    [got] = b.poll_batch()
    assert got.data == frame(1)


async def test_impaired_link_outbound_released_by_receive_loop(autojump_clock: MockClock) -> None:
    a, b = memory_link_pair()
    counters = Counters()
    slow_a = ImpairedLink(a, None, ImpairmentSpec(delay=0.03), counters=counters)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_a.receive_batch)  # the stack's receive loop would be here
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        slow_a.send_batch([(frame(1), 0)])
        [got] = await b.receive_batch()
        assert trio.current_time() - start == pytest.approx(0.03)
        assert got.data == frame(1)
        nursery.cancel_scope.cancel()


async def test_impaired_link_corruption_clears_csum_verified() -> None:
    class Source:
        mtu = 1500
        gso_max_size = 0
        tx_csum_offload = False

        async def receive_batch(self, unscheduled: bool = False) -> list[ReceivedFrame]:
            await trio.lowlevel.checkpoint()
            return [ReceivedFrame(frame(0), True)]

        def poll_batch(self) -> list[ReceivedFrame]:
            raise AssertionError("not used")

        def send_batch(self, frames: list[tuple[bytes, int]]) -> None:
            raise AssertionError("not used")

        async def aclose(self) -> None:
            await trio.lowlevel.checkpoint()

    link = ImpairedLink(Source(), ImpairmentSpec(corrupt=1.0), None)
    [got] = await link.receive_batch()
    assert got.data != frame(0)
    assert got.csum_verified is False


async def test_impaired_link_queue_limit_counts_drops(autojump_clock: MockClock) -> None:
    counters = Counters()
    a, b = memory_link_pair(counters=(Counters(), counters),
                            impair_a_to_b=ImpairmentSpec(delay=0.01, limit=10))
    a.send_batch([(frame(i), 0) for i in range(30)])
    got: list[ReceivedFrame] = []
    with trio.move_on_after(1):
        while len(got) < 30:
            got += await b.receive_batch()
    assert len(got) == 10
    assert counters["UstcpImpairQueueDrops"] == 20
