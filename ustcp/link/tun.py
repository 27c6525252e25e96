"""A Linux TUN device as a Link, driven from trio.

The device is opened with ``IFF_TUN | IFF_NO_PI``: every read and write is one bare IP
packet. The fd is non-blocking: ``receive_batch`` reads until ``BlockingIOError`` and only
then waits in ``trio.lowlevel.wait_readable``; ``send_batch`` writes and drops (counting
``UstcpLinkTxDrops``) whatever the device refuses with EAGAIN. ``poll_batch`` asks with
poll(2) and reads only if something is there (the stack's busy polling calls it).

With ``offload=True`` the device also gets ``IFF_VNET_HDR`` and ``TUNSETOFFLOAD`` with
checksum and TSO offloads, and every read and write carries a 10-byte virtio-net header
(:mod:`ustcp.wire.vnet`):

- reads may be GSO super-packets of up to 64 KB; a frame whose header says NEEDS_CSUM or
  DATA_VALID comes up with ``csum_verified=True`` (its checksum field may be only partial);
- writes of TCP frames ask the kernel to finish the checksum (NEEDS_CSUM from the IP
  header's end, field at offset 16): the IP layer writes only the pseudo-header sum
  (``tx_csum_offload``); a frame with ``gso_size`` is a super-packet the kernel cuts into
  ``gso_size`` pieces (GSO_TCPV4, or GSO_TCPV6 for an IPv6 frame, which the stack builds
  without extension headers). Other frames (ICMP) go with an all-zero header.

If the kernel refuses the vnet header or every offload combination, the device is reopened
without them and the link works on plain frames (logged as ``offload_unavailable``).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import select
import socket
import struct
import subprocess
from typing import Final

import pytun_pmd3
import structlog
import trio

from ..mib import NAMES, Counters, Mib
from ..wire.vnet import (
    DATA_VALID,
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    NEEDS_CSUM,
    VNET_HDR_LEN,
    VnetHeader,
    build_vnet,
)
from .base import RECEIVE_BATCH_MAX, OutFrame, ReceivedFrame

log = structlog.get_logger("ustcp.link")

IFF_TUN: Final = 0x0001
IFF_MULTI_QUEUE: Final = 0x0100
IFF_NO_PI: Final = 0x1000
IFF_VNET_HDR: Final = 0x4000
TUNSETOFFLOAD: Final = 0x400454D0
TUN_F_CSUM: Final = 0x01
TUN_F_TSO4: Final = 0x02
TUN_F_TSO6: Final = 0x04
# Offload sets to try, richest first: a kernel rejects bits it does not know with EINVAL.
OFFLOAD_PROBES: Final = (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, TUN_F_CSUM | TUN_F_TSO4)

PROTO_TCP: Final = 6
IPV6_HEADER_LEN: Final = 40
TCP_CSUM_OFFSET: Final = 16  # the checksum field within the TCP header
IPV4_MAX_LEN: Final = 65535
GSO_MAX_SIZE: Final = IPV4_MAX_LEN - 20 - 60  # payload of a super-packet: 64 KB minus max headers
NETNS_RUN_DIR: Final = "/run/netns"
_ZERO_VNET: Final = bytes(VNET_HDR_LEN)
_VERIFIED_FLAGS: Final = NEEDS_CSUM | DATA_VALID


class TunLink:
    """A TUN device named ``name`` (the kernel picks one for ``""``), MTU ``mtu``, up.

    ``kernel_addr`` (``"10.77.0.1/24"``) and ``kernel_addr6`` (``"fd77::1/64"``) are given to
    the kernel's side of the device with ``ip addr add``; the device, and so the address,
    lives in the network namespace of the calling process. To keep test and daemon addresses
    out of the host's own namespace, that is refused in the host's namespace
    (:func:`in_host_netns`) unless ``allow_init_netns`` is set.

    ``multi_queue`` opens one queue of a multi-queue device (``IFF_MULTI_QUEUE``): the
    kernel steers each flow to one queue. ``attach`` joins a device another queue already
    created and configured (``serve --workers``, :mod:`ustcp.workers`): nothing is set up.
    """

    def __init__(self, name: str = "", mtu: int = 1500, offload: bool = False, *,
                 kernel_addr: str | None = None, kernel_addr6: str | None = None,
                 counters: Counters | None = None,
                 allow_init_netns: bool = False, txqueuelen: int | None = None,
                 multi_queue: bool = False, attach: bool = False) -> None:
        if (kernel_addr or kernel_addr6) and not allow_init_netns and in_host_netns():
            raise PermissionError(errno.EPERM, "refusing to configure an address on a TUN "
                                  "device in the host's network namespace (run in a netns)")
        self.counters = counters if counters is not None else Counters()
        self.mtu = mtu
        self._dev, self.offload = self._open(name, offload,
                                             IFF_MULTI_QUEUE if multi_queue else 0)
        self.name: str = self._dev.name
        self._fd: int = self._dev.fileno()
        self.gso_max_size = GSO_MAX_SIZE if self.offload else 0
        self.tx_csum_offload = self.offload
        self._read_size = (IPV4_MAX_LEN + 1 + VNET_HDR_LEN) if self.offload else mtu
        self._poll = select.poll()  # poll_batch asks the device without a failing read
        self._closed = False
        try:
            os.set_blocking(self._fd, False)
            self._poll.register(self._fd, select.POLLIN)
            if not attach:  # the device's first queue configures it; later ones join
                self._configure(mtu, txqueuelen, kernel_addr, kernel_addr6)
        except BaseException:
            self._dev.close()
            raise
        log.info("tun_open", dev=self.name, mtu=mtu, offload=self.offload,
                 kernel_addr=kernel_addr, kernel_addr6=kernel_addr6, txqueuelen=txqueuelen)

    def _configure(self, mtu: int, txqueuelen: int | None, kernel_addr: str | None,
                   kernel_addr6: str | None) -> None:
        self._dev.mtu = mtu
        if txqueuelen is not None:
            set_txqueuelen(self.name, txqueuelen)
        self._dev.up()
        if kernel_addr is not None:
            subprocess.run(["ip", "addr", "add", kernel_addr, "dev", self.name],
                           check=True, capture_output=True)
        if kernel_addr6 is not None:
            # nodad: usable at once (a point-to-point TUN has nobody to duplicate it)
            subprocess.run(["ip", "-6", "addr", "add", kernel_addr6, "dev", self.name,
                            "nodad"], check=True, capture_output=True)

    def device_counters(self) -> dict[str, int]:
        """The kernel's own drop counters of this device (/proc/net/dev, this namespace's):
        ``UstcpTunTxDropped``, frames the kernel sent towards the stack and dropped because
        the device's queue (txqueuelen) was full; ``UstcpTunRxDropped``, frames the stack
        wrote that the kernel dropped."""
        try:
            with open("/proc/net/dev") as dev:
                for line in dev:
                    name, sep, fields = line.partition(":")
                    if sep and name.strip() == self.name:
                        values = fields.split()
                        return {NAMES[Mib.UstcpTunTxDropped]: int(values[11]),
                                NAMES[Mib.UstcpTunRxDropped]: int(values[3])}
        except OSError:
            pass
        return {}

    @staticmethod
    def _open(name: str, offload: bool, extra: int) -> tuple[pytun_pmd3.TunTapDevice, bool]:
        if offload:
            try:
                dev = pytun_pmd3.TunTapDevice(name=name,
                                              flags=IFF_TUN | IFF_NO_PI | IFF_VNET_HDR | extra)
            except OSError as exc:
                log.warning("offload_unavailable", dev=name, reason=f"IFF_VNET_HDR: {exc}")
            else:
                refusals = []
                for flags in OFFLOAD_PROBES:
                    try:
                        fcntl.ioctl(dev.fileno(), TUNSETOFFLOAD, flags)
                    except OSError as exc:
                        refusals.append(f"TUNSETOFFLOAD {flags:#x}: {exc.strerror}")
                    else:
                        return dev, True
                dev.close()
                log.warning("offload_unavailable", dev=name, reason="; ".join(refusals))
        return pytun_pmd3.TunTapDevice(name=name, flags=IFF_TUN | IFF_NO_PI | extra), False

    # ------------------------------------------------------------------ receive

    async def receive_batch(self, unscheduled: bool = False) -> list[ReceivedFrame]:
        await trio.lowlevel.checkpoint_if_cancelled()
        if unscheduled:
            # The stack woke no task since its last schedule point (Stack._unscheduled): a
            # frame already there is read with no pass through trio's scheduler, which
            # costs more than the engine's whole work for an echo round trip.
            frames = self.poll_batch()
            if frames:
                return frames
            # Nothing there: while the scheduler has no task to run (one that yielded at
            # a checkpoint is runnable without the stack knowing) and a whole millisecond
            # before its next deadline, poll(2) sleeps here up to that long, as its
            # epoll_wait would. poll(2) rounds a shorter wait up to 1 ms, and the engine's
            # sub-millisecond timers (pacing) would fire late: GET /bytes/N fell from 10 to
            # 6 Gbit/s when this slept up to the deadline.
            stats = trio.lowlevel.current_statistics()
            if not stats.tasks_runnable and stats.seconds_to_next_deadline >= 1e-3 \
                    and self._poll.poll(1):
                frames = self._read_available()
                if frames:
                    return frames
        else:
            # As trio's own socket methods do: try first, and yield only if that succeeded
            # at once; a wait for readability already was the checkpoint. The try asks
            # poll(2) (0.45 µs) rather than reading: the batch before ended on an empty
            # queue, so in request/response traffic this try mostly finds nothing, and a
            # failing read costs 1.15 µs and an exception.
            frames = self.poll_batch()
            if frames:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return frames
        while True:
            await trio.lowlevel.wait_readable(self._fd)
            frames = self._read_available()
            if frames:
                return frames

    def poll_batch(self) -> list[ReceivedFrame]:
        # poll(2) first: on an empty queue a failing read costs twice as much (EAGAIN
        # raised and caught), and busy polling mostly finds the queue empty.
        return self._read_available() if self._poll.poll(0) else []

    def _read_available(self) -> list[ReceivedFrame]:
        frames: list[ReceivedFrame] = []
        fd, size, offload, read = self._fd, self._read_size, self.offload, os.read
        while len(frames) < RECEIVE_BATCH_MAX:
            if len(frames) == 1 and not self._poll.poll(0):
                # One frame, then an empty queue: request/response traffic's usual batch.
                # poll(2) says so for 0.45 µs; the failing read would raise BlockingIOError
                # (4 % of the daemon's echo samples, perf). A longer batch still ends on one.
                break
            try:
                data = read(fd, size)
            except BlockingIOError:
                break
            if not offload:
                frames.append(ReceivedFrame(data, False))
            elif len(data) > VNET_HDR_LEN:
                # virtio_net_hdr.flags is its first byte: no need to unpack the rest
                frames.append(ReceivedFrame(memoryview(data)[VNET_HDR_LEN:],
                                            bool(data[0] & _VERIFIED_FLAGS)))
        return frames

    # ------------------------------------------------------------------ send

    def send_batch(self, frames: list[OutFrame]) -> None:
        fd = self._fd
        for frame, gso_size in frames:
            try:
                if self.offload:
                    os.writev(fd, (_vnet_header_for(frame, gso_size), frame))
                else:
                    os.write(fd, frame)
            except BlockingIOError:
                self.counters.inc(Mib.UstcpLinkTxDrops)
            except OSError as exc:
                self.counters.inc(Mib.UstcpLinkTxErrors)
                log.warning("tx_error", dev=self.name, error=exc.strerror, length=len(frame),
                            gso_size=gso_size)

    def close_fd(self) -> None:
        """Close the device outside trio (``serve --workers``' supervisor, which never
        waits on it, closes its first queue so)."""
        if not self._closed:
            self._closed = True
            self._dev.close()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self._fd)
            self._dev.close()
        await trio.lowlevel.checkpoint()


def _vnet_header_for(frame: bytes, gso_size: int) -> bytes:
    """The virtio-net header that tells the kernel what to finish in ``frame``."""
    if frame[0] >> 4 == 6:
        if len(frame) < IPV6_HEADER_LEN or frame[6] != PROTO_TCP:
            return _ZERO_VNET
        ihl, gso_type = IPV6_HEADER_LEN, GSO_TCPV6
    else:
        if len(frame) < 20 or frame[9] != PROTO_TCP:
            return _ZERO_VNET
        ihl, gso_type = (frame[0] & 0x0F) * 4, GSO_TCPV4
    if gso_size:
        tcp_hlen = (frame[ihl + 12] >> 4) * 4
        return build_vnet(VnetHeader(NEEDS_CSUM, gso_type, ihl + tcp_hlen, gso_size, ihl,
                                     TCP_CSUM_OFFSET))
    return _csum_only_header(ihl)


@functools.cache
def _csum_only_header(ihl: int) -> bytes:
    return build_vnet(VnetHeader(NEEDS_CSUM, GSO_NONE, 0, 0, ihl, TCP_CSUM_OFFSET))


SIOCSIFTXQLEN: Final = 0x8943  # linux/sockios.h


def set_txqueuelen(name: str, qlen: int) -> None:
    """The device's transmit queue length (``ip link set NAME txqueuelen QLEN``): for a TUN
    device, how many frames the kernel queues for the reader before it drops (tx_dropped).
    The kernel's default for TUN is 500."""
    ifreq = struct.pack("16si20x", name.encode(), qlen)  # struct ifreq: name, ifr_qlen
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCSIFTXQLEN, ifreq)


def in_host_netns() -> bool:
    """Whether the calling thread is in the host's network namespace: PID 1's when that can
    be read, else any namespace not created by ``ip netns add`` (under /run/netns)."""
    own = os.stat("/proc/thread-self/ns/net").st_ino
    try:
        return own == os.stat("/proc/1/ns/net").st_ino
    except OSError:
        pass
    try:
        named = {os.stat(os.path.join(NETNS_RUN_DIR, n)).st_ino
                 for n in os.listdir(NETNS_RUN_DIR)}
    except OSError:
        named = set()
    return own not in named
