"""``ustcp sysctl [-n] [NAME[=VALUE] ...]``: read and set a running daemon's knobs.

Names are Linux's, with or without ``net.ipv4.`` / ``net.core.``; output is ``sysctl``'s
(``net.ipv4.tcp_syncookies = 1``, triples separated by tabs). Every knob ustcp honours is
read where it is used, so a change applies at once, with Linux's scope: a per-connection
value (``tcp_rmem``, ``tcp_congestion_control``, ...) applies to connections made after it,
as on Linux. The daemon validates with the same parser as ``--sysctl``
(:meth:`~ustcp.config.StackConfig.set`); a bad name or value changes nothing.

The control command: ``{"cmd": "sysctl"}`` answers ``{"sysctl": {name: value}}``;
``"set": {name: text}`` sets first, all or nothing.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ustcp.obs import ctl

if TYPE_CHECKING:
    from ustcp.config import StackConfig

NET_CORE = frozenset({"somaxconn", "busy_poll", "busy_read"})
ROUTE = frozenset({"min_pmtu", "mtu_expires"})  # net.ipv4.route.*


def full_name(name: str) -> str:
    """``tcp_sack`` -> ``net.ipv4.tcp_sack``; ``somaxconn`` -> ``net.core.somaxconn``;
    ``min_pmtu`` -> ``net.ipv4.route.min_pmtu``."""
    short = short_name(name)
    if short in ROUTE:
        return f"net.ipv4.route.{short}"
    return f"net.{'core' if short in NET_CORE else 'ipv4'}.{short}"


def short_name(name: str) -> str:
    return name.removeprefix("net.ipv4.").removeprefix("net.core.").removeprefix("route.")


def format_value(value: Any) -> str:
    return "\t".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def control_command(config: StackConfig) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The daemon's ``sysctl`` command over ``config`` (the stack's own, shared object)."""

    def sysctl(request: dict[str, Any]) -> dict[str, Any]:
        changes = request.get("set") or {}
        if changes:
            trial = copy.copy(config)  # validate everything before touching the live one
            for name, value in changes.items():
                trial.set(str(name), str(value))  # SysctlError: the reply is the error
            for field in dataclasses.fields(trial):
                setattr(config, field.name, getattr(trial, field.name))
        return {"sysctl": config.as_dict()}

    return sysctl


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--values", action="store_true", help="print values only")
    parser.add_argument("-a", "--all", action="store_true",
                        help="every knob (the default without NAME)")
    parser.add_argument("items", nargs="*", metavar="NAME[=VALUE]",
                        help="knobs to show, or to set with =VALUE (tcp_syncookies=2)")


def main(args: argparse.Namespace) -> int:
    changes = {short_name(k): v for k, _, v in
               (item.partition("=") for item in args.items if "=" in item)}
    extra: dict[str, Any] = {"set": changes} if changes else {}
    # A change goes to every worker of `serve --workers`; they all run the same knobs.
    reply = (ctl.request_all("sysctl", name=args.control, **extra)[0] if changes
             else ctl.request("sysctl", name=args.control))
    knobs: dict[str, Any] = reply["sysctl"]
    wanted = [short_name(item.partition("=")[0]) for item in args.items] or list(knobs)
    unknown = [name for name in wanted if name not in knobs]
    if unknown:
        raise ctl.ControlError(f"unknown sysctl {', '.join(map(repr, unknown))}")
    for name in wanted:
        value = format_value(knobs[name])
        print(value if args.values else f"{full_name(name)} = {value}")
    return 0
