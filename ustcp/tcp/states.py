"""TCP states with Linux's numbering (include/net/tcp_states.h) and ss spellings."""

from __future__ import annotations

from enum import IntEnum


class State(IntEnum):
    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11

    @property
    def ss_name(self) -> str:
        """The column ``ss`` prints (iproute2 misc/ss.c sstate_name)."""
        return _SS_NAMES[self]


_SS_NAMES = {
    State.ESTABLISHED: "ESTAB", State.SYN_SENT: "SYN-SENT", State.SYN_RECV: "SYN-RECV",
    State.FIN_WAIT1: "FIN-WAIT-1", State.FIN_WAIT2: "FIN-WAIT-2", State.TIME_WAIT: "TIME-WAIT",
    State.CLOSE: "UNCONN", State.CLOSE_WAIT: "CLOSE-WAIT", State.LAST_ACK: "LAST-ACK",
    State.LISTEN: "LISTEN", State.CLOSING: "CLOSING",
}

# States in which the connection is synchronized (RFC 9293 3.10.7.4).
SYNCHRONIZED = frozenset({
    State.ESTABLISHED, State.FIN_WAIT1, State.FIN_WAIT2, State.CLOSE_WAIT,
    State.CLOSING, State.LAST_ACK, State.TIME_WAIT,
})
