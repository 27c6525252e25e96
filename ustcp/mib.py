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
from typing import NewType

MibId = NewType("MibId", int)

_ids = itertools.count()


def _next() -> MibId:
    return MibId(next(_ids))


class Mib:
    """Every counter of the stack, by its nstat name. The value is its index in
    :attr:`Counters.values`."""

    __slots__ = ()

    # IPSTATS_MIB_* (Ip...) and ICMP_MIB_* (Icmp...)
    IpInReceives = _next()
    IpInHdrErrors = _next()
    IpInAddrErrors = _next()
    IpInUnknownProtos = _next()
    IpInDelivers = _next()
    IpOutRequests = _next()
    IpExtInCEPkts = _next()  # IPSTATS_MIB_CEPKTS: arrived with Congestion Experienced
    IpReasmReqds = _next()
    IpReasmOKs = _next()
    IpReasmFails = _next()
    IpReasmTimeout = _next()
    IpExtReasmOverlaps = _next()
    IcmpInMsgs = _next()
    IcmpInErrors = _next()
    IcmpInCsumErrors = _next()
    IcmpInDestUnreachs = _next()
    IcmpInTimeExcds = _next()
    IcmpInParmProbs = _next()
    IcmpInSrcQuenchs = _next()
    IcmpInRedirects = _next()
    IcmpInEchos = _next()
    IcmpInEchoReps = _next()
    IcmpInTimestamps = _next()
    IcmpInTimestampReps = _next()
    IcmpOutMsgs = _next()
    IcmpOutEchoReps = _next()
    IcmpOutDestUnreachs = _next()
    IcmpOutTimeExcds = _next()
    IcmpOutRateLimitHost = _next()  # icmpv4_xrlim_allow refused (Linux 6.x)
    # IPSTATS_MIB_* and ICMP6_MIB_* of IPv6 (/proc/net/snmp6: Ip6..., Icmp6...)
    Ip6InReceives = _next()
    Ip6InHdrErrors = _next()
    Ip6InAddrErrors = _next()
    Ip6InUnknownProtos = _next()
    Ip6InTruncatedPkts = _next()
    Ip6InDelivers = _next()
    Ip6InMcastPkts = _next()
    Ip6OutRequests = _next()
    Ip6ReasmReqds = _next()
    Ip6ReasmOKs = _next()
    Ip6ReasmFails = _next()
    Ip6ReasmTimeout = _next()
    Icmp6InMsgs = _next()
    Icmp6InErrors = _next()
    Icmp6InCsumErrors = _next()
    Icmp6InDestUnreachs = _next()
    Icmp6InPktTooBigs = _next()
    Icmp6InTimeExcds = _next()
    Icmp6InParmProblems = _next()
    Icmp6InEchos = _next()
    Icmp6InEchoReplies = _next()
    Icmp6InGroupMembQueries = _next()
    Icmp6InGroupMembResponses = _next()
    Icmp6InGroupMembReductions = _next()
    Icmp6InRouterSolicits = _next()
    Icmp6InRouterAdvertisements = _next()
    Icmp6InNeighborSolicits = _next()
    Icmp6InNeighborAdvertisements = _next()
    Icmp6InRedirects = _next()
    Icmp6InMLDv2Reports = _next()
    Icmp6OutMsgs = _next()
    Icmp6OutEchoReplies = _next()
    Icmp6OutParmProblems = _next()
    Icmp6OutDestUnreachs = _next()
    Icmp6OutTimeExcds = _next()
    Icmp6OutRateLimitHost = _next()
    # TCP_MIB_* (Tcp...)
    TcpActiveOpens = _next()
    TcpPassiveOpens = _next()
    TcpAttemptFails = _next()
    TcpEstabResets = _next()
    TcpCurrEstab = _next()
    TcpInSegs = _next()
    TcpOutSegs = _next()
    TcpRetransSegs = _next()
    TcpInErrs = _next()
    TcpOutRsts = _next()
    TcpInCsumErrors = _next()
    # LINUX_MIB_* (TcpExt...)
    TcpExtSyncookiesSent = _next()
    TcpExtSyncookiesRecv = _next()
    TcpExtSyncookiesFailed = _next()
    TcpExtTW = _next()
    TcpExtTWRecycled = _next()
    TcpExtTWKilled = _next()
    TcpExtPAWSEstab = _next()
    TcpExtPAWSPassive = _next()
    TcpExtDelayedACKs = _next()
    TcpExtDelayedACKLost = _next()
    TcpExtListenOverflows = _next()
    TcpExtListenDrops = _next()
    TcpExtTCPRenoRecovery = _next()
    TcpExtTCPSackRecovery = _next()
    TcpExtTCPSACKReorder = _next()
    TcpExtTCPFastRetrans = _next()
    TcpExtTCPSlowStartRetrans = _next()
    TcpExtTCPLossRetransmit = _next()
    TcpExtTCPTimeouts = _next()
    TcpExtTCPLossProbes = _next()
    TcpExtTCPLossProbeRecovery = _next()
    TcpExtTCPDSACKRecv = _next()
    TcpExtTCPSACKDiscard = _next()
    TcpExtTCPAbortOnData = _next()
    TcpExtTCPAbortOnClose = _next()
    TcpExtTCPAbortOnMemory = _next()
    TcpExtTCPAbortOnTimeout = _next()
    TcpExtTCPAbortOnLinger = _next()
    TcpExtTCPRcvQDrop = _next()
    TcpExtTCPOFOQueue = _next()
    TcpExtTCPOFODrop = _next()
    TcpExtTCPOFOMerge = _next()
    TcpExtPruneCalled = _next()
    TcpExtOfoPruned = _next()
    TcpExtRcvPruned = _next()
    TcpExtTCPDeferAcceptDrop = _next()
    TcpExtTCPTimeWaitOverflow = _next()
    TcpExtTCPReqQFullDoCookies = _next()
    TcpExtTCPReqQFullDrop = _next()
    TcpExtTCPChallengeACK = _next()
    TcpExtTCPSYNChallenge = _next()
    TcpExtTCPWinProbe = _next()
    TcpExtTCPFastOpenActive = _next()
    TcpExtTCPFastOpenActiveFail = _next()
    TcpExtTCPFastOpenPassive = _next()
    TcpExtTCPFastOpenPassiveFail = _next()
    TcpExtTCPFastOpenPassiveAltKey = _next()
    TcpExtTCPFastOpenListenOverflow = _next()
    TcpExtTCPFastOpenCookieReqd = _next()
    TcpExtTCPFastOpenBlackhole = _next()
    TcpExtTCPACKSkippedSeq = _next()
    TcpExtTCPACKSkippedChallenge = _next()
    TcpExtTCPACKSkippedTimeWait = _next()
    TcpExtTCPWantZeroWindowAdv = _next()
    TcpExtTCPToZeroWindowAdv = _next()
    TcpExtTCPFromZeroWindowAdv = _next()
    TcpExtTCPZeroWindowDrop = _next()
    TcpExtOutOfWindowIcmps = _next()
    TcpExtTCPMTUPSuccess = _next()
    TcpExtTCPMTUPFail = _next()
    # UDP_MIB_* (Udp..., Udp6...): the stack has no UDP sockets; every datagram is refused
    UdpNoPorts = _next()
    UdpInCsumErrors = _next()
    Udp6NoPorts = _next()
    Udp6InCsumErrors = _next()
    # ustcp's own: drops and events Linux has no counter for
    UstcpDropIpShort = _next()
    UstcpDropIpVersion = _next()
    UstcpDropIpBadIhl = _next()
    UstcpDropIpBadChecksum = _next()
    UstcpDropIpBadLength = _next()
    UstcpDropIp6Short = _next()
    UstcpDropIp6Truncated = _next()
    UstcpDropIp6ExtShort = _next()
    UstcpDropIp6BadOption = _next()
    UstcpDropIp6UnknownOption = _next()
    UstcpDropIp6Routing = _next()
    UstcpDropIcmp6NotOurs = _next()  # neighbour discovery, MLD, router messages: not a router
    UstcpDropTcpShort = _next()
    UstcpDropTcpBadDoff = _next()
    UstcpDropTcpBadChecksum = _next()
    UstcpDropTcpBadOption = _next()
    UstcpDropIcmpShort = _next()
    UstcpDropIcmpBadChecksum = _next()
    UstcpDropIcmpQueueFull = _next()
    UstcpDropZeroPort = _next()
    UstcpDropAckUnsent = _next()
    UstcpDropNoAck = _next()
    UstcpDropOutOfWindow = _next()
    UstcpDropRstOutOfWindow = _next()
    UstcpNoSocket = _next()
    UstcpListenUnexpected = _next()
    UstcpListenRst = _next()
    UstcpReqOutOfWindow = _next()
    UstcpSynRecvTimeout = _next()
    UstcpSynRetransmitted = _next()
    UstcpTimeWaitEntered = _next()
    UstcpInternalErrors = _next()
    UstcpAppIdleTimeouts = _next()  # --idle-timeout ended an app's connection
    # the TUN device's own drops (/proc/net/dev), read when nstat asks: TunLink.device_counters
    UstcpTunTxDropped = _next()
    UstcpTunRxDropped = _next()
    UstcpLinkTxDrops = _next()
    UstcpLinkTxErrors = _next()
    UstcpLinkTxTooBig = _next()
    UstcpImpairLoss = _next()
    UstcpImpairDuplicate = _next()
    UstcpImpairCorrupt = _next()
    UstcpImpairCE = _next()
    UstcpImpairReorder = _next()
    UstcpImpairQueueDrops = _next()
    UstcpImpairPmtuDrops = _next()


MIB_MAX = next(_ids)
NAMES: tuple[str, ...] = tuple(
    name for name, _ in sorted(
        ((k, v) for k, v in vars(Mib).items() if isinstance(v, int)), key=lambda kv: kv[1]))
BY_NAME: dict[str, MibId] = {name: MibId(i) for i, name in enumerate(NAMES)}
assert len(NAMES) == MIB_MAX

# Printed even at zero (nstat -a shows every counter; these are the ones worth a glance).
ALWAYS_SHOWN = (
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

ICMP_MSG_IN = "IcmpMsgInType"
ICMP_MSG_OUT = "IcmpMsgOutType"
ICMP6_MSG_IN = "Icmp6InType"  # /proc/net/snmp6's per-type counters (icmpv6msg_statistics)
ICMP6_MSG_OUT = "Icmp6OutType"


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
