"""Initial sequence numbers and timestamp offsets (RFC 6528, Linux secure_tcp_seq).

ISN = M + F(localip, localport, remoteip, remoteport, secret): M is a clock ticking every
4 microseconds, F a keyed hash. Linux uses SipHash; we use keyed BLAKE2b, which has the
same property: without the key the next ISN of a 4-tuple cannot be guessed. The timestamp
offset (Linux secure_tcp_ts_off) is a keyed hash of the address pair, so TSval does not reveal
uptime and stays monotonic per peer.
"""

from __future__ import annotations

import hashlib
import secrets


class IsnGenerator:
    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def _hash(self, *parts: bytes) -> int:
        h = hashlib.blake2b(b"".join(parts), key=self._key, digest_size=4)
        return int.from_bytes(h.digest(), "big")

    def isn(self, now: float, local_ip: bytes, local_port: int,
            remote_ip: bytes, remote_port: int) -> int:
        ports = local_port.to_bytes(2, "big") + remote_port.to_bytes(2, "big")
        f = self._hash(b"isn", local_ip, remote_ip, ports)
        return (f + int(now * 250_000)) & 0xFFFFFFFF  # M: 4 µs ticks (RFC 6528 section 3)

    def ts_offset(self, local_ip: bytes, remote_ip: bytes) -> int:
        return self._hash(b"ts", local_ip, remote_ip)
