"""PcapTap writes what crosses a link in a file tcpdump reads as raw IP."""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt
import pytest
import trio
import trio.testing
from trio.testing import MockClock

from ustcp.link.memory import memory_link_pair
from ustcp.link.pcap import LINKTYPE_RAW, PcapTap


def ipv4_frame(payload: bytes, proto: int = 17) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                       b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02") + payload


async def test_frames_in_and_out_read_back(tmp_path: Path,
                                           autojump_clock: MockClock) -> None:
    path = tmp_path / "cap.pcap"
    a, b = memory_link_pair(mtu=70000)
    tap = PcapTap(a, path, epoch=1000.0)
    sent = [ipv4_frame(b"out-%d" % i) for i in range(3)]
    tap.send_batch([(f, 0) for f in sent])
    await trio.sleep(0.5)
    big = ipv4_frame(bytes(range(256)) * 255, proto=6)  # a 64 KB GSO super-packet
    b.send_batch([(big, 1448)])
    received = await tap.receive_batch()
    assert [f.data for f in received] == [big]
    await tap.aclose()

    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == LINKTYPE_RAW == 101
        records = list(reader)
    assert [bytes(buf) for _ts, buf in records] == [*sent, big]
    times = [ts for ts, _buf in records]
    assert times[:3] == [pytest.approx(1000.0)] * 3
    assert times[3] == pytest.approx(1000.5)
    assert dpkt.ip.IP(records[3][1]).p == dpkt.ip.IP_PROTO_TCP


async def test_close_is_idempotent_and_stops_writing(tmp_path: Path) -> None:
    path = tmp_path / "cap.pcap"
    a, _b = memory_link_pair()
    tap = PcapTap(a, path)
    await tap.aclose()
    tap.send_batch([(ipv4_frame(b"late"), 0)])
    await tap.aclose()
    with path.open("rb") as f:
        assert list(dpkt.pcap.Reader(f)) == []
