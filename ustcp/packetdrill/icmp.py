"""Script ICMP lines -> real ICMP and ICMPv6 error frames.

``< icmp unreachable frag_needed mtu 1200 [1:1461(1460)]`` is an error from the remote host
about a segment the stack sent: the frame quotes an IP header from the local address to the
remote one and the first 8 bytes of that TCP segment (the ports of the flow under test and
the quoted sequence number, script-relative to the stack's ISN as packetdrill maps it in
run_packet.c map_inbound_icmp_tcp_packet), as packetdrill's icmp_packet.c builds it. Type
and code names are packetdrill's (``type_N``/``code_N`` for any other); which table applies
follows the IP version of the flow, as in packetdrill.
"""

from __future__ import annotations

import re
import struct

from ..wire import icmp, icmpv6
from ..wire.ipv4 import PROTO_ICMP, PROTO_TCP, build_ipv4_header
from ..wire.ipv6 import NEXTHDR_ICMP, NEXTHDR_TCP, build_ipv6_header
from .ast import IcmpSpec

MOD32 = 1 << 32
TCP_HEADER_LEN = 20  # the quoted segment's header, as packetdrill writes its length

# ICMPv4 (RFC 792, RFC 1191) types and destination-unreachable codes by packetdrill's names
ICMP4_TYPES = {
    "echo_reply": 0, "unreachable": icmp.DEST_UNREACH, "source_quench": 4, "redirect": 5,
    "echo_request": 8, "time_exceeded": icmp.TIME_EXCEEDED,
    "parameter_problem": icmp.PARAMETERPROB, "timestamp_request": 13, "timestamp_reply": 14,
    "information_request": 15, "information_reply": 16, "address_mask_request": 17,
    "address_mask_reply": 18,
}
ICMP4_UNREACH_CODES = (
    "net_unreachable", "host_unreachable", "protocol_unreachable", "port_unreachable",
    "frag_needed", "source_route_failed", "net_unknown", "host_unknown",
    "source_host_isolated", "net_prohibited", "host_prohibited", "net_unreachable_for_tos",
    "host_unreachable_for_tos", "packet_filtered", "precedence_violation",
    "precedence_cutoff",
)
# ICMPv6 (RFC 4443) types and the codes of its three error types that have names
ICMP6_TYPES = {
    "unreachable": icmpv6.DEST_UNREACH, "packet_too_big": icmpv6.PKT_TOOBIG,
    "time_exceeded": icmpv6.TIME_EXCEED, "parameter_problem": icmpv6.PARAMPROB,
    "echo_request": icmpv6.ECHO_REQUEST, "echo_reply": icmpv6.ECHO_REPLY,
}
ICMP6_CODES = {
    icmpv6.DEST_UNREACH: ("net_unreachable", "no_route", "admin_prohibited", "not_neighbour",
                          "address_unreachable", "port_unreachable"),
    icmpv6.TIME_EXCEED: ("exceeded_hop_limit", "exceeded_frag_time"),
    icmpv6.PARAMPROB: ("header_field", "unknown_next_header", "unknown_option"),
}
_NUMBERED = re.compile(r"(type|code)_(\d+)$")


class IcmpNameError(ValueError):
    """A type or code name that is not packetdrill's."""


def type_and_code(spec: IcmpSpec, ipv6: bool) -> tuple[int, int]:
    """The wire type and code of a script ICMP line (icmp_packet.c
    parse_icmp_type_and_code); :class:`IcmpNameError` for a name it does not know."""
    icmp_type = _numbered(spec.icmp_type, "type")
    if icmp_type is None:
        icmp_type = (ICMP6_TYPES if ipv6 else ICMP4_TYPES).get(spec.icmp_type)
    if icmp_type is None:
        raise IcmpNameError(f"bad ICMP type {spec.icmp_type}")
    if spec.code is None:
        return icmp_type, 0
    code = _numbered(spec.code, "code")
    if code is None:
        names = ICMP6_CODES.get(icmp_type, ()) if ipv6 else \
            ICMP4_UNREACH_CODES if icmp_type == icmp.DEST_UNREACH else ()
        code = names.index(spec.code) if spec.code in names else None
    if code is None:
        raise IcmpNameError(f"bad ICMP code {spec.code}")
    if spec.mtu is not None and (icmp_type, code) != ((icmpv6.PKT_TOOBIG, 0) if ipv6 else
                                                      (icmp.DEST_UNREACH, icmp.FRAG_NEEDED)):
        raise IcmpNameError("an ICMP MTU is only valid for "
                            + ("packet_too_big" if ipv6 else "unreachable frag_needed"))
    return icmp_type, code


def _numbered(name: str, kind: str) -> int | None:
    match = _NUMBERED.match(name)
    if match is None or match.group(1) != kind:
        return None
    value = int(match.group(2))
    return value if value <= 0xFF else None


def error_frame(spec: IcmpSpec, local: bytes, local_port: int, remote: bytes,
                remote_port: int, live_seq: int, ident: int = 0) -> bytes:
    """The IPv4 or IPv6 frame (by the length of the addresses) of an ICMP error from
    ``remote`` about the segment ``local:local_port -> remote:remote_port`` with sequence
    number ``live_seq``: the quoted IP header and the first 8 bytes of TCP."""
    ipv6 = len(local) == 16
    icmp_type, code = type_and_code(spec, ipv6)
    quoted_tcp = struct.pack("!HHI", local_port, remote_port, live_seq % MOD32)
    segment_len = TCP_HEADER_LEN + spec.echoed_len
    rest = spec.mtu or 0
    if ipv6:
        quoted = build_ipv6_header(local, remote, NEXTHDR_TCP, segment_len) + quoted_tcp
        message = icmpv6.build_error(remote, local, icmp_type, code, rest, quoted)
        return build_ipv6_header(remote, local, NEXTHDR_ICMP, len(message)) + message
    quoted = build_ipv4_header(local, remote, PROTO_TCP, segment_len, ttl=64, ident=0) \
        + quoted_tcp
    message = icmp.build_error(icmp_type, code, rest, quoted)
    return build_ipv4_header(remote, local, PROTO_ICMP, len(message), ttl=64,
                             ident=ident) + message


def render_icmp(spec: IcmpSpec) -> str:
    """The line as a script writes it."""
    text = f"{spec.direction} icmp {spec.icmp_type}"
    if spec.code is not None:
        text += f" {spec.code}"
    if spec.mtu is not None:
        text += f" mtu {spec.mtu}"
    end = (spec.echoed_seq + spec.echoed_len) % MOD32
    return text + f" [{spec.echoed_seq}:{end}({spec.echoed_len})]"
