"""The ``ustcp`` command: serve, connect, nstat, ss, sysctl, trace, ladder, demo, packetdrill.

Exit statuses: 0 success, 1 a runtime failure (no privileges, no daemon, connection refused),
2 a usage error (argparse's, and a bad ``--sysctl`` or ``--app``).

Control commands (nstat, ss, sysctl, trace) are parsed with their own parser only and
import nothing heavy (no trio, structlog, engine or apps), so they start in a fraction of
the time ``serve`` takes to import: the other commands' modules load when they run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from ustcp import __version__
from ustcp.defaults import (
    DEFAULT_ADDR,
    DEFAULT_ADDR6,
    DEFAULT_MTU,
    DEFAULT_PEER,
    DEFAULT_PEER6,
    DEFAULT_TUN,
    LEVELS,
)
from ustcp.obs import ctl

DEFAULT_SHUTDOWN_GRACE = 3.0  # seconds
DEFAULT_TXQUEUELEN = 10000  # frames; see docs/reliability.md for the measurement
DEFAULT_IDLE_TIMEOUT = 300.0  # seconds
CONTROL_COMMANDS = ("nstat", "ss", "sysctl", "trace")
Adder = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]  # noqa: SLF001


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (``ustcp serve: argument --mtu: invalid int
    value: 'abc'``) and exit status 2, instead of the usage block. Control commands (nstat,
    ss, sysctl, trace) keep argparse's own parser: their errors print their usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _fail(message: str, status: int) -> int:
    print(f"ustcp: {message}", file=sys.stderr)
    return status


def _add_link_options(p: argparse.ArgumentParser, log_level: str) -> None:
    p.add_argument("--tun", default=DEFAULT_TUN, metavar="NAME",
                   help=f"TUN device to create (default {DEFAULT_TUN})")
    p.add_argument("--addr", default=DEFAULT_ADDR, metavar="STACK_IP",
                   help=f"the stack's own IPv4 address (default {DEFAULT_ADDR})")
    p.add_argument("--peer", default=DEFAULT_PEER, metavar="KERNEL_IP/PREFIX",
                   help=f"the kernel's side of the device (default {DEFAULT_PEER})")
    p.add_argument("--addr6", default=DEFAULT_ADDR6, metavar="STACK_IP6",
                   help=f"the stack's own IPv6 address (default {DEFAULT_ADDR6}; "
                        "'none': IPv4 only)")
    p.add_argument("--peer6", default=DEFAULT_PEER6, metavar="KERNEL_IP6/PREFIX",
                   help=f"the kernel's IPv6 side of the device (default {DEFAULT_PEER6})")
    p.add_argument("--mtu", type=int, default=DEFAULT_MTU, metavar="N",
                   help=f"device MTU (default {DEFAULT_MTU})")
    p.add_argument("--sysctl", action="append", default=[], metavar="NAME=VALUE",
                   help="set a stack knob by its Linux name, e.g. tcp_syncookies=2 (repeatable)")
    p.add_argument("--pcap", metavar="FILE", help="write every frame crossing the link to FILE")
    p.add_argument("--impair", metavar="SPEC",
                   help="impair the link, netem-like: loss=1%%,delay=10ms,out:rate=100mbit")
    p.add_argument("--txqueuelen", type=int, default=DEFAULT_TXQUEUELEN, metavar="N",
                   help="the TUN device's queue towards the stack, in frames (Linux's TUN "
                        f"default 500 drops bursts; default {DEFAULT_TXQUEUELEN})")
    p.add_argument("--offload", choices=("on", "off"), default="on",
                   help="TUN checksum/TSO offloads through the virtio-net header (default on)")
    p.add_argument("--seed", type=int, metavar="N", help="seed the stack's randomness (ISNs, ...)")
    p.add_argument("--log-format", choices=("console", "json"), default="console")
    p.add_argument("--log-level", choices=LEVELS, default=log_level,
                   help=f"(default {log_level})")


def _control_option(p: argparse.ArgumentParser) -> None:
    p.set_defaults(usage=p.format_usage)  # a control command's errors print its usage
    p.add_argument("--control", default=ctl.DEFAULT_NAME, metavar="NAME",
                   help=f"the daemon's abstract control socket (default @{ctl.DEFAULT_NAME})")


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ustcp.apps import APPS, DEFAULT_PORTS

    default_apps = " ".join(f"{name}:{port}" for name, port in DEFAULT_PORTS.items())
    serve = sub.add_parser("serve", help="run the daemon: apps on a TUN device in this netns")
    _add_link_options(serve, "info")
    serve.add_argument("--shutdown-grace", type=float, default=DEFAULT_SHUTDOWN_GRACE,
                       metavar="SECONDS",
                       help="on SIGINT/SIGTERM the listeners close and connections get this "
                            "long to finish; the rest are reset (default "
                            f"{DEFAULT_SHUTDOWN_GRACE:g})")
    serve.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT,
                       metavar="SECONDS",
                       help="end an app's connection after this long without a byte moving "
                            f"either way (0: never; default {DEFAULT_IDLE_TIMEOUT:g})")
    serve.add_argument("--http-deadline", action="append", metavar="NAME=SECONDS",
                       help="the http app's deadlines: head=60 (a request head), body=20 and "
                            "body_rate=500 (a body: seconds, plus one per body_rate bytes), "
                            "send=60 (each response chunk); repeatable")
    serve.add_argument("--app", action="append", metavar="PORT=APP",
                       help=f"serve APP on PORT: a built-in ({', '.join(APPS)}), "
                            "proxy:HOST:PORT, static:DIR or module:function (your own trio "
                            f"stream handler); NAME:PORT also works (repeatable; default "
                            f"{default_apps})")
    serve.add_argument("--metrics", metavar="[HOST:]PORT",
                       help="serve the counters for Prometheus at http://STACK_IP:PORT/metrics "
                            "(on the stack's own address)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="N processes, one queue each of one multi-queue TUN device; the "
                            "kernel steers each flow to one of them (default 1)")
    serve.add_argument("--web", type=int, metavar="PORT",
                       help="serve the live view (a read-only page on the stack's internals) "
                            "on this port of the stack's address (default: off)")
    _control_option(serve)


def _add_connect(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    connect = sub.add_parser("connect", help="an active-open nc: stdin to HOST:PORT to stdout")
    connect.add_argument("host", metavar="HOST", help="an IPv4 or IPv6 literal")
    connect.add_argument("port", type=int, metavar="PORT")
    _add_link_options(connect, "warning")


_CONTROL_HELP = {
    "nstat": "a running daemon's counters, as nstat prints them",
    "ss": "a running daemon's sockets, as ss -tanoi prints them",
    "sysctl": "read or set a running daemon's knobs",
    "trace": "follow a running daemon's events",
}


def _control_command(name: str) -> Adder:
    """The adder of a control command, whose module ``ustcp.obs.NAME`` has
    ``add_arguments`` and ``main``."""

    def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        from importlib import import_module

        p = sub.add_parser(name, help=_CONTROL_HELP[name])
        import_module(f"ustcp.obs.{name}").add_arguments(p)
        _control_option(p)

    return add


def _add_ladder(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ustcp.obs import ladder

    ladder.add_arguments(sub.add_parser("ladder", help="draw a capture's connections as ladders"))


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ustcp import demo

    demo.add_arguments(sub.add_parser(
        "demo", help="a guided run of a TCP mechanism (list: no TOPIC)"))


def _add_packetdrill(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drill = sub.add_parser("packetdrill", help="run packetdrill scripts against the engine, "
                                                "the kernel (--target kernel) or both")
    drill.add_argument("args", nargs=argparse.REMAINDER, metavar="PATH...")


_SUBCOMMANDS: dict[str, Adder] = {
    "serve": _add_serve, "connect": _add_connect,
    **{name: _control_command(name) for name in CONTROL_COMMANDS},
    "ladder": _add_ladder, "demo": _add_demo, "packetdrill": _add_packetdrill,
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``only`` the parser of that subcommand alone (what a
    control command needs: the other subcommands' modules are not imported)."""
    cls = argparse.ArgumentParser if only in CONTROL_COMMANDS else _Parser
    parser = cls(
        prog="ustcp", description="A userspace TCP/IP stack in Python on a Linux TUN device.")
    parser.add_argument("--version", action="version", version=f"ustcp {__version__}")
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=cls)
    for name, add in _SUBCOMMANDS.items():
        if only is None or name == only:
            add(sub)
    return parser


def _run_control(args: argparse.Namespace) -> int:
    from importlib import import_module

    command = import_module(f"ustcp.obs.{args.command}")
    try:
        status: int = command.main(args)
        return status
    except ctl.ControlError as exc:
        if args.command == "sysctl":
            sys.stderr.write(args.usage())
        return _fail(f"the daemon says: {exc}", 2 if args.command == "sysctl" else 1)
    except (ConnectionRefusedError, FileNotFoundError):
        return _fail(f"no ustcp daemon listens on @{args.control} in this network namespace "
                     "(run this inside the daemon's: ip netns exec NS ustcp ...)", 1)
    except BrokenPipeError:
        return 0


def _cmd_packetdrill(argv: list[str]) -> int:
    from ustcp.packetdrill.cli import main as packetdrill_main

    return packetdrill_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["packetdrill"]:  # its own options pass through untouched
        return _cmd_packetdrill(argv[1:])
    only = argv[0] if argv[:1] and argv[0] in CONTROL_COMMANDS else None
    args = build_parser(only).parse_args(argv)
    if args.command in ("serve", "connect"):
        from ustcp import daemon

        return daemon.run(args)
    if args.command == "ladder":
        from ustcp.obs import ladder

        return ladder.main(args)
    if args.command == "demo":
        from ustcp import demo

        return demo.main(args)
    return _run_control(args)


if __name__ == "__main__":
    sys.exit(main())
