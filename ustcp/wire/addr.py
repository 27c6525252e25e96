"""Packed addresses: 4 bytes for IPv4, 16 for IPv6. The layers above pass them as ``bytes``
and tell the version by the length; these helpers convert to and from text."""

from __future__ import annotations

import socket
from typing import Final

ANY4: Final = bytes(4)  # INADDR_ANY
ANY6: Final = bytes(16)  # in6addr_any
_V4_MAPPED_PREFIX: Final = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96 (RFC 4291 2.5.5.2)


def ntop(ip: bytes) -> str:
    """``10.77.0.2`` or ``fd77::2``."""
    return socket.inet_ntop(socket.AF_INET6 if len(ip) == 16 else socket.AF_INET, ip)


def endpoint(ip: bytes, port: int) -> str:
    """``10.77.0.2:80`` or ``[fd77::2]:80``, as ss prints them."""
    return f"[{ntop(ip)}]:{port}" if len(ip) == 16 else f"{ntop(ip)}:{port}"


def conn_name(key: tuple[bytes, int, bytes, int]) -> str:
    """``10.77.0.2:80>10.77.0.1:40000``: a connection's (local, remote) ends, as its log
    events name it. Made when a log event wants it: formatting costs more than the rest of
    a connection's set-up in the engine."""
    local_ip, local_port, remote_ip, remote_port = key
    return f"{endpoint(local_ip, local_port)}>{endpoint(remote_ip, remote_port)}"


def pton(text: str) -> bytes:
    """An IPv4 dotted quad or an IPv6 literal, packed; a v4-mapped IPv6 literal
    (``::ffff:10.77.0.2``) is the IPv4 address, as Linux's dual-stack sockets treat it.
    Raises ValueError for anything else (no host names, no shorthand like ``10.1``)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            packed = socket.inet_pton(family, text)
        except OSError:
            continue
        return packed[12:] if packed[:12] == _V4_MAPPED_PREFIX else packed
    raise ValueError(f"not an IPv4 or IPv6 address: {text!r}")


def family(ip: bytes) -> int:
    """``AF_INET`` or ``AF_INET6``."""
    return socket.AF_INET6 if len(ip) == 16 else socket.AF_INET


def any_for(ip: bytes) -> bytes:
    """The wildcard address of ``ip``'s family."""
    return ANY6 if len(ip) == 16 else ANY4
