"""TCP states with Linux's numbering (include/net/tcp_states.h) and ss spellings."""

from __future__ import annotations

from enum import IntEnum
from typing import Final


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


_SS_NAMES: Final = {
    State.ESTABLISHED: "ESTAB", State.SYN_SENT: "SYN-SENT", State.SYN_RECV: "SYN-RECV",
    State.FIN_WAIT1: "FIN-WAIT-1", State.FIN_WAIT2: "FIN-WAIT-2", State.TIME_WAIT: "TIME-WAIT",
    State.CLOSE: "UNCONN", State.CLOSE_WAIT: "CLOSE-WAIT", State.LAST_ACK: "LAST-ACK",
    State.LISTEN: "LISTEN", State.CLOSING: "CLOSING",
}

# States in which the connection is synchronized (RFC 9293 3.10.7.4).
SYNCHRONIZED: Final = frozenset({
    State.ESTABLISHED, State.FIN_WAIT1, State.FIN_WAIT2, State.CLOSE_WAIT,
    State.CLOSING, State.LAST_ACK, State.TIME_WAIT,
})

# The state diagram (RFC 9293 3.3.2 figure 5, as Linux walks it): each legal transition
# with the event that makes it. Connection.set_state checks every change against it, and
# docs/close-path.md draws it (tools/state_diagram.py). TIME_WAIT is kept by the
# TIME_WAIT table, as Linux's inet_timewait_sock: a connection entering it hands over
# its entry and ends in CLOSE itself (tcp_time_wait, tcp_done); the edges into and out
# of TIME_WAIT are the table's.
TRANSITIONS: tuple[tuple[State, State, str], ...] = (
    (State.CLOSE, State.SYN_SENT, "connect(): SYN"),
    (State.CLOSE, State.SYN_RECV, "a child of a listener (its final ACK arrived)"),
    (State.SYN_SENT, State.ESTABLISHED, "SYN-ACK: ACK"),
    (State.SYN_SENT, State.SYN_RECV, "SYN (simultaneous open): SYN-ACK"),
    (State.SYN_SENT, State.CLOSE, "RST, timeout, close()"),
    (State.SYN_RECV, State.ESTABLISHED, "ACK of our SYN"),
    (State.SYN_RECV, State.CLOSE, "RST, timeout"),
    (State.ESTABLISHED, State.FIN_WAIT1, "close() or SHUT_WR: FIN"),
    (State.ESTABLISHED, State.CLOSE_WAIT, "FIN: ACK"),
    (State.ESTABLISHED, State.CLOSE, "RST, timeout, abort"),
    (State.FIN_WAIT1, State.FIN_WAIT2, "ACK of our FIN"),
    (State.FIN_WAIT1, State.CLOSING, "FIN: ACK"),
    (State.FIN_WAIT1, State.CLOSE, "RST, timeout, abort"),
    (State.FIN_WAIT2, State.TIME_WAIT, "FIN: ACK"),
    (State.FIN_WAIT2, State.CLOSE, "RST, tcp_fin_timeout (orphan), abort"),
    (State.CLOSING, State.TIME_WAIT, "ACK of our FIN"),
    (State.CLOSING, State.CLOSE, "RST, timeout, abort"),
    (State.CLOSE_WAIT, State.LAST_ACK, "close() or SHUT_WR: FIN"),
    (State.CLOSE_WAIT, State.CLOSE, "RST, timeout, abort"),
    (State.LAST_ACK, State.CLOSE, "ACK of our FIN, RST, timeout"),
    (State.TIME_WAIT, State.CLOSE, "2MSL, or a new SYN takes the port"),
)

# What may follow each state; a connection handing itself to the TIME_WAIT table ends in
# CLOSE at once.
LEGAL: dict[State, frozenset[State]] = {
    state: frozenset(new for old, new, _ in TRANSITIONS if old == state)
    | (frozenset({State.CLOSE}) if any(old == state and new == State.TIME_WAIT
                                       for old, new, _ in TRANSITIONS) else frozenset())
    for state in State
}
