"""A Link wrapper that records every frame in and out to a pcap file (``--pcap``).

The file's link type is LINKTYPE_RAW (101): each record is a bare IPv4 or IPv6 packet (the
version nibble tells them apart), which is what tcpdump and Wireshark expect for raw IP in a
file. (dpkt's ``DLT_RAW`` constant is the
platform's DLT value, 12 on Linux, which is not what belongs in a file header.) GSO
super-packets are written whole, so the snap length covers 64 KB frames. Timestamps are
the link clock plus an offset: by default the one that makes the first frame show the wall
clock; with ``epoch=0.0`` a capture made on a mock clock shows the virtual time itself.

The file is flushed after every batch, so ``tcpdump -r FILE`` reads a capture while the
daemon writes it; the path ``-`` writes to standard output (``ustcp serve --pcap - |
tcpdump -r -``). When the reader goes away (EPIPE) or the disk fails, the capture stops
with a warning and the stack carries on.

With offloads on, frames the stack sends carry a partial TCP checksum (the kernel, or the
device, completes it) and may be GSO super-packets larger than the MTU: tcpdump reports
"incorrect cksum" for them. ``tcpdump -K`` skips the check; ``--offload off`` captures
frames exactly as they would be on a wire.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import BinaryIO

import dpkt
import structlog
import trio

from .base import Link, OutFrame, ReceivedFrame

log = structlog.get_logger("ustcp.link")

LINKTYPE_RAW = 101
STDOUT = "-"
SNAPLEN = 262144  # tcpdump's default, larger than any GSO super-packet


class PcapTap:
    """``inner`` plus a capture file. Put it where the capture should look: outside an
    :class:`~ustcp.link.impaired.ImpairedLink` it records what the stack saw."""

    def __init__(self, inner: Link, path: str | os.PathLike[str], *,
                 clock: Callable[[], float] = trio.current_time,
                 epoch: float | None = None) -> None:
        self.inner = inner
        self.mtu = inner.mtu
        self.gso_max_size = inner.gso_max_size
        self.tx_csum_offload = inner.tx_csum_offload
        self._clock = clock
        self._epoch = epoch
        self._offset: float | None = None
        self._owned = os.fspath(path) != STDOUT
        self._file: BinaryIO = (
            open(path, "wb") if self._owned  # noqa: SIM115 -- lives as long as the tap
            else sys.stdout.buffer)
        self._writer = dpkt.pcap.Writer(self._file, snaplen=SNAPLEN, linktype=LINKTYPE_RAW)
        self._file.flush()  # the header: a reader can open the capture at once
        self._closed = False

    def _timestamp(self) -> float:
        now = self._clock()
        if self._offset is None:
            self._offset = (time.time() - now) if self._epoch is None else self._epoch
        return now + self._offset

    def _write(self, frames: list[bytes | memoryview]) -> None:
        if self._closed:
            return
        ts = self._timestamp()
        write = self._writer.writepkt_time
        try:
            for frame in frames:
                write(bytes(frame), ts)
            self._file.flush()
        except OSError as exc:  # the reader of a pipe left, or the disk is full
            log.warning("pcap_stopped", error=exc.strerror or repr(exc))
            self._close_file()

    async def receive_batch(self, unscheduled: bool = False) -> list[ReceivedFrame]:
        frames = await self.inner.receive_batch(unscheduled)
        self._write([f.data for f in frames])
        return frames

    def poll_batch(self) -> list[ReceivedFrame]:
        frames = self.inner.poll_batch()
        if frames:
            self._write([f.data for f in frames])
        return frames

    def send_batch(self, frames: list[OutFrame]) -> None:
        self._write([frame for frame, _gso_size in frames])
        self.inner.send_batch(frames)

    def _close_file(self) -> None:
        self._closed = True
        if self._owned:
            self._file.close()

    async def aclose(self) -> None:
        if not self._closed:  # every batch was flushed already
            self._close_file()
        await self.inner.aclose()
