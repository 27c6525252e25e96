"""What a connection and a listener may ask of the TCP layer that holds them: a narrow host
context, as smoltcp hands its sockets a ``cx``. ``engine.TcpEngine`` provides it; nothing
under tcp/ imports the engine itself, so the children cannot reach into its tables.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..config import StackConfig
from ..mib import Counters
from ..wire.tcp import TcpSegment
from .fastopen import FastOpenBlackhole, FastOpenCacheEntry, FastOpenKeys
from .isn import IsnGenerator
from .syncookies import SyncookieSecrets
from .timewait import TimeWaitEntry

Key = tuple[bytes, int, bytes, int]


class Timed(Protocol):
    """An object in the host's timer heap (a connection, a listener)."""

    heap_when: float | None  # the host's bookkeeping: when its heap entry fires

    @property
    def deadline(self) -> float | None: ...

    def on_timer(self, now: float) -> None: ...


class Wakeable(Protocol):
    """An object whose user-visible status can change (readable, writable, closed)."""

    waiter: Any  # owned by the API layer


class Host(Protocol):
    config: StackConfig
    counters: Counters
    isn: IsnGenerator  # initial sequence numbers and TSval offsets (RFC 6528, RFC 7323 5.4)
    cookie_secrets: SyncookieSecrets
    gso_max_size: int
    orphan_count: int  # connections closed by the application, not yet finished
    fastopen_blackhole: FastOpenBlackhole  # active Fast Open paused after timeouts

    def path_mtu(self, remote_ip: bytes) -> int:
        """The path MTU towards ``remote_ip``: the IP layer's knowledge, whatever the
        version (tcp_sync_mss reads it from the route)."""

    def mss_for(self, remote_ip: bytes) -> int:
        """The MSS that path MTU allows, less the headers of ``remote_ip``'s IP version."""

    def update_pmtu(self, now: float, remote_ip: bytes, mtu: int) -> int:
        """An ICMP taught a smaller path MTU towards ``remote_ip``; the path MTU now."""

    def emit(self, src_ip: bytes, dst_ip: bytes, seg: TcpSegment) -> None:
        """A segment for the network."""

    def xmit(self, now: float, src_ip: bytes, dst_ip: bytes, seg: TcpSegment) -> None:
        """A connection's segment for the network, stamped with its departure time
        (``seg.tstamp``): through the host's qdisc, which may hold it until then."""

    def wake(self, obj: Wakeable) -> None:
        """``obj``'s status changed: its waiters are woken."""

    def send_reset_for(self, local_ip: bytes, remote_ip: bytes, seg: TcpSegment) -> None:
        """The RST that answers a segment nobody wants."""

    def challenge_ack_allowed(self, now: float) -> bool:
        """The host-wide challenge ACK budget (RFC 5961 7)."""

    def forget(self, key: Key, obj: Timed) -> None:
        """A finished connection leaves the demultiplexing table and the timer heap."""

    def unlisten(self, local_ip: bytes, port: int, obj: object) -> None:
        """A closed listener leaves the listening table."""

    def peer_is_proven(self, now: float, host: bytes, ts_val: int | None) -> bool:
        """tcp_tw_recycle's per-host PAWS on a SYN (the TIME_WAIT table's memory)."""

    def enter_time_wait(self, now: float, entry: TimeWaitEntry, rto: float) -> None:
        """A connection's TIME_WAIT state, kept by the host's table."""

    def fastopen_keys(self) -> FastOpenKeys:
        """The Fast Open cookie keys, as net.ipv4.tcp_fastopen_key sets them now."""

    def fastopen_cache(self, remote_ip: bytes) -> FastOpenCacheEntry | None:
        """What the client remembers of a server: cookie, MSS (Linux's tcp_metrics)."""

    def fastopen_cache_set(self, remote_ip: bytes, mss: int, cookie: bytes | None, exp: bool,
                           try_exp: int) -> None:
        """Remember what a server's SYN-ACK said (tcp_fastopen_cache_set)."""
