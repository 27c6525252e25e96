"""``ustcp packetdrill [--target engine|kernel|both] PATH... [-v]``: run scripts, one line
per script, then the totals.

Folders are searched recursively for ``*.pkt`` (sorted). On one target the exit status is
0 only when no script failed (skips do not fail the run); with ``--target both`` it is 0
only when the kernel and ustcp agree on every script both ran (``kernel/compare.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .runner import Result, run_file
from .scripts import find_scripts, quiet_engine_logs
from .sockets import IP_VERSIONS


def run_paths(paths: Sequence[Path], ip_version: str = "ipv4",
              definitions: Mapping[str, str] | None = None) -> Iterator[Result]:
    for script in find_scripts(paths):
        yield run_file(script, ip_version=ip_version, definitions=definitions)


def definition(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` of ``-D``, as packetdrill's --define."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ustcp packetdrill",
                                     description="Run packetdrill scripts against the "
                                                 "engine on virtual time, or the Linux "
                                                 "kernel of this machine, or both.")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="a .pkt script or a folder of them")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the packet-by-packet exchange of each script")
    parser.add_argument("--target", choices=("engine", "kernel", "both"), default="engine",
                        help="engine: ustcp on virtual time (default); kernel: this "
                             "machine's Linux TCP in a private network namespace, on real "
                             "time; both: the two side by side")
    parser.add_argument("--ip_version", "--ip-version", choices=IP_VERSIONS, default="ipv4",
                        help="packetdrill's modes: ipv4 (default), ipv6 (MTU 1520, as "
                             "Linux's runner sets it, so the MSS stays 1460), "
                             "ipv4-mapped-ipv6 (AF_INET6 sockets, IPv4 packets); engine "
                             "target only")
    parser.add_argument("--retries", type=int, default=None, metavar="N",
                        help="kernel target: runs a failing script again, up to N times "
                             "(default 2); it passes if an attempt passes")
    parser.add_argument("-D", "--define", type=definition, action="append", default=[],
                        metavar="NAME=VALUE",
                        help="as packetdrill's -D: the word NAME in a script stands for "
                             "VALUE (Google's runner passes -D TFO_COOKIE=3021b9d889017eeb, "
                             "the cookie its Fast Open key gives the client 192.0.2.1)")
    args = parser.parse_args(argv)
    definitions = dict(args.define)
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such file or folder: {missing[0]}")
    if args.target != "engine" and args.ip_version != "ipv4":
        parser.error("--ip_version: the kernel target runs IPv4 only")
    if args.target != "engine":
        from .kernel.report import main as kernel_main
        return kernel_main(args.paths, args.target, args.verbose, args.retries, definitions)
    counts = {"pass": 0, "fail": 0, "skip": 0}
    with quiet_engine_logs():
        for result in run_paths(args.paths, args.ip_version, definitions):
            counts[result.status] += 1
            print(result.summary())
            if args.verbose:
                for line in result.log:
                    print(f"    {line}")
            sys.stdout.flush()
    print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    return 1 if counts["fail"] else 0
