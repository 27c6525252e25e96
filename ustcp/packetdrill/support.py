"""What a script needs that the runner or the stack does not have (reported as a skip).

Checked before a script runs, so that a skip never leaves half a run behind: command-line
options, shell commands, IP-level packet fields, ECN and AccECN flags, Fast Open and MD5
options, system calls, socket options and send flags.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .ast import CommandSpec, IcmpSpec, PacketSpec, Script, SyscallSpec
from .icmp import IcmpNameError, type_and_code
from .packets import script_ecn
from .shell import ShellPlan, plan_command
from .sockets import IP_VERSIONS, SEND_FLAGS, Sockets, recvmsg_reason, sockopt_support
from .symbols import SYMBOLS, Unsupported, evaluate

# --option=value lines the runner honours (packetdrill config.c): the ports and addresses
# name the 4-tuple, the gateway and netmask only the remote side's routing (no route is
# looked up here), --send_omit_free only how packetdrill frees its injected packets.
KNOWN_OPTIONS = frozenset({
    "tolerance_usecs", "tolerance_percent", "tcp_ts_tick_usecs", "tcp_ts_ecr_scaled",
    "strict_segments", "bind_port", "connect_port", "mtu", "mss", "ip_version", "verbose",
    "local_ip", "remote_ip", "gateway_ip", "netmask_ip", "send_omit_free",
})
_OPTION_NAMES = {"md5": "TCP MD5 signatures", "ECN": "the AccECN option"}
_SEND_CALLS = {"send": 3, "sendto": 3, "sendmsg": 2}


def command_plans(script: Script, script_dir: Path) -> dict[int, ShellPlan]:
    """The plan of every backtick command, keyed by its line."""
    plans: dict[int, ShellPlan] = {}
    if script.init_command:
        plans[script.init_command.line] = plan_command(script.init_command.spec.text,
                                                       script_dir)
    for event in script.events:
        if isinstance(event.action, CommandSpec):
            plans[event.line] = plan_command(event.action.text, script_dir)
    if script.cleanup_command:
        plans[script.cleanup_command.line] = plan_command(script.cleanup_command.spec.text,
                                                          script_dir)
    return plans


def unsupported_reason(script: Script, plans: dict[int, ShellPlan],
                       syscall_reason: Callable[[SyscallSpec], str | None] | None = None,
                       ip_version: str = "ipv4") -> str | None:
    """Why the script cannot run in ``ip_version`` mode (its own --ip_version wins);
    ``syscall_reason`` replaces the engine target's check of system calls (the kernel
    target has its own)."""
    check_syscall = syscall_reason or _syscall_reason
    versions = [value for name, value in script.options if name == "ip_version"]
    ipv6 = (versions[-1] if versions else ip_version) == "ipv6"
    for name, value in script.options:
        if name not in KNOWN_OPTIONS:
            return f"option --{name}"
        if name == "ip_version" and value not in IP_VERSIONS:
            return f"--ip_version={value}"
    for plan in plans.values():
        if plan.unsupported:
            return plan.unsupported[0]
    for event in script.events:
        action = event.action
        reason = None
        if isinstance(action, PacketSpec):
            reason = _packet_reason(action)
        elif isinstance(action, IcmpSpec):
            reason = _icmp_reason(action, ipv6)
        elif isinstance(action, SyscallSpec):
            reason = check_syscall(action)
        if reason:
            return f"{reason} (line {event.line})"
    return None


def _packet_reason(packet: PacketSpec) -> str | None:
    if packet.ip_info and script_ecn(packet) is None:
        return f"IP header fields {packet.ip_info}"
    if packet.ports is not None:
        return "explicit TCP ports"
    if "A" in packet.flags:
        return "the AccECN AE flag"
    if packet.ace is not None:
        return "the AccECN ACE field"
    for option in packet.options or ():
        if option.name in _OPTION_NAMES:
            return _OPTION_NAMES[option.name]
    return None


def _icmp_reason(packet: IcmpSpec, ipv6: bool) -> str | None:
    if packet.direction == ">":
        return "outbound ICMP packets (the TCP stack sends none)"
    if packet.ip_info:
        return f"IP header fields {packet.ip_info}"
    try:
        type_and_code(packet, ipv6)
    except IcmpNameError as exc:
        return str(exc)  # such as a CODE that Google's runner defines with -D
    return None


def _syscall_reason(call: SyscallSpec) -> str | None:
    if call.name not in Sockets.HANDLED:
        return f"system call {call.name}"
    if call.name == "recvmsg":
        return recvmsg_reason(call)
    if call.name in ("setsockopt", "getsockopt"):
        return sockopt_support(call)
    index = _SEND_CALLS.get(call.name)
    if index is not None and index < len(call.args):
        try:
            flags = evaluate(call.args[index]) or 0
        except Unsupported as exc:
            return str(exc)
        if flags & ~SEND_FLAGS:
            names = [n for n, v in SYMBOLS.items() if n.startswith("MSG_") and flags & v
                     and not v & SEND_FLAGS]
            return f"send flag {'|'.join(names) or hex(flags)}"
    return None
