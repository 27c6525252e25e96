"""``ustcp serve`` and ``ustcp connect``: a stack on a TUN device of its own.

Both create the TUN device in the current network namespace and give the kernel's side the
``--peer`` address (TunLink refuses to do that in the host's own namespace: run them inside
a netns, as ``make run`` does). The device is not persistent: it disappears when the
process closes it, on exit.
"""

from __future__ import annotations

import argparse
import functools
import gc
import ipaddress
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from ustcp import ENGINE, __version__
from ustcp.api import (
    TCPListener,
    TCPStream,
    open_tcp_listeners,
    open_tcp_stream,
    serve_listeners,
)
from ustcp.apps import DEFAULT_PORTS, Handler
from ustcp.apps.http import DEADLINES as HTTP_DEADLINES
from ustcp.apps.spec import AppSpec, AppSpecError, parse_apps
from ustcp.callbacks import CallbackApp, serve_callbacks
from ustcp.config import StackConfig, SysctlError
from ustcp.link.base import Link
from ustcp.link.impair import parse_impairments
from ustcp.link.impaired import ImpairedLink
from ustcp.link.pcap import PcapTap
from ustcp.link.ring import RingTap
from ustcp.link.tun import TunLink
from ustcp.mib import Counters, Mib
from ustcp.obs import control, memory, ss, sysctl, web
from ustcp.obs.log import configure_logging
from ustcp.obs.nstat import Nstat
from ustcp.stack import Stack
from ustcp.tcp.connection import Connection
from ustcp.tcp.states import State
from ustcp.wire.addr import endpoint
from ustcp.workers import MAX_WORKERS, Worker, control_name, supervise

log = structlog.get_logger("ustcp.daemon")

CAP_NET_ADMIN = 12
LINGER = 2.0  # seconds `connect` waits for its FIN to be acknowledged before leaving
# IPv4 needs 68 (RFC 791), but TCP needs its MSS (MTU - 40) to reach Linux's TCP_MIN_MSS,
# 88 (include/net/tcp.h): below that Linux would clamp the MSS above what the link carries.
MIN_MTU = 128
MAX_TXQUEUELEN = 1_000_000
MAX_IDLE_TIMEOUT = 86400.0
MAX_SHUTDOWN_GRACE = 3600.0  # s: a stop must come in bounded time
RESET_LINGER = 0.5  # s the stack keeps answering after the shutdown's resets
GRACE_POLL = 0.05  # s between looks at the connection table during the grace period
TRIM_INTERVAL = 5.0  # s between looks at the connection count for MemoryTrimmer
TRIM_MIN_DROP = 1000  # connections: a smaller fall is not a burst worth a full gc
MAX_MTU = 65535


class Refusal(Exception):
    """A reason not to start, printed as one line: ``status`` 2 for usage, 1 otherwise."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Setup:
    """What ``serve`` and ``connect`` share, checked before anything is created."""

    config: StackConfig
    addr: bytes
    addr6: bytes | None  # None: IPv4 only (--addr6 none)
    apps: list[AppSpec]
    metrics_port: int | None = None


def _metrics_port(args: argparse.Namespace, apps: list[AppSpec]) -> int | None:
    """``--metrics [HOST:]PORT``: HOST, if given, must be the stack's own address."""
    if args.metrics is None:
        return None
    host, _, port = args.metrics.rpartition(":")
    if host not in ("", args.addr, "0.0.0.0") or not port.isdigit() \
            or not 0 < int(port) < 65536:
        raise Refusal(f"bad --metrics {args.metrics!r}: expected [{args.addr}:]PORT (the "
                      "stack serves it on its own address)", 2)
    if any(app.port == int(port) for app in apps):
        raise Refusal(f"bad --metrics {args.metrics!r}: port {port} is already taken", 2)
    return int(port)


def _check(args: argparse.Namespace) -> Setup:
    config = StackConfig()
    try:
        for warning in config.apply(args.sysctl):
            print(warning, file=sys.stderr)
    except SysctlError as exc:
        raise Refusal(f"--sysctl: {exc}", 2) from exc
    try:  # dotted quad only: inet_aton would take "10.77.2" as 10.77.0.2
        addr = ipaddress.IPv4Address(args.addr).packed
    except ValueError as exc:
        raise Refusal(f"bad --addr {args.addr!r}: expected an IPv4 address", 2) from exc
    try:
        peer = ipaddress.IPv4Interface(args.peer)
    except ValueError as exc:
        raise Refusal(f"bad --peer {args.peer!r}: expected KERNEL_IP/PREFIX", 2) from exc
    if ipaddress.IPv4Address(addr) not in peer.network or ipaddress.IPv4Address(addr) == peer.ip:
        # The kernel routes to the stack through the device's prefix only.
        raise Refusal(f"bad --addr {args.addr}: the kernel reaches the stack only inside "
                      f"--peer's {peer.network}, at an address other than its own {peer.ip}", 2)
    addr6 = _check_v6(args)
    if args.impair:
        try:
            parse_impairments(args.impair)
        except ValueError as exc:
            raise Refusal(f"--impair: {exc}", 2) from exc
    if not MIN_MTU <= args.mtu <= MAX_MTU:
        raise Refusal(f"bad --mtu {args.mtu}: expected {MIN_MTU}..{MAX_MTU}", 2)
    if not 1 <= args.txqueuelen <= MAX_TXQUEUELEN:
        raise Refusal(f"bad --txqueuelen {args.txqueuelen}: expected 1..{MAX_TXQUEUELEN}", 2)
    for assignment in getattr(args, "http_deadline", None) or []:
        try:
            HTTP_DEADLINES.set(assignment)
        except ValueError as exc:
            raise Refusal(f"bad --http-deadline {assignment!r}: {exc}", 2) from exc
    if args.command == "serve" and not 0 <= args.idle_timeout <= MAX_IDLE_TIMEOUT:
        raise Refusal(f"bad --idle-timeout {args.idle_timeout:g}: expected "
                      f"0..{MAX_IDLE_TIMEOUT:g} seconds (0: none)", 2)
    if args.command == "serve" and not 0 <= args.shutdown_grace <= MAX_SHUTDOWN_GRACE:
        raise Refusal(f"bad --shutdown-grace {args.shutdown_grace:g}: expected "
                      f"0..{MAX_SHUTDOWN_GRACE:g} seconds", 2)
    workers = getattr(args, "workers", 1)
    if not 1 <= workers <= MAX_WORKERS:
        raise Refusal(f"bad --workers {workers}: expected 1..{MAX_WORKERS}", 2)
    if workers > 1 and (args.pcap or getattr(args, "web", None) is not None):
        raise Refusal("--workers above 1 takes neither --pcap nor --web (one file, one "
                      "page: each worker sees only its own connections)", 2)
    if args.pcap and not os.path.isdir(os.path.dirname(os.path.abspath(args.pcap))):
        raise Refusal(f"bad --pcap {args.pcap!r}: its directory does not exist", 2)
    apps = []
    if args.command == "serve":
        default = [f"{name}:{port}" for name, port in DEFAULT_PORTS.items()]
        try:
            apps = parse_apps(args.app or default)
        except AppSpecError as exc:
            raise Refusal(str(exc), 2) from exc
    metrics_port = _metrics_port(args, apps) if args.command == "serve" else None
    web_port = getattr(args, "web", None)
    if web_port is not None and (not 0 < web_port < 65536 or web_port == metrics_port
                                 or any(app.port == web_port for app in apps)):
        raise Refusal(f"bad --web {web_port}: expected a free port 1..65535", 2)
    _check_privileges()
    return Setup(config, addr, addr6, apps, metrics_port)


def _check_v6(args: argparse.Namespace) -> bytes | None:
    """``--addr6``/``--peer6``: the stack's IPv6 address inside the kernel side's prefix."""
    if args.addr6 == "none":
        return None
    try:
        addr6 = ipaddress.IPv6Address(args.addr6)
    except ValueError as exc:
        raise Refusal(f"bad --addr6 {args.addr6!r}: expected an IPv6 address or 'none'",
                      2) from exc
    try:
        peer6 = ipaddress.IPv6Interface(args.peer6)
    except ValueError as exc:
        raise Refusal(f"bad --peer6 {args.peer6!r}: expected KERNEL_IP6/PREFIX", 2) from exc
    if addr6 not in peer6.network or addr6 == peer6.ip or addr6.is_multicast:
        raise Refusal(f"bad --addr6 {args.addr6}: the kernel reaches the stack only inside "
                      f"--peer6's {peer6.network}, at an address other than its own "
                      f"{peer6.ip}", 2)
    return addr6.packed


def _has_cap_net_admin() -> bool:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return False


def _check_privileges() -> None:
    if os.geteuid() != 0 and not _has_cap_net_admin():
        raise Refusal("creating a TUN device needs root or CAP_NET_ADMIN (try sudo)", 1)
    if not os.path.exists("/dev/net/tun"):
        raise Refusal("/dev/net/tun does not exist (load the tun module: modprobe tun)", 1)


def _open_tun(args: argparse.Namespace, counters: Counters, *, multi_queue: bool = False,
              attach: bool = False) -> TunLink:
    """The device (or with ``attach`` one more queue of it), its failures as Refusals."""
    try:
        return TunLink(args.tun, args.mtu, args.offload == "on",
                       kernel_addr=None if attach else args.peer,
                       kernel_addr6=None if attach or args.addr6 == "none" else args.peer6,
                       counters=counters, txqueuelen=args.txqueuelen,
                       multi_queue=multi_queue, attach=attach)
    except PermissionError as exc:
        raise Refusal(f"cannot create TUN device {args.tun!r}: {exc.strerror or exc}", 1) from exc
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace").strip() if exc.stderr else ""
        raise Refusal(f"cannot give the kernel side {args.peer} and {args.peer6}: "
                      f"{stderr or exc}", 1) from exc
    except OSError as exc:
        raise Refusal(f"cannot create TUN device {args.tun!r}: {exc.strerror or exc}", 1) from exc


def _open_link(args: argparse.Namespace, counters: Counters,
               worker: Worker | None = None) -> tuple[Link, TunLink]:
    tun = _open_tun(args, counters, multi_queue=worker is not None, attach=worker is not None)
    if worker is not None:
        worker.attached()
    link: Link = tun
    if args.impair:
        spec_in, spec_out = parse_impairments(args.impair)
        link = ImpairedLink(link, spec_in, spec_out, counters=counters)
    if args.pcap:
        try:
            link = PcapTap(link, args.pcap)
        except OSError as exc:
            raise Refusal(f"cannot write --pcap {args.pcap!r}: {exc.strerror or exc}",
                          1) from exc
    return link, tun


def _netns_name() -> str:
    """The name `ip netns` knows this namespace by, or "" when it has none."""
    try:
        done = subprocess.run(["ip", "netns", "identify", str(os.getpid())],
                              capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _ustcp_command() -> str:
    if os.path.basename(sys.argv[0]) == "ustcp":
        return os.path.abspath(sys.argv[0])
    return f"{sys.executable} -m ustcp.cli"


def _banner(args: argparse.Namespace, apps: list[AppSpec], link: Link, workers: int) -> str:
    ns = _netns_name()
    prefix = f"ip netns exec {ns} " if ns else ""
    where = f"network namespace {ns!r}" if ns else "this network namespace"
    lines = [
        f"ustcp {__version__} serving on {_addrs(args)} (device {args.tun}, kernel side "
        f"{args.peer}{'' if args.addr6 == 'none' else ' ' + args.peer6}, mtu {args.mtu}, "
        f"offload {'on' if link.gso_max_size else 'off'}, engine {ENGINE}"
        f"{f', {workers} workers' if workers > 1 else ''}) in {where}",
        "apps: " + " ".join(f"{app.port}={app.label}" for app in apps),
        "reach it with:",
    ]
    ports = {app.label: app.port for app in apps}
    if "http" in ports:
        port = "" if ports["http"] == 80 else f":{ports['http']}"
        lines.append(f"  {prefix}curl http://{args.addr}{port}/")
    if "echo" in ports:
        lines.append(f"  {prefix}nc -N {args.addr} {ports['echo']}")
    lines.append(f"  {prefix}ping -c 3 {args.addr}")
    if args.addr6 != "none":
        if "http" in ports:
            port = "" if ports["http"] == 80 else f":{ports['http']}"
            lines.append(f"  {prefix}curl -6 http://[{args.addr6}]{port}/")
        lines.append(f"  {prefix}ping -6 -c 3 {args.addr6}")
    if args.metrics:
        port = args.metrics.rpartition(":")[2]
        lines.append(f"  {prefix}curl http://{args.addr}:{port}/metrics    # Prometheus")
    if getattr(args, "web", None) is not None:
        lines.append(f"  {prefix}chromium http://{args.addr}:{args.web}/    # the live view")
    lines.append(f"  {prefix}{_ustcp_command()} nstat")
    lines.append("Ctrl-C (SIGINT) or SIGTERM stops it.")
    return "\n".join(lines)


def _addrs(args: argparse.Namespace) -> str:
    return args.addr if args.addr6 == "none" else f"{args.addr} and {args.addr6}"


def _announce(args: argparse.Namespace, apps: list[AppSpec], link: Link, workers: int) -> None:
    """The banner, on stderr: readable lines, or with ``--log-format json`` one event
    (stdout stays free for ``--pcap -``)."""
    if args.log_format == "json":
        log.info("serving", addr=args.addr, addr6=None if args.addr6 == "none" else args.addr6,
                 tun=args.tun, peer=args.peer, mtu=args.mtu,
                 offload=bool(link.gso_max_size), engine=ENGINE, workers=workers,
                 netns=_netns_name() or None, apps={app.port: app.label for app in apps})
    else:
        print(_banner(args, apps, link, workers), file=sys.stderr, flush=True)


def _control_server(name: str, stack: Stack, counters: Counters,
                    tun: TunLink, worker: Worker | None) -> control.ControlServer:
    index = worker.index if worker is not None else 0
    # Worker 0 tells clients how many workers to ask, and alone reports the device's
    # own counters (one device: the others would count them again).
    server = control.ControlServer(control_name(name, index),
                                   workers=worker.count if worker and not index else 1)
    server.add("nstat", Nstat(counters, None if index else tun.device_counters))
    server.add("ss", ss.control_command(stack.engine))
    server.add("sysctl", sysctl.control_command(stack.config))
    server.add("memory", memory.control_command(stack))
    server.add_stream("trace", control.trace_events)
    return server


async def _until_signal(cancel: Callable[[], Any]) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("shutdown", signal=signal.Signals(signum).name)
            cancel()
            return


def _stack(link: Link, setup: Setup, counters: Counters, seed: int | None,
           worker: Worker | None) -> Stack:
    if worker is None:
        return Stack(link, setup.config, counters, setup.addr, seed=seed,
                     local_addr6=setup.addr6)
    # The shared seed gives every worker the same ISN key and syncookie secrets (a cookie
    # one worker sent validates in another); ephemeral ports come from a generator of
    # each worker's own, so two workers' active opens do not collide.
    stack = Stack(link, setup.config, counters, setup.addr, seed=worker.seed,
                  local_addr6=setup.addr6)
    stack.engine.rng = random.Random(f"{worker.seed}/{worker.index}")
    return stack


async def _serve(args: argparse.Namespace, setup: Setup, worker: Worker | None = None) -> None:
    memory.keep_heap_for_buffers()
    counters = Counters()
    link, tun = _open_link(args, counters, worker)
    ring = None
    if args.web is not None:
        link = ring = RingTap(link)
    try:
        stack = _stack(link, setup, counters, args.seed, worker)
        server = _control_server(args.control, stack, counters, tun, worker)
        reaper = IdleReaper(args.idle_timeout, counters)
        try:
            ctl = await server.bind()
        except OSError as exc:
            raise Refusal(f"control socket @{args.control}: {exc.strerror} (is another "
                          "daemon running in this namespace? --control NAME)", 1) from exc
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stack.run)
                nursery.start_soon(server.serve, ctl)
                if reaper.timeout:
                    nursery.start_soon(reaper.sweep)
                if os.environ.get("USTCP_NO_TRIM") is None:
                    nursery.start_soon(MemoryTrimmer(stack).run)
                async with trio.open_nursery() as handlers:
                    async with trio.open_nursery() as acceptors:

                        hosts = [args.addr] if setup.addr6 is None else [args.addr,
                                                                         args.addr6]

                        async def serve(port: int,
                                        handler: Callable[[TCPStream], Awaitable[None]]) -> None:
                            listeners = await _listen(stack, port, hosts)
                            acceptors.start_soon(functools.partial(
                                serve_listeners, handler, listeners, handler_nursery=handlers))

                        for app in setup.apps:
                            if isinstance(app.handler, CallbackApp):
                                listeners = await _listen(stack, app.port, hosts)
                                acceptors.start_soon(serve_callbacks, stack,
                                                     [lst.listener for lst in listeners],
                                                     app.handler,
                                                     reaper if reaper.timeout else None)
                            else:
                                await serve(app.port, reaper.wrap(app.handler))
                        if setup.metrics_port is not None:
                            from ustcp.apps.metrics import metrics_app

                            await serve(setup.metrics_port, metrics_app(counters))
                        if ring is not None:
                            await serve(args.web, web.handler(stack, ring))
                        if worker is None or worker.index == 0:
                            _announce(args, setup.apps, link,
                                      worker.count if worker is not None else 1)
                        async for signum in signals:
                            log.info("shutdown", signal=signal.Signals(signum).name,
                                     grace=args.shutdown_grace,
                                     connections=stack.open_connections())
                            break
                        acceptors.cancel_scope.cancel()  # the listeners close
                    await _grace(stack, args.shutdown_grace, signals)
                    handlers.cancel_scope.cancel()
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await link.aclose()


async def _listen(stack: Stack, port: int, hosts: list[str]) -> list[TCPListener]:
    """The daemon's listeners on ``port``, one per address."""
    return [lst for host in hosts for lst in await open_tcp_listeners(stack, port, host=host)]


class IdleReaper:
    """``--idle-timeout``: an app's connection that moves no byte either way (nothing
    received, nothing of ours acknowledged) for ``timeout`` seconds is ended: its handler is
    cancelled and the stream closed (FIN; RST if unread data is discarded), counted as
    ``UstcpAppIdleTimeouts``. Linux has no such timer (keepalive finds dead peers, not
    idle live ones); without it a connection whose peer went silent, or whose echo was
    lost with every retransmission, would hold its task and memory forever.

    One task sweeps all connections every ``timeout / 4`` seconds and ends those that
    made no progress for ``timeout``, so a connection ends between 1 and 1.25 timeouts
    after its last byte; there is no per-connection timer task, and the per-connection
    cancel scope has no deadline (a deadline would cost trio a heap entry per connection
    and one more per push-back). An app on socket callbacks is watched the same way
    (:meth:`watch`) and ended by closing its socket."""

    def __init__(self, timeout: float, counters: Counters) -> None:
        self.timeout = timeout
        self.counters = counters
        # conn -> how to end it, its progress at the last sweep, and when it moved
        self.watched: dict[Connection, tuple[Callable[[], None], int, float]] = {}

    @staticmethod
    def _progress(conn: Connection) -> int:
        return conn.rcv.bytes_received + conn.snd.bytes_acked

    def watch(self, conn: Connection, expire: Callable[[], None]) -> None:
        """Call ``expire`` once if ``conn`` stops moving for the timeout."""
        self.watched[conn] = (expire, self._progress(conn), trio.current_time())

    def unwatch(self, conn: Connection) -> None:
        self.watched.pop(conn, None)

    def wrap(self, handler: Handler) -> Callable[[TCPStream], Awaitable[None]]:
        if not self.timeout:
            return handler

        async def run(stream: TCPStream) -> None:
            conn = stream.connection
            with trio.CancelScope() as scope:
                self.watch(conn, scope.cancel)
                try:
                    await handler(stream)
                finally:
                    self.unwatch(conn)
            if scope.cancelled_caught:
                await stream.aclose()

        return run

    async def sweep(self) -> None:
        while True:
            await trio.sleep(self.timeout / 4)
            now = trio.current_time()
            expired = []
            for conn, (expire, seen, moved) in self.watched.items():
                progress = self._progress(conn)
                if progress != seen:
                    # same key: safe while iterating
                    self.watched[conn] = (expire, progress, now)
                elif now - moved >= self.timeout:
                    expired.append(conn)
            for conn in expired:
                expire = self.watched.pop(conn)[0]
                self.counters.inc(Mib.UstcpAppIdleTimeouts)
                log.debug("app_idle_timeout", conn=endpoint(conn.remote_ip, conn.remote_port))
                expire()


class MemoryTrimmer:
    """Give memory back after a burst, at a quiet point. A closed connection's objects
    are freed by reference counting only in part: a Connection and its Sender and Receiver
    refer to one another, so the rest waits for a full collection, which CPython runs
    only when the oldest generation has grown by a quarter, never in a daemon gone idle.
    And the process keeps the pages: glibc keeps freed heap at its high-water mark.

    Every :data:`TRIM_INTERVAL` seconds this looks at the number of open connections.
    Once it has fallen by at least :data:`TRIM_MIN_DROP` from its peak since the last
    trim, and has stopped falling (it moved by less than a tenth of that since the last
    look: the closes are over), a full ``gc.collect()`` frees what cycles held and
    ``malloc_trim(0)`` returns free heap pages to the kernel; logged as ``memory_trim``
    with the RSS before and after. What stays is in CPython's small-object arenas, which
    go back only when entirely empty (docs/reliability.md)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.peak = 0
        self.last = 0  # the count at the last look
        self._trim = memory.malloc_trim()  # None (not glibc): gc alone

    async def run(self) -> None:
        while True:
            await trio.sleep(TRIM_INTERVAL)
            self.check()

    def check(self) -> None:
        now = self.stack.open_connections()
        self.peak = max(self.peak, now)
        quiet = abs(now - self.last) < TRIM_MIN_DROP // 10
        self.last = now
        if self.peak - now >= TRIM_MIN_DROP and quiet:
            before = memory.rss_kb()
            gc.collect()
            if self._trim is not None:
                self._trim(0)
            log.info("memory_trim", connections=now, peak=self.peak, rss_kb_before=before,
                     rss_kb_after=memory.rss_kb())
            self.peak = now


async def _grace(stack: Stack, grace: float, signals: AsyncIterator[int]) -> None:
    """Shutdown after the listeners closed: the connections get ``grace`` seconds to finish
    (a second SIGINT/SIGTERM ends the wait), then what remains is reset."""
    with trio.move_on_after(grace):
        async with trio.open_nursery() as nursery:

            async def second_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(second_signal)
            while stack.open_connections():
                await trio.sleep(GRACE_POLL)
            nursery.cancel_scope.cancel()
    log.info("shutdown_reset", connections=stack.reset_all())
    # A RST the peer finds in its window but not at rcv_nxt (data of ours it never got) is
    # answered with a challenge ACK (RFC 5961 3.2); the stack runs a moment longer so that
    # ACK meets no connection and gets a RST at its own ACK number, which the peer accepts.
    await trio.sleep(RESET_LINGER)


async def _pipe(stream: TCPStream) -> None:
    """stdin to the connection (then a FIN), the connection to stdout, until the peer's FIN.

    FdStream makes the (shared) file descriptions non-blocking; they are put back as they
    were, so a terminal is left as it was found.
    """
    was_blocking = {fd: os.get_blocking(fd) for fd in (0, 1)}
    try:
        await _copy_both_ways(stream)
    finally:
        for fd, blocking in was_blocking.items():
            os.set_blocking(fd, blocking)


async def _copy_both_ways(stream: TCPStream) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(0))
    stdout = trio.lowlevel.FdStream(os.dup(1))

    async def upstream() -> None:
        async with stdin:
            while data := await stdin.receive_some(65536):
                await stream.send_all(data)
        await stream.send_eof()

    async with stdout, trio.open_nursery() as nursery:
        nursery.start_soon(upstream)
        while data := await stream.receive_some():
            await stdout.send_all(data)
        nursery.cancel_scope.cancel()


async def _linger(stream: TCPStream) -> None:
    """Close, and give the FIN and the last ACKs a moment to leave before the device goes."""
    await stream.aclose()
    conn = stream.connection
    with trio.move_on_after(LINGER):
        while conn.state not in (State.CLOSE, State.TIME_WAIT):
            await trio.sleep(0.01)


async def _connect(args: argparse.Namespace, setup: Setup) -> None:
    counters = Counters()
    link, _ = _open_link(args, counters)
    try:
        stack = Stack(link, setup.config, counters, setup.addr, seed=args.seed,
                      local_addr6=setup.addr6)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_until_signal, nursery.cancel_scope.cancel)
            nursery.start_soon(stack.run)
            await _session(args, stack)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await link.aclose()


async def _session(args: argparse.Namespace, stack: Stack) -> None:
    try:
        stream = await open_tcp_stream(stack, args.host, args.port)
    except OSError as exc:
        raise Refusal(f"connect to {_hostport(args.host, args.port)}: "
                      f"{exc.strerror or type(exc).__name__}", 1) from exc
    try:
        await _pipe(stream)
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        reason = cause.strerror if isinstance(cause, OSError) else None
        raise Refusal(f"connection to {_hostport(args.host, args.port)} broken: "
                      f"{reason or exc}",
                      1) from exc
    await _linger(stream)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _serve_workers(args: argparse.Namespace, setup: Setup) -> int:
    """``serve --workers N`` (:mod:`ustcp.workers`): the device's first queue opened and
    configured here, then N worker processes, each with a queue of its own."""
    first = _open_tun(args, Counters(), multi_queue=True)

    def run_worker(worker: Worker) -> int:
        def body() -> int:
            trio.run(_serve, args, setup, worker)
            return 0

        return _exit_status(body, f"ustcp: worker {worker.index}")

    return supervise(args.workers, args.seed, first.close_fd, run_worker)


def _exit_status(body: Callable[[], int], who: str = "ustcp") -> int:
    """``body()``'s exit status; a Refusal is one line on stderr and its status, Ctrl-C 0."""
    status = 0
    try:
        status = body()
    except* Refusal as group:
        refusal = group.exceptions[0]
        assert isinstance(refusal, Refusal)
        print(f"{who}: {refusal}", file=sys.stderr)
        status = refusal.status
    except* KeyboardInterrupt:
        pass
    return status


def run(args: argparse.Namespace) -> int:
    """Run ``serve`` or ``connect``; the process exit status."""

    def body() -> int:
        setup = _check(args)
        configure_logging(args.log_format, args.log_level)
        if setup.config.tcp_tw_recycle:
            log.warning("tcp_tw_recycle", note="removed in Linux 4.12: its per-host PAWS "
                        "drops the SYNs of clients behind a NAT; ustcp keeps it to show why")
        if args.command == "serve" and args.workers > 1:
            return _serve_workers(args, setup)
        trio.run(_serve if args.command == "serve" else _connect, args, setup)
        return 0

    return _exit_status(body)
