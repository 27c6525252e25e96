"""The virtio-net header that prefixes every TUN read and write with IFF_VNET_HDR.

``struct virtio_net_hdr`` (include/uapi/linux/virtio_net.h), 10 bytes, little-endian on
TUN (the legacy layout tun.c uses unless TUNSETVNETBE is set).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from .checksum import BytesLike
from .errors import ParseError

VNET_HDR_LEN: Final = 10

# flags
NEEDS_CSUM: Final = 1  # checksum partial: finish from csum_start, store at +csum_offset
DATA_VALID: Final = 2  # the checksum was verified

# gso_type
GSO_NONE: Final = 0
GSO_TCPV4: Final = 1
GSO_TCPV6: Final = 4
GSO_ECN: Final = 0x80

_HDR: Final = struct.Struct("<BBHHHH")


@dataclass(slots=True)
class VnetHeader:
    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0


def parse_vnet(buf: BytesLike) -> VnetHeader:
    """The header at the start of ``buf``; the frame follows at :data:`VNET_HDR_LEN`."""
    if len(buf) < VNET_HDR_LEN:
        raise ParseError("vnet_short", f"{len(buf)} bytes")
    return VnetHeader(*_HDR.unpack_from(buf))


def build_vnet(hdr: VnetHeader) -> bytes:
    return _HDR.pack(hdr.flags, hdr.gso_type, hdr.hdr_len, hdr.gso_size, hdr.csum_start,
                     hdr.csum_offset)
