"""``ustcp serve`` and ``ustcp connect``: a stack on a TUN device of its own.

Both create the TUN device in the current network namespace and give the kernel's side the
``--peer`` address (TunLink refuses to do that in the host's own namespace: run them inside
a netns, as ``make run`` does). The device is not persistent: it disappears when the
process closes it, on exit.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from ustcp import __version__
from ustcp.api import TCPStream, open_tcp_listeners, open_tcp_stream, serve_listeners
from ustcp.apps import DEFAULT_PORTS
from ustcp.apps.spec import AppSpec, AppSpecError, parse_apps
from ustcp.config import StackConfig, SysctlError
from ustcp.link.base import Link
from ustcp.link.impair import parse_impairments
from ustcp.link.impaired import ImpairedLink
from ustcp.link.pcap import PcapTap
from ustcp.link.ring import RingTap
from ustcp.link.tun import TunLink
from ustcp.obs import control, ss, sysctl, web
from ustcp.obs.counters import Counters
from ustcp.obs.log import configure_logging
from ustcp.obs.nstat import Nstat
from ustcp.stack import Stack
from ustcp.tcp.states import State

log = structlog.get_logger("ustcp.daemon")

CAP_NET_ADMIN = 12
LINGER = 2.0  # seconds `connect` waits for its FIN to be acknowledged before leaving


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
        config.apply(args.sysctl)
    except SysctlError as exc:
        raise Refusal(f"--sysctl: {exc}", 2) from exc
    try:
        addr = socket.inet_aton(args.addr)
    except OSError as exc:
        raise Refusal(f"bad --addr {args.addr!r}: expected an IPv4 address", 2) from exc
    try:
        peer = ipaddress.IPv4Interface(args.peer)
    except ValueError as exc:
        raise Refusal(f"bad --peer {args.peer!r}: expected KERNEL_IP/PREFIX", 2) from exc
    if ipaddress.IPv4Address(addr) not in peer.network or ipaddress.IPv4Address(addr) == peer.ip:
        # The kernel routes to the stack through the device's prefix only.
        raise Refusal(f"bad --addr {args.addr}: the kernel reaches the stack only inside "
                      f"--peer's {peer.network}, at an address other than its own {peer.ip}", 2)
    if args.impair:
        try:
            parse_impairments(args.impair)
        except ValueError as exc:
            raise Refusal(f"--impair: {exc}", 2) from exc
    if not 68 <= args.mtu <= 65535:
        raise Refusal(f"bad --mtu {args.mtu}: expected 68..65535", 2)
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
    return Setup(config, addr, apps, metrics_port)


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


def _open_link(args: argparse.Namespace, counters: Counters) -> Link:
    try:
        tun = TunLink(args.tun, args.mtu, args.offload == "on", kernel_addr=args.peer,
                      counters=counters)
    except PermissionError as exc:
        raise Refusal(f"cannot create TUN device {args.tun!r}: {exc.strerror or exc}", 1) from exc
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace").strip() if exc.stderr else ""
        raise Refusal(f"cannot give the kernel side {args.peer}: {stderr or exc}", 1) from exc
    except OSError as exc:
        raise Refusal(f"cannot create TUN device {args.tun!r}: {exc.strerror or exc}", 1) from exc
    link: Link = tun
    if args.impair:
        spec_in, spec_out = parse_impairments(args.impair)
        link = ImpairedLink(link, spec_in, spec_out, counters=counters)
    if args.pcap:
        link = PcapTap(link, args.pcap)
    return link


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


def _banner(args: argparse.Namespace, apps: list[AppSpec], link: Link) -> str:
    ns = _netns_name()
    prefix = f"ip netns exec {ns} " if ns else ""
    where = f"network namespace {ns!r}" if ns else "this network namespace"
    lines = [
        f"ustcp {__version__} serving on {args.addr} (device {args.tun}, kernel side "
        f"{args.peer}, mtu {args.mtu}, offload {'on' if link.gso_max_size else 'off'}) "
        f"in {where}",
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
    if args.metrics:
        port = args.metrics.rpartition(":")[2]
        lines.append(f"  {prefix}curl http://{args.addr}:{port}/metrics    # Prometheus")
    if getattr(args, "web", None) is not None:
        lines.append(f"  {prefix}chromium http://{args.addr}:{args.web}/    # the live view")
    lines.append(f"  {prefix}{_ustcp_command()} nstat")
    lines.append("Ctrl-C (SIGINT) or SIGTERM stops it.")
    return "\n".join(lines)


def _announce(args: argparse.Namespace, apps: list[AppSpec], link: Link) -> None:
    """The banner, on stderr: readable lines, or with ``--log-format json`` one event
    (stdout stays free for ``--pcap -``)."""
    if args.log_format == "json":
        log.info("serving", addr=args.addr, tun=args.tun, peer=args.peer, mtu=args.mtu,
                 offload=bool(link.gso_max_size), netns=_netns_name() or None,
                 apps={app.port: app.label for app in apps})
    else:
        print(_banner(args, apps, link), file=sys.stderr, flush=True)


def _control_server(name: str, stack: Stack, counters: Counters) -> control.ControlServer:
    server = control.ControlServer(name)
    server.add("nstat", Nstat(counters))
    server.add("ss", ss.control_command(stack.engine))
    server.add("sysctl", sysctl.control_command(stack.config))
    server.add_stream("trace", control.trace_events)
    return server


async def _until_signal(cancel: Callable[[], Any]) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("shutdown", signal=signal.Signals(signum).name)
            cancel()
            return


async def _serve(args: argparse.Namespace, setup: Setup) -> None:
    counters = Counters()
    link = _open_link(args, counters)
    ring = None
    if args.web is not None:
        link = ring = RingTap(link)
    try:
        stack = Stack(link, setup.config, counters, setup.addr, seed=args.seed)
        server = _control_server(args.control, stack, counters)
        try:
            ctl = await server.bind()
        except OSError as exc:
            raise Refusal(f"control socket @{args.control}: {exc.strerror} (is another "
                          "daemon running in this namespace? --control NAME)", 1) from exc
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_until_signal, nursery.cancel_scope.cancel)
            nursery.start_soon(stack.run)
            nursery.start_soon(server.serve, ctl)
            for app in setup.apps:
                listeners = await open_tcp_listeners(stack, app.port, host=args.addr)
                nursery.start_soon(serve_listeners, app.handler, listeners)
            if setup.metrics_port is not None:
                from ustcp.apps.metrics import metrics_app

                listeners = await open_tcp_listeners(stack, setup.metrics_port, host=args.addr)
                nursery.start_soon(serve_listeners, metrics_app(counters), listeners)
            if ring is not None:
                listeners = await open_tcp_listeners(stack, args.web, host=args.addr)
                nursery.start_soon(serve_listeners, web.handler(stack, ring), listeners)
            _announce(args, setup.apps, link)
    finally:
        with trio.CancelScope(shield=True):
            await link.aclose()


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
    link = _open_link(args, counters)
    try:
        stack = Stack(link, setup.config, counters, setup.addr, seed=args.seed)
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
        raise Refusal(f"connect to {args.host}:{args.port}: "
                      f"{exc.strerror or type(exc).__name__}", 1) from exc
    try:
        await _pipe(stream)
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        reason = cause.strerror if isinstance(cause, OSError) else None
        raise Refusal(f"connection to {args.host}:{args.port} broken: {reason or exc}",
                      1) from exc
    await _linger(stream)


def run(args: argparse.Namespace) -> int:
    """Run ``serve`` or ``connect``; the process exit status."""
    status = 0
    try:
        setup = _check(args)
        configure_logging(args.log_format, args.log_level)
        if setup.config.tcp_tw_recycle:
            log.warning("tcp_tw_recycle", note="removed in Linux 4.12: its per-host PAWS "
                        "drops the SYNs of clients behind a NAT; ustcp keeps it to show why")
        trio.run(_serve if args.command == "serve" else _connect, args, setup)
    except* Refusal as group:
        refusal = group.exceptions[0]
        assert isinstance(refusal, Refusal)
        print(f"ustcp: {refusal}", file=sys.stderr)
        status = refusal.status
    except* KeyboardInterrupt:
        pass
    return status
