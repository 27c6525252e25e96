"""The ``ustcp`` command: serve, connect, nstat, ss, trace, ladder, demo, packetdrill.

Exit statuses: 0 success, 1 a runtime failure (no privileges, no daemon, connection refused),
2 a usage error (argparse's, and a bad ``--sysctl`` or ``--app``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ustcp import __version__, demo
from ustcp.apps import APPS, DEFAULT_PORTS
from ustcp.obs import control, ladder, ss, trace
from ustcp.obs.log import LEVELS
from ustcp.obs.nstat import format_table

DEFAULT_TUN = "ustcp0"
DEFAULT_ADDR = "10.77.0.2"
DEFAULT_PEER = "10.77.0.1/24"
DEFAULT_MTU = 1500
DEFAULT_APPS = [f"{name}:{port}" for name, port in DEFAULT_PORTS.items()]


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
    p.add_argument("--mtu", type=int, default=DEFAULT_MTU, metavar="N",
                   help=f"device MTU (default {DEFAULT_MTU})")
    p.add_argument("--sysctl", action="append", default=[], metavar="NAME=VALUE",
                   help="set a stack knob by its Linux name, e.g. tcp_syncookies=2 (repeatable)")
    p.add_argument("--pcap", metavar="FILE", help="write every frame crossing the link to FILE")
    p.add_argument("--impair", metavar="SPEC",
                   help="impair the link, netem-like: loss=1%%,delay=10ms,out:rate=100mbit")
    p.add_argument("--offload", choices=("on", "off"), default="on",
                   help="TUN checksum/TSO offloads through the virtio-net header (default on)")
    p.add_argument("--seed", type=int, metavar="N", help="seed the stack's randomness (ISNs, ...)")
    p.add_argument("--log-format", choices=("console", "json"), default="console")
    p.add_argument("--log-level", choices=LEVELS, default=log_level,
                   help=f"(default {log_level})")


def _control_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--control", default=control.DEFAULT_NAME, metavar="NAME",
                   help=f"the daemon's abstract control socket (default @{control.DEFAULT_NAME})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ustcp", description="A userspace TCP/IP stack in Python on a Linux TUN device.")
    parser.add_argument("--version", action="version", version=f"ustcp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the daemon: apps on a TUN device in this netns")
    _add_link_options(serve, "info")
    serve.add_argument("--app", action="append", metavar="NAME:PORT",
                       help=f"serve an app ({', '.join(APPS)}) on a port (repeatable; "
                            f"default {' '.join(DEFAULT_APPS)})")
    _control_option(serve)

    connect = sub.add_parser("connect", help="an active-open nc: stdin to HOST:PORT to stdout")
    connect.add_argument("host", metavar="HOST")
    connect.add_argument("port", type=int, metavar="PORT")
    _add_link_options(connect, "warning")

    nstat = sub.add_parser("nstat", help="a running daemon's counters, like nstat -az")
    nstat.add_argument("-a", "--all", action="store_true", help="show zero counters too")
    nstat.add_argument("--json", action="store_true", help="print JSON")
    nstat.add_argument("--reset", action="store_true",
                       help="show increments since the last --reset and start a new interval")
    _control_option(nstat)

    ss_parser = sub.add_parser("ss", help="a running daemon's sockets, like ss -tanoi")
    ss.add_arguments(ss_parser)
    _control_option(ss_parser)

    trace_parser = sub.add_parser("trace", help="follow a running daemon's log events")
    trace.add_arguments(trace_parser)
    _control_option(trace_parser)

    ladder_parser = sub.add_parser("ladder", help="draw a capture's connections as ladders")
    ladder.add_arguments(ladder_parser)

    demo_parser = sub.add_parser("demo", help="a guided run of a TCP mechanism (list: no TOPIC)")
    demo.add_arguments(demo_parser)

    drill = sub.add_parser("packetdrill", help="run packetdrill scripts against the engine, "
                                                "the kernel (--target kernel) or both")
    drill.add_argument("args", nargs=argparse.REMAINDER, metavar="PATH...")
    return parser


def _cmd_nstat(args: argparse.Namespace) -> int:
    reply = control.request("nstat", name=args.control, reset=args.reset)
    counters: dict[str, int] = reply["counters"]
    if args.json:
        shown = {k: v for k, v in counters.items() if args.all or v}
        print(json.dumps(shown, indent=1))
    else:
        sys.stdout.write(format_table(counters, show_zero=args.all))
    return 0


def _cmd_packetdrill(argv: list[str]) -> int:
    from ustcp.packetdrill.cli import main as packetdrill_main

    return packetdrill_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["packetdrill"]:  # its own options pass through untouched
        return _cmd_packetdrill(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command in ("serve", "connect"):
        from ustcp import daemon

        return daemon.run(args)
    if args.command == "ladder":
        return ladder.main(args)
    if args.command == "demo":
        return demo.main(args)
    commands = {"nstat": _cmd_nstat, "ss": ss.main, "trace": trace.main}
    try:
        return commands[args.command](args)
    except control.ControlError as exc:
        return _fail(f"the daemon says: {exc}", 1)
    except (ConnectionRefusedError, FileNotFoundError):
        return _fail(f"no ustcp daemon listens on @{args.control} in this network namespace "
                     "(run this inside the daemon's: ip netns exec NS ustcp ...)", 1)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
