"""The kernel target's private network: a namespace of the worker process with a TUN device.

The worker calls ``unshare(CLONE_NEWNET)`` before anything else, so the namespace belongs to
that one process: it has no name to leak and the kernel removes it when the process exits,
however it exits (end of script, failure, Ctrl-C, kill). Inside it, ``tun0`` (the name the
scripts' ``tc qdisc ... dev tun0`` lines use) carries 192.168.0.1, the kernel's side, with a
route to 192.0.2.0/24, where the script's remote host lives (packetdrill's addresses).

The device is set up as packetdrill sets up its own (netdev.c): ``IFF_VNET_HDR`` with
``TUNSETOFFLOAD(CSUM | TSO4 | TSO6 | TSO_ECN)``, "like a typical ethernet device". The
kernel then hands over whole TSO packets (one ``> P. 1:10001(10000)`` line is one read), and
its sizing, deferral and PSH decisions are those of a TSO-capable host, which is what the
scripts were written against. A read carries a virtio-net header and a TCP checksum left
partial (not verified here; the IPv4 header checksum is). Injected frames get an empty
header (no GSO, no checksum offload) and their own IPv4 and TCP checksums, which the kernel
verifies. A thread reads the device and stamps every frame with the monotonic clock the
moment it arrives; the script's timeline runs on the same clock.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import queue
import select
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ...wire.errors import ParseError
from ...wire.ipv4 import build_ipv4_header, parse_ipv4
from ...wire.tcp import PROTO_TCP, TcpSegment, build_tcp, parse_tcp
from ...wire.vnet import GSO_TCPV4, VNET_HDR_LEN, VnetHeader, build_vnet
from ..sockets import LOCAL_IP, REMOTE_IP

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN = 0x01, 0x02, 0x04, 0x08
NO_OFFLOAD = build_vnet(VnetHeader())
DEVICE = "tun0"
LOCAL_ADDR = "192.168.0.1"
REMOTE_NET = "192.0.2.0/24"
READ_POLL = 0.05  # how often the reader looks at its stop flag (s)
FRAME_MAX = 65536


def enter_private_netns() -> None:
    """Move this process into a new network namespace of its own (unshare(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")


def write_proc(path: str, value: str) -> None:
    target = Path(path)
    if target.exists():
        target.write_text(value + "\n")


@dataclass(slots=True)
class Sniffed:
    time: float  # monotonic seconds when the reader got it
    seg: TcpSegment


class Tun:
    """``tun0`` in the current namespace, configured, with a reader thread."""

    def __init__(self, mtu: int) -> None:
        # No IPv6 on the device: a fresh interface would send router solicitations.
        write_proc("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack(
                "16sH", DEVICE.encode(), IFF_TUN | IFF_NO_PI | IFF_VNET_HDR))
            fcntl.ioctl(self.fd, TUNSETOFFLOAD,
                        TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)
            batch = (f"link set lo up\n"
                     f"link set {DEVICE} mtu {mtu} up\n"
                     f"addr add {LOCAL_ADDR}/32 dev {DEVICE}\n"
                     f"route add {REMOTE_NET} dev {DEVICE}\n")
            subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True,
                           capture_output=True, timeout=10)
        except BaseException:
            os.close(self.fd)
            raise
        os.set_blocking(self.fd, False)
        self.ident = 0
        self.frames: queue.SimpleQueue[Sniffed] = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.reader = threading.Thread(target=self._read_loop, name="tun-reader", daemon=True)
        self.reader.start()

    def frame(self, seg: TcpSegment) -> bytes:
        """The IPv4 frame of one segment from the remote host (192.0.2.1), checksums
        computed."""
        tcp = build_tcp(seg, REMOTE_IP, LOCAL_IP, checksum="full")
        self.ident = (self.ident + 1) & 0xFFFF
        ip = build_ipv4_header(REMOTE_IP, LOCAL_IP, PROTO_TCP, len(tcp) + len(seg.payload),
                               ttl=64, ident=self.ident, tos=seg.ecn)
        return ip + tcp + bytes(seg.payload)

    def inject(self, frame: bytes, gso_size: int = 0) -> None:
        """Write one IP frame (a segment's, or an ICMP error from the remote host); with
        ``gso_size`` a TCP frame is a GRO packet of segments that size (GSO_TCPV4), as
        packetdrill's --mss injects them."""
        header = NO_OFFLOAD
        if gso_size:
            header = build_vnet(VnetHeader(gso_type=GSO_TCPV4, gso_size=gso_size,
                                           hdr_len=(frame[0] & 0x0F) * 4
                                           + (frame[(frame[0] & 0x0F) * 4 + 12] >> 4) * 4))
        os.write(self.fd, header + frame)

    def _read_loop(self) -> None:
        while not self.stopping.is_set():
            ready, _, _ = select.select([self.fd], [], [], READ_POLL)
            if not ready:
                continue
            while True:
                try:
                    frame = os.read(self.fd, FRAME_MAX)
                except BlockingIOError:
                    break
                except OSError:
                    return
                stamp = time.monotonic()
                seg = parse_outbound(frame[VNET_HDR_LEN:])
                if seg is not None:
                    self.frames.put(Sniffed(stamp, seg))

    def close(self) -> None:
        self.stopping.set()
        self.reader.join(timeout=1.0)
        os.close(self.fd)


def parse_outbound(frame: bytes) -> TcpSegment | None:
    """A TCP segment the kernel sent, or None for anything else (IPv6, ICMP, junk)."""
    if not frame or frame[0] >> 4 != 4:
        return None
    try:
        header, payload = parse_ipv4(frame)
        if header.proto != PROTO_TCP:
            return None
        seg = parse_tcp(payload, header.src, header.dst, verify_checksum=False)
    except ParseError:
        return None
    seg.payload = bytes(seg.payload)
    seg.ecn = header.tos & 0x3
    return seg
