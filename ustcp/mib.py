"""The stack's counters: one enumeration, spelled as Linux's ``nstat`` spells them.

Linux counts into fixed arrays indexed by ``LINUX_MIB_*``/``TCP_MIB_*``/``IPSTATS_MIB_*``
(include/uapi/linux/snmp.h); nstat prints them as ``TcpExtListenOverflows``, ``TcpInSegs``.
ustcp does the same: :class:`Mib` names every counter once, as an attribute holding its index,
so a misspelt counter is a type error (mypy) and an AttributeError, not a new silent counter.
Drops Linux has no name for use the ``Ustcp`` prefix (``UstcpDropIpBadChecksum``).

``Mib`` is a plain class of ints rather than an ``enum.IntEnum``: on CPython 3.11 reading an
enum member costs about twice a plain class attribute, and the engine counts on every
segment. The per-type ICMP counters (``IcmpMsgInType8``) are a table of their own, as
Linux's ``icmpmsg_statistics`` is.

This module is at the bottom of the tree: the links, the IP layer, the engine and ``obs/`` all
count through it, and it imports nothing of ustcp.
"""

from __future__ import annotations

import functools
import itertools
from typing import Final, NewType

MibId = NewType("MibId", int)

_ids = itertools.count()


def _next() -> MibId:
    return MibId(next(_ids))


class Mib:
    """Every counter of the stack, by its nstat name. The value is its index in
    :attr:`Counters.values`."""

    __slots__ = ()

    # IPSTATS_MIB_* (Ip...) and ICMP_MIB_* (Icmp...)
    IpInReceives: Final = _next()
    IpInHdrErrors: Final = _next()
    IpInAddrErrors: Final = _next()
    IpInUnknownProtos: Final = _next()
    IpInDelivers: Final = _next()
    IpOutRequests: Final = _next()
    IpExtInCEPkts: Final = _next()  # IPSTATS_MIB_CEPKTS: arrived with Congestion Experienced
    IpReasmReqds: Final = _next()
    IpReasmOKs: Final = _next()
    IpReasmFails: Final = _next()
    IpReasmTimeout: Final = _next()
    IpExtReasmOverlaps: Final = _next()
    IcmpInMsgs: Final = _next()
    IcmpInErrors: Final = _next()
    IcmpInCsumErrors: Final = _next()
    IcmpInDestUnreachs: Final = _next()
    IcmpInTimeExcds: Final = _next()
    IcmpInParmProbs: Final = _next()
    IcmpInSrcQuenchs: Final = _next()
    IcmpInRedirects: Final = _next()
    IcmpInEchos: Final = _next()
    IcmpInEchoReps: Final = _next()
    IcmpInTimestamps: Final = _next()
    IcmpInTimestampReps: Final = _next()
    IcmpOutMsgs: Final = _next()
    IcmpOutEchoReps: Final = _next()
    IcmpOutDestUnreachs: Final = _next()
    IcmpOutTimeExcds: Final = _next()
    IcmpOutRateLimitHost: Final = _next()  # icmpv4_xrlim_allow refused (Linux 6.x)
    # IPSTATS_MIB_* and ICMP6_MIB_* of IPv6 (/proc/net/snmp6: Ip6..., Icmp6...)
    Ip6InReceives: Final = _next()
    Ip6InHdrErrors: Final = _next()
    Ip6InAddrErrors: Final = _next()
    Ip6InUnknownProtos: Final = _next()
    Ip6InTruncatedPkts: Final = _next()
    Ip6InDelivers: Final = _next()
    Ip6InMcastPkts: Final = _next()
    Ip6OutRequests: Final = _next()
    Ip6ReasmReqds: Final = _next()
    Ip6ReasmOKs: Final = _next()
    Ip6ReasmFails: Final = _next()
    Ip6ReasmTimeout: Final = _next()
    Icmp6InMsgs: Final = _next()
    Icmp6InErrors: Final = _next()
    Icmp6InCsumErrors: Final = _next()
    Icmp6InDestUnreachs: Final = _next()
    Icmp6InPktTooBigs: Final = _next()
    Icmp6InTimeExcds: Final = _next()
    Icmp6InParmProblems: Final = _next()
    Icmp6InEchos: Final = _next()
    Icmp6InEchoReplies: Final = _next()
    Icmp6InGroupMembQueries: Final = _next()
    Icmp6InGroupMembResponses: Final = _next()
    Icmp6InGroupMembReductions: Final = _next()
    Icmp6InRouterSolicits: Final = _next()
    Icmp6InRouterAdvertisements: Final = _next()
    Icmp6InNeighborSolicits: Final = _next()
    Icmp6InNeighborAdvertisements: Final = _next()
    Icmp6InRedirects: Final = _next()
    Icmp6InMLDv2Reports: Final = _next()
    Icmp6OutMsgs: Final = _next()
    Icmp6OutEchoReplies: Final = _next()
    Icmp6OutParmProblems: Final = _next()
    Icmp6OutDestUnreachs: Final = _next()
    Icmp6OutTimeExcds: Final = _next()
    Icmp6OutRateLimitHost: Final = _next()
    # TCP_MIB_* (Tcp...)
    TcpActiveOpens: Final = _next()
    TcpPassiveOpens: Final = _next()
    TcpAttemptFails: Final = _next()
    TcpEstabResets: Final = _next()
    TcpCurrEstab: Final = _next()
    TcpInSegs: Final = _next()
    TcpOutSegs: Final = _next()
    TcpRetransSegs: Final = _next()
    TcpInErrs: Final = _next()
    TcpOutRsts: Final = _next()
    TcpInCsumErrors: Final = _next()
    # LINUX_MIB_* (TcpExt...)
    TcpExtSyncookiesSent: Final = _next()
    TcpExtSyncookiesRecv: Final = _next()
    TcpExtSyncookiesFailed: Final = _next()
    TcpExtTW: Final = _next()
    TcpExtTWRecycled: Final = _next()
    TcpExtTWKilled: Final = _next()
    TcpExtPAWSEstab: Final = _next()
    TcpExtPAWSPassive: Final = _next()
    TcpExtPAWSActive: Final = _next()  # LINUX_MIB_PAWSACTIVEREJECTED
    TcpExtDelayedACKs: Final = _next()
    TcpExtDelayedACKLost: Final = _next()
    TcpExtListenOverflows: Final = _next()
    TcpExtListenDrops: Final = _next()
    TcpExtTCPRenoRecovery: Final = _next()
    TcpExtTCPSackRecovery: Final = _next()
    TcpExtTCPSACKReorder: Final = _next()
    TcpExtTCPFastRetrans: Final = _next()
    TcpExtTCPSlowStartRetrans: Final = _next()
    TcpExtTCPLossRetransmit: Final = _next()
    TcpExtTCPTimeouts: Final = _next()
    TcpExtTCPLossProbes: Final = _next()
    TcpExtTCPLossProbeRecovery: Final = _next()
    TcpExtTCPDSACKRecv: Final = _next()
    TcpExtTCPDSACKOfoRecv: Final = _next()
    TcpExtTCPDSACKRecvSegs: Final = _next()
    TcpExtTCPDSACKIgnoredDubious: Final = _next()
    TcpExtTCPDSACKOldSent: Final = _next()
    TcpExtTCPDSACKOfoSent: Final = _next()
    TcpExtTCPDSACKUndo: Final = _next()
    TcpExtTCPFullUndo: Final = _next()
    TcpExtTCPPartialUndo: Final = _next()
    TcpExtTCPLossUndo: Final = _next()
    TcpExtTCPSpuriousRTOs: Final = _next()
    TcpExtTCPSACKDiscard: Final = _next()
    TcpExtTCPAbortOnData: Final = _next()
    TcpExtTCPAbortOnClose: Final = _next()
    TcpExtTCPAbortOnMemory: Final = _next()
    TcpExtTCPAbortOnTimeout: Final = _next()
    TcpExtTCPAbortOnLinger: Final = _next()
    TcpExtTCPRcvQDrop: Final = _next()
    TcpExtTCPOFOQueue: Final = _next()
    TcpExtTCPOFODrop: Final = _next()
    TcpExtTCPOFOMerge: Final = _next()
    TcpExtPruneCalled: Final = _next()
    TcpExtOfoPruned: Final = _next()
    TcpExtRcvPruned: Final = _next()
    TcpExtTCPDeferAcceptDrop: Final = _next()
    TcpExtTCPTimeWaitOverflow: Final = _next()
    TcpExtTCPReqQFullDoCookies: Final = _next()
    TcpExtTCPReqQFullDrop: Final = _next()
    TcpExtTCPChallengeACK: Final = _next()
    TcpExtTCPSYNChallenge: Final = _next()
    TcpExtTCPWinProbe: Final = _next()
    TcpExtTCPFastOpenActive: Final = _next()
    TcpExtTCPFastOpenActiveFail: Final = _next()
    TcpExtTCPFastOpenPassive: Final = _next()
    TcpExtTCPFastOpenPassiveFail: Final = _next()
    TcpExtTCPFastOpenPassiveAltKey: Final = _next()
    TcpExtTCPFastOpenListenOverflow: Final = _next()
    TcpExtTCPFastOpenCookieReqd: Final = _next()
    TcpExtTCPFastOpenBlackhole: Final = _next()
    TcpExtTCPACKSkippedSeq: Final = _next()
    TcpExtTCPACKSkippedChallenge: Final = _next()
    TcpExtTCPACKSkippedTimeWait: Final = _next()
    TcpExtTCPWantZeroWindowAdv: Final = _next()
    TcpExtTCPToZeroWindowAdv: Final = _next()
    TcpExtTCPFromZeroWindowAdv: Final = _next()
    TcpExtTCPZeroWindowDrop: Final = _next()
    TcpExtOutOfWindowIcmps: Final = _next()
    TcpExtTCPMTUPSuccess: Final = _next()
    TcpExtTCPMTUPFail: Final = _next()
    TcpExtBusyPollRxPackets: Final = _next()
    # UDP_MIB_* (Udp..., Udp6...): the stack has no UDP sockets; every datagram is refused
    UdpNoPorts: Final = _next()
    UdpInCsumErrors: Final = _next()
    Udp6NoPorts: Final = _next()
    Udp6InCsumErrors: Final = _next()
    # ustcp's own: drops and events Linux has no counter for
    UstcpDropIpShort: Final = _next()
    UstcpDropIpVersion: Final = _next()
    UstcpDropIpBadIhl: Final = _next()
    UstcpDropIpBadChecksum: Final = _next()
    UstcpDropIpBadLength: Final = _next()
    UstcpDropIp6Short: Final = _next()
    UstcpDropIp6Truncated: Final = _next()
    UstcpDropIp6ExtShort: Final = _next()
    UstcpDropIp6BadOption: Final = _next()
    UstcpDropIp6UnknownOption: Final = _next()
    UstcpDropIp6Routing: Final = _next()
    # neighbour discovery, MLD, router messages: not a router
    UstcpDropIcmp6NotOurs: Final = _next()
    UstcpDropTcpShort: Final = _next()
    UstcpDropTcpBadDoff: Final = _next()
    UstcpDropTcpBadChecksum: Final = _next()
    UstcpDropTcpBadOption: Final = _next()
    UstcpDropIcmpShort: Final = _next()
    UstcpDropIcmpBadChecksum: Final = _next()
    UstcpDropIcmpQueueFull: Final = _next()
    UstcpDropZeroPort: Final = _next()
    UstcpDropAckUnsent: Final = _next()
    UstcpDropNoAck: Final = _next()
    UstcpDropOutOfWindow: Final = _next()
    UstcpDropRstOutOfWindow: Final = _next()
    UstcpNoSocket: Final = _next()
    UstcpListenUnexpected: Final = _next()
    UstcpListenRst: Final = _next()
    UstcpReqOutOfWindow: Final = _next()
    UstcpSynRecvTimeout: Final = _next()
    UstcpSynRetransmitted: Final = _next()
    UstcpTimeWaitEntered: Final = _next()
    UstcpInternalErrors: Final = _next()
    UstcpAppIdleTimeouts: Final = _next()  # --idle-timeout ended an app's connection
    # the TUN device's own drops (/proc/net/dev), read when nstat asks: TunLink.device_counters
    UstcpTunTxDropped: Final = _next()
    UstcpTunRxDropped: Final = _next()
    UstcpLinkTxDrops: Final = _next()
    UstcpLinkTxErrors: Final = _next()
    UstcpLinkTxTooBig: Final = _next()
    UstcpImpairLoss: Final = _next()
    UstcpImpairDuplicate: Final = _next()
    UstcpImpairCorrupt: Final = _next()
    UstcpImpairCE: Final = _next()
    UstcpImpairReorder: Final = _next()
    UstcpImpairQueueDrops: Final = _next()
    UstcpImpairPmtuDrops: Final = _next()


MIB_MAX: Final = next(_ids)
NAMES: tuple[str, ...] = tuple(
    name for name, _ in sorted(
        ((k, v) for k, v in vars(Mib).items() if isinstance(v, int)), key=lambda kv: kv[1]))
BY_NAME: dict[str, MibId] = {name: MibId(i) for i, name in enumerate(NAMES)}
assert len(NAMES) == MIB_MAX

# Printed even at zero (nstat -a shows every counter; these are the ones worth a glance).
ALWAYS_SHOWN: Final = (
    Mib.IpInReceives, Mib.IpInDelivers, Mib.IpOutRequests, Mib.IpInHdrErrors,
    Mib.IpInAddrErrors, Mib.IpInUnknownProtos,
    Mib.IcmpInMsgs, Mib.IcmpOutMsgs, Mib.IcmpInEchos, Mib.IcmpOutEchoReps,
    Mib.Ip6InReceives, Mib.Ip6InDelivers, Mib.Ip6OutRequests, Mib.Icmp6InMsgs,
    Mib.Icmp6OutMsgs,
    Mib.TcpActiveOpens, Mib.TcpPassiveOpens, Mib.TcpAttemptFails, Mib.TcpEstabResets,
    Mib.TcpCurrEstab, Mib.TcpInSegs, Mib.TcpOutSegs, Mib.TcpRetransSegs, Mib.TcpInErrs,
    Mib.TcpOutRsts, Mib.TcpInCsumErrors,
    Mib.TcpExtListenOverflows, Mib.TcpExtListenDrops, Mib.TcpExtSyncookiesSent,
    Mib.TcpExtSyncookiesRecv, Mib.TcpExtSyncookiesFailed, Mib.TcpExtTCPReqQFullDrop,
    Mib.TcpExtTCPReqQFullDoCookies, Mib.TcpExtPAWSEstab, Mib.TcpExtTCPTimeWaitOverflow,
    Mib.TcpExtTW, Mib.TcpExtTWRecycled,
)

ICMP_MSG_IN: Final = "IcmpMsgInType"
ICMP_MSG_OUT: Final = "IcmpMsgOutType"
ICMP6_MSG_IN: Final = "Icmp6InType"  # /proc/net/snmp6's per-type counters (icmpv6msg_statistics)
ICMP6_MSG_OUT: Final = "Icmp6OutType"


@functools.cache
def drop_for_reason(reason: str) -> MibId:
    """The drop counter for a ``wire.errors.ParseError`` reason:
    ``ip_bad_checksum`` -> ``Mib.UstcpDropIpBadChecksum``."""
    return BY_NAME["UstcpDrop" + "".join(part.capitalize() for part in reason.split("_"))]


class Counters:
    """One stack's counters: a list indexed by :class:`Mib`, plus the per-type ICMP table.
    Monotonic, except the gauge TcpCurrEstab."""

    __slots__ = ("icmp6_msg_in", "icmp6_msg_out", "icmp_msg_in", "icmp_msg_out", "values")

    def __init__(self) -> None:
        self.values = [0] * MIB_MAX
        self.icmp_msg_in = [0] * 256
        self.icmp_msg_out = [0] * 256
        self.icmp6_msg_in = [0] * 256
        self.icmp6_msg_out = [0] * 256

    def _tables(self) -> tuple[tuple[str, list[int]], ...]:
        return ((ICMP_MSG_IN, self.icmp_msg_in), (ICMP_MSG_OUT, self.icmp_msg_out),
                (ICMP6_MSG_IN, self.icmp6_msg_in), (ICMP6_MSG_OUT, self.icmp6_msg_out))

    def inc(self, mib: MibId, n: int = 1) -> None:
        self.values[mib] += n

    def dec(self, mib: MibId, n: int = 1) -> None:
        self.values[mib] -= n

    def total(self) -> int:
        """The sum of every counter: a step that moved none was not counted anywhere."""
        return sum(self.values) + sum(sum(table) for _, table in self._tables())

    def __getitem__(self, name: str | MibId) -> int:
        """A counter by its Mib index or its nstat name (``"TcpInSegs"``,
        ``"IcmpMsgInType8"``); a name the stack does not have is a KeyError."""
        if isinstance(name, int):
            return self.values[name]
        for prefix, table in self._tables():
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                return table[int(name[len(prefix):])]
        return self.values[BY_NAME[name]]

    def snapshot(self) -> dict[str, int]:
        """The counters nstat would print: those not zero and :data:`ALWAYS_SHOWN`, by name."""
        out = {NAMES[i]: v for i, v in enumerate(self.values) if v}
        for i in ALWAYS_SHOWN:
            out.setdefault(NAMES[i], 0)
        for prefix, table in self._tables():
            for icmp_type, v in enumerate(table):
                if v:
                    out[f"{prefix}{icmp_type}"] = v
        return dict(sorted(out.items()))
