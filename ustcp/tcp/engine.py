"""The TCP layer of one host: demultiplexing, listeners, TIME_WAIT, timers, output.

Sans-IO: the driver (stack.py, the packetdrill runner, tests) feeds segments and timer
ticks with the current time, drains :meth:`TcpEngine.take_output`, and wakes whatever
:meth:`TcpEngine.take_wakeups` names. Nothing here reads a clock or does I/O.

Demultiplexing follows Linux's order (__inet_lookup_skb): an established (or
synchronizing) connection by its 4-tuple, then a TIME_WAIT entry, then a listener on the
address or on the wildcard address; with none, a RST (RFC 9293 3.10.7.1).
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Iterator
from typing import Final, cast

import structlog

from ..config import StackConfig
from ..mib import Counters, Mib
from ..pmtu import PathMtuCache
from ..qdisc import Fq
from ..wire.addr import ANY6, any_for, endpoint
from ..wire.tcp import ACK, RST, SYN, TcpSegment, gso_segments
from . import syncookies
from .buffers import SKB_TRUESIZE
from .connection import Connection
from .fastopen import FastOpenBlackhole, FastOpenCacheEntry, FastOpenKeys
from .host import Timed, Wakeable
from .isn import IsnGenerator
from .listener import Listener
from .options import SockOpts
from .pacing import SK_PACING_FQ
from .seq import seq_add
from .tables import Shrinker
from .timers import TimerHeap
from .timewait import TimeWaitEntry, TimeWaitTable

log = structlog.get_logger("ustcp.tcp")

EPHEMERAL_PORTS: Final = (32768, 60999)  # net.ipv4.ip_local_port_range
FASTOPEN_CACHE_MAX: Final = 1024  # servers whose Fast Open cookie the client keeps
# Entries the timer heap may hold beyond two per connection and listener before its stale
# ones are dropped at once (TimerHeap.compact): amortized O(1) per close.
TIMER_HEAP_SLACK: Final = 64

Key = tuple[bytes, int, bytes, int]
Output = tuple[bytes, bytes, TcpSegment]

# The IP and TCP headers without options: MSS = path MTU less these (tcp_mtu_to_mss)
IPV4_TCP_HEADERS: Final = 40
IPV6_TCP_HEADERS: Final = 60


class _EngineTimer:
    """A table of the engine's own in the engine's timer heap."""

    __slots__ = ("engine", "heap_when")

    def __init__(self, engine: TcpEngine) -> None:
        self.engine = engine
        self.heap_when: float | None = None


class _PmtuExpiry(_EngineTimer):
    """The path MTU table's place in the engine's timer heap."""

    __slots__ = ()

    @property
    def deadline(self) -> float | None:
        return self.engine.pmtu.deadline

    def on_timer(self, now: float) -> None:
        gone = self.engine.pmtu.expire(now)
        if gone:
            self.engine.pmtu_expired(now, gone)


class _QdiscRelease(_EngineTimer):
    """The qdisc's place in the engine's timer heap: its next held packet's time."""

    __slots__ = ()

    @property
    def deadline(self) -> float | None:
        q = self.engine.qdisc
        return q.next_time() if q is not None else None

    def on_timer(self, now: float) -> None:
        self.engine.qdisc_release(now)


class TcpEngine:
    def __init__(self, config: StackConfig, counters: Counters, *, seed: int | None = None,
                 mtu: int = 1500, gso_max_size: int = 0) -> None:
        self.config = config
        self.counters = counters
        self.pmtu = PathMtuCache(config, mtu)
        self._pmtu_timer = _PmtuExpiry(self)
        self.gso_max_size = gso_max_size
        rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self.rng = rng
        key = rng.getrandbits(256).to_bytes(32, "big") if seed is not None else None
        self.isn = IsnGenerator(key)
        self.cookie_secrets = syncookies.SyncookieSecrets(
            key[:16] if key is not None else None)
        self._fastopen_keys = FastOpenKeys("", key[16:] if key is not None else None)
        self._fastopen_default = self._fastopen_keys.keys[0]
        self._fastopen_cache: dict[bytes, FastOpenCacheEntry] = {}  # by server address
        self.fastopen_blackhole = FastOpenBlackhole()
        self.connections: dict[Key, Connection] = {}
        self._connections_size = Shrinker()
        self.listeners: dict[tuple[bytes, int], Listener] = {}
        self.time_wait = TimeWaitTable(self)
        self.orphan_count = 0
        self._output: list[Output] = []
        self._wakeups: set[Wakeable] = set()
        self._born: list[Connection] = []  # registered since the engine last read timers
        # Connections and listeners by their deadline (Timed.heap_when is the live one),
        # and the TIME_WAIT table by its next expiry.
        self._timers: TimerHeap[Timed | TimeWaitTable] = TimerHeap()
        self._challenge_second = -1
        self._challenge_count = 0
        # The qdisc in front of the link (None: a plain FIFO that holds nothing, as pfifo
        # on a TUN device). The packetdrill runner installs fq when a script's `tc` asks.
        self.qdisc: Fq[Output] | None = None
        self._qdisc_timer = _QdiscRelease(self)

    # ------------------------------------------------------------------ driver side

    def take_output(self) -> list[Output]:
        out, self._output = self._output, []
        return out

    def take_wakeups(self) -> set[Wakeable]:
        woken, self._wakeups = self._wakeups, set()
        return woken

    def _live(self, obj: Timed | TimeWaitTable, when: float) -> bool:
        if isinstance(obj, TimeWaitTable):
            return obj.next_deadline() == when
        return obj.heap_when == when

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline(self._live)

    def on_timers(self, now: float) -> None:
        for obj in self._timers.pop_due(now, self._live):
            if isinstance(obj, TimeWaitTable):
                obj.expire(now)
                nxt = obj.next_deadline()
                if nxt is not None:
                    self.note_deadline(nxt)
                continue
            obj.heap_when = None
            obj.on_timer(now)
            self._settle(obj)  # the timers it left armed, whatever the handler changed

    def on_segment(self, now: float, src_ip: bytes, dst_ip: bytes, seg: TcpSegment) -> None:
        """One parsed, checksum-verified segment from the network."""
        c = self.counters
        c.inc(Mib.TcpInSegs)
        if not seg.src_port or not seg.dst_port:
            c.inc(Mib.UstcpDropZeroPort)
            return
        key = (dst_ip, seg.dst_port, src_ip, seg.src_port)
        conn = self.connections.get(key)
        if conn is not None:
            conn.on_segment(now, seg)
            self._touch(conn)  # whatever the segment changed, its timers are re-read here
            return
        tw = self.time_wait.entries.get(key)
        if tw is not None:
            tw_isn = self.time_wait.on_segment(now, tw, seg)
            if tw_isn is None:
                return
            listener = self._find_listener(dst_ip, seg.dst_port)
            if listener is not None:
                listener.on_syn(now, src_ip, seg, dst_ip, tw_isn)
                self._settle(listener)
            return
        listener = self._find_listener(dst_ip, seg.dst_port)
        if listener is not None:
            if seg.flags & (SYN | ACK | RST) == SYN:
                listener.on_syn(now, src_ip, seg, dst_ip)
            else:
                listener.on_segment(now, src_ip, dst_ip, seg)
            self._settle(listener)
            return
        c.inc(Mib.UstcpNoSocket)
        self.send_reset_for(dst_ip, src_ip, seg)

    def on_icmp_error(self, now: float, local_ip: bytes, local_port: int, remote_ip: bytes,
                      remote_port: int, seq: int, err: int, fatal: bool,
                      mtu: int | None = None) -> bool:
        """An ICMP or ICMPv6 error quoting a segment we sent from ``local_ip:local_port`` to
        ``remote_ip:remote_port`` with sequence number ``seq`` (tcp_v4_err, tcp_v6_err):
        ``err`` is the errno it converts to, ``fatal`` whether a half-open request dies of
        it, ``mtu`` the next-hop MTU of a "fragmentation needed" / "packet too big". False
        when no socket matches (the IP layer counts it as an ICMP input error); a TIME_WAIT
        entry ignores it."""
        key = (local_ip, local_port, remote_ip, remote_port)
        conn = self.connections.get(key)
        if conn is not None:
            if mtu is not None:
                conn.on_packet_too_big(now, seq, mtu)
            else:
                conn.on_icmp_error(now, seq, err)
            self._touch(conn)
            return True
        if key in self.time_wait.entries:
            return True
        listener = self._find_listener(local_ip, local_port)
        return listener is not None and listener.on_icmp_error(now, key, seq, fatal)

    # ------------------------------------------------------------------ user side

    def listen(self, now: float, local_ip: bytes, port: int, backlog: int,
               sockopts: SockOpts | None = None) -> Listener:
        """Listen on ``local_ip:port``; port 0 picks a free ephemeral port, as bind() with
        port 0 does (inet_csk_get_port)."""
        if port == 0:
            port = self._pick_listen_port()
        if (local_ip, port) in self.listeners or (any_for(local_ip), port) in self.listeners:
            raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
        listener = Listener(self, local_ip, port, backlog, sockopts or SockOpts(),
                            register=self.register)
        self.listeners[(local_ip, port)] = listener
        log.debug("listen", addr=listener.name, backlog=listener.backlog)
        return listener

    def connect(self, now: float, local_ip: bytes, remote_ip: bytes, remote_port: int,
                local_port: int | None = None, sockopts: SockOpts | None = None,
                fastopen: bytes | None = None) -> Connection:
        """Active open: choose a port (tcp_v4_connect / __inet_hash_connect), send SYN
        (a Fast Open SYN with ``fastopen``, see Connection.start_connect)."""
        opts = sockopts or SockOpts()
        reused = None
        if local_port is None:
            local_port, reused = self._pick_port(now, local_ip, remote_ip, remote_port)
        else:
            key = (local_ip, local_port, remote_ip, remote_port)
            if key in self.connections:
                raise OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))
            if key in self.time_wait.entries:
                reused = self.time_wait.reusable(now, key)
                if reused is None:
                    raise OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))
        conn = Connection(self, local_ip, local_port, remote_ip, remote_port, opts, now)
        self.register(conn)
        conn.start_connect(now, reused, fastopen)
        self._settle(conn)
        return conn

    def _ephemeral_ports(self) -> Iterator[int]:
        """Every port of ip_local_port_range once, from a random one on, wrapping."""
        lo, hi = EPHEMERAL_PORTS
        span = hi - lo + 1
        start = self.rng.randrange(span)
        for i in range(span):
            yield lo + (start + i) % span

    def _pick_listen_port(self) -> int:
        """A port in ip_local_port_range that no listener and no connection uses (on any
        address: the simplest of bind()'s conflict rules)."""
        in_use = {port for _, port in self.listeners}
        in_use.update(key[1] for key in self.connections)
        for port in self._ephemeral_ports():
            if port not in in_use:
                return port
        raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))

    def _pick_port(self, now: float, local_ip: bytes, remote_ip: bytes,
                   remote_port: int) -> tuple[int, TimeWaitEntry | None]:
        for port in self._ephemeral_ports():
            key = (local_ip, port, remote_ip, remote_port)
            if key in self.connections or (local_ip, port) in self.listeners:
                continue
            if key in self.time_wait.entries:
                reused = self.time_wait.reusable(now, key)
                if reused is None:
                    continue
                return port, reused
            return port, None
        raise OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))

    # ------------------------------------------------------------------ for connections

    def register(self, conn: Connection) -> None:
        self.connections[conn.key] = conn
        self._born.append(conn)

    def forget(self, key: Key, obj: Timed) -> None:
        """A finished connection leaves the table and the timer heap: its heap entries
        go stale, and once stale entries outnumber the live ones (a mass close) they are
        dropped, so that nothing holds a closed connection (issue 13, defect 6)."""
        if self.connections.get(key) is obj:
            del self.connections[key]
            self.connections = self._connections_size.after_delete(self.connections)
        obj.heap_when = None
        if len(self._timers) > 2 * (len(self.connections) + len(self.listeners)) \
                + TIMER_HEAP_SLACK:
            self._timers.compact(self._live)

    def unlisten(self, local_ip: bytes, port: int, obj: object) -> None:
        if self.listeners.get((local_ip, port)) is obj:
            del self.listeners[(local_ip, port)]

    def peer_is_proven(self, now: float, host: bytes, ts_val: int | None) -> bool:
        return self.time_wait.peer_is_proven(now, host, ts_val)

    def enter_time_wait(self, now: float, entry: TimeWaitEntry, rto: float) -> None:
        self.time_wait.add(now, entry, rto)

    def tcp_metrics_flush(self) -> None:
        """``ip tcp_metrics flush all``: every server's remembered MSS and cookie go."""
        self._fastopen_cache.clear()

    def fastopen_cache(self, remote_ip: bytes) -> FastOpenCacheEntry | None:
        return self._fastopen_cache.get(remote_ip)

    def fastopen_cookie(self, remote_ip: bytes) -> bytes | None:
        entry = self._fastopen_cache.get(remote_ip)
        return entry.cookie if entry is not None else None

    def fastopen_cache_set(self, remote_ip: bytes, mss: int, cookie: bytes | None, exp: bool,
                           try_exp: int) -> None:
        cache = self._fastopen_cache
        entry = cache.pop(remote_ip, None)
        if entry is None:
            entry = FastOpenCacheEntry()
            if len(cache) >= FASTOPEN_CACHE_MAX:
                del cache[next(iter(cache))]  # the oldest (tcp_metrics reclaims the same way)
        entry.update(mss, cookie, exp, try_exp)
        cache[remote_ip] = entry

    def fastopen_keys(self) -> FastOpenKeys:
        # Made again when the sysctl changes; the random default is drawn once.
        if self._fastopen_keys.text != self.config.tcp_fastopen_key:
            self._fastopen_keys = FastOpenKeys(self.config.tcp_fastopen_key,
                                               self._fastopen_default)
        return self._fastopen_keys

    def _find_listener(self, ip: bytes, port: int) -> Listener | None:
        """The listener on the address, else on its family's wildcard, else (for IPv4) on
        the IPv6 wildcard unless it is IPV6_V6ONLY (inet6_bind: ``::`` takes both)."""
        found = self.listeners.get((ip, port)) or self.listeners.get((any_for(ip), port))
        if found is None and len(ip) == 4:
            dual = self.listeners.get((ANY6, port))
            if dual is not None and not dual.sockopts.v6only:
                return dual
        return found

    def path_mtu(self, remote_ip: bytes) -> int:
        """The MTU towards ``remote_ip``: the link's, or less if an ICMP taught so."""
        return self.pmtu.get(remote_ip)

    def update_pmtu(self, now: float, remote_ip: bytes, mtu: int) -> int:
        """Learn a smaller path MTU (inet_csk_update_pmtu); the path MTU now."""
        pmtu = self.pmtu.update(now, remote_ip, mtu)
        self._touch(self._pmtu_timer)
        return pmtu

    def pmtu_expired(self, now: float, dsts: list[bytes]) -> None:
        """Learned path MTUs ran out: connections to those hosts resync their MSS."""
        gone = set(dsts)
        for conn in list(self.connections.values()):
            if conn.remote_ip in gone:
                conn.sync_mss(now)
                self._touch(conn)

    def mss_for(self, remote_ip: bytes) -> int:
        """The MSS the path MTU towards ``remote_ip`` allows without options
        (tcp_mtu_to_mss): less 40 bytes of headers over IPv4, 60 over IPv6."""
        headers = IPV6_TCP_HEADERS if len(remote_ip) == 16 else IPV4_TCP_HEADERS
        return self.path_mtu(remote_ip) - headers

    def emit(self, src_ip: bytes, dst_ip: bytes, seg: TcpSegment) -> None:
        self.counters.inc(Mib.TcpOutSegs, seg.pcount)  # __tcp_transmit_skb: per wire segment
        self._to_link(src_ip, dst_ip, seg)

    def _to_link(self, src_ip: bytes, dst_ip: bytes, seg: TcpSegment) -> None:
        """Out to the driver: a GSO packet cut into MSS segments first when the link takes
        none (software GSO, after the qdisc as in Linux's dev_hard_start_xmit)."""
        if seg.gso_size and not self.gso_max_size:
            self._output.extend((src_ip, dst_ip, piece)
                                for piece in gso_segments(seg, seg.gso_size))
        else:
            self._output.append((src_ip, dst_ip, seg))

    def xmit(self, now: float, src_ip: bytes, dst_ip: bytes, seg: TcpSegment) -> None:
        """A connection's segment, through the qdisc: fq files it under the connection
        (and marks it SK_PACING_FQ, fq_classify) and holds it until ``seg.tstamp``; what
        it holds is charged to the connection (sk_wmem_alloc, for TCP Small Queues)."""
        q = self.qdisc
        if q is None:
            self.emit(src_ip, dst_ip, seg)
            return
        self.counters.inc(Mib.TcpOutSegs, seg.pcount)
        key = (src_ip, seg.src_port, dst_ip, seg.dst_port)
        conn = self.connections.get(key)
        if conn is not None:
            conn.snd.ccs.pacing_status = SK_PACING_FQ  # fq's rate_enable (the default)
        held = q.enqueue(now, key, (src_ip, dst_ip, seg), seg.tstamp)
        if held is None:
            self._to_link(src_ip, dst_ip, seg)
            return
        if held:
            if conn is not None:
                conn.snd.wmem_alloc += len(seg.payload) + SKB_TRUESIZE
            self._touch(self._qdisc_timer)

    def qdisc_release(self, now: float) -> None:
        """The qdisc gives out what is due; each packet's release uncharges its connection,
        and a connection TCP Small Queues held back sends again (tcp_wfree, tcp_tsq_write)."""
        q = self.qdisc
        if q is None:
            return
        woken: list[Connection] = []
        for key, (src_ip, dst_ip, seg) in q.dequeue(now):
            self._to_link(src_ip, dst_ip, seg)
            conn = self.connections.get(cast(Key, key))
            if conn is None:
                continue
            conn.snd.wmem_alloc -= len(seg.payload) + SKB_TRUESIZE
            if conn.snd.tsq_throttled:
                conn.snd.tsq_throttled = False
                woken.append(conn)
        for conn in woken:
            conn.tsq_write(now)
            self._touch(conn)
        self._touch(self._qdisc_timer)

    def wake(self, obj: Wakeable) -> None:
        self._wakeups.add(obj)

    def release(self, obj: Connection | Listener | None) -> None:
        """The door every user call on a socket goes out through (Linux release_sock): the
        engine re-reads the timers of the connection or listener the call reached, so no
        user method has to remember to. The trio driver (Stack.call), the packetdrill
        runner and the engine tests' harness call it after each call they make."""
        if obj is not None:
            self._settle(obj)

    def _settle(self, obj: Timed) -> None:
        """Re-read the timers of what the engine handed a segment, a timer or a user call
        to, and of the connections that call brought into the table (a listener's
        children, a connect's socket)."""
        self._touch(obj)
        born = self._born
        if born:
            for conn in born:
                self._touch(conn)
            born.clear()

    def _touch(self, obj: Timed) -> None:
        """Re-evaluate a connection's or listener's timers after it changed. A timer that
        moves later costs nothing: the old heap entry fires, finds nothing due and
        reschedules. Only an earlier deadline pushes a new entry. With no timer left the
        entry goes stale, so it never fires: a closed connection's last RTO or SYN-ACK
        timer would otherwise wake the driver's timer task once per connection."""
        deadline = obj.deadline
        if deadline is None:
            obj.heap_when = None
            return
        if obj.heap_when is None or deadline < obj.heap_when:
            obj.heap_when = deadline
            self._timers.push(deadline, obj)

    def note_deadline(self, when: float) -> None:
        self._timers.push(when, self.time_wait)

    def challenge_ack_allowed(self, now: float) -> bool:
        """The global tcp_challenge_ack_limit per second (RFC 5961 7)."""
        second = int(now)
        if second != self._challenge_second:
            self._challenge_second = second
            self._challenge_count = 0
        self._challenge_count += 1
        return self._challenge_count <= self.config.tcp_challenge_ack_limit

    def send_reset_for(self, local_ip: bytes, remote_ip: bytes, seg: TcpSegment) -> None:
        """The RST that answers a segment nobody wants (RFC 9293 3.10.7.1,
        tcp_v4_send_reset): never in reply to a RST; no options, window 0."""
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            rst = TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
        else:
            rst = TcpSegment(seg.dst_port, seg.src_port, 0, seq_add(seg.seq, seg.seg_len),
                             RST | ACK, 0)
        self.counters.inc(Mib.TcpOutRsts)
        log.debug("reset_sent", peer=endpoint(remote_ip, seg.src_port),
                  port=seg.dst_port)
        self.emit(local_ip, remote_ip, rst)
