"""Counters named as Linux's nstat names them (TcpInSegs, TcpExtListenOverflows, ...).

One :class:`Counters` per stack. Counters are created on first increment, so every layer
counts what it sees without a central list; :data:`ALWAYS_SHOWN` are printed even at zero.
Drop reasons that Linux has no name for use the ``Ustcp`` prefix (UstcpDropBadChecksum).
"""

from __future__ import annotations

from collections import defaultdict

ALWAYS_SHOWN = (
    "IpInReceives", "IpInDelivers", "IpOutRequests", "IpInHdrErrors", "IpInAddrErrors",
    "IpInUnknownProtos",
    "IcmpInMsgs", "IcmpOutMsgs", "IcmpInEchos", "IcmpOutEchoReps",
    "TcpActiveOpens", "TcpPassiveOpens", "TcpAttemptFails", "TcpEstabResets", "TcpCurrEstab",
    "TcpInSegs", "TcpOutSegs", "TcpRetransSegs", "TcpInErrs", "TcpOutRsts", "TcpInCsumErrors",
    "TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtSyncookiesSent",
    "TcpExtSyncookiesRecv", "TcpExtSyncookiesFailed", "TcpExtTCPReqQFullDrop",
    "TcpExtTCPReqQFullDoCookies", "TcpExtPAWSEstab", "TcpExtTCPTimeWaitOverflow",
    "TcpExtTW", "TcpExtTWRecycled",
)


class Counters:
    """A bag of named monotonically increasing counters (plus gauges such as TcpCurrEstab)."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: defaultdict[str, int] = defaultdict(int)

    def inc(self, name: str, n: int = 1) -> None:
        self._values[name] += n

    def dec(self, name: str, n: int = 1) -> None:
        self._values[name] -= n

    def total(self) -> int:
        """The sum of every counter: a step that moved none was not counted anywhere."""
        return sum(self._values.values())

    def __getitem__(self, name: str) -> int:
        return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        """All counters, the always-shown ones included at zero, sorted by name."""
        merged = dict.fromkeys(ALWAYS_SHOWN, 0)
        merged.update(self._values)
        return dict(sorted(merged.items()))
