"""Undo of spurious cwnd reductions (undo.py; Linux tcp_try_undo_*): a D-SACK of every
retransmission of a recovery or a timeout, an ACK echoing the original's timestamp (Eifel,
RFC 3522) after an RTO or in recovery (also without SACK), F-RTO after an RTO (RFC 5682)
and tcp_frto=0. The scripts in
``undo/`` gave the same packets, tcp_info and nstat counters on this machine's Linux 6.18
(``ustcp packetdrill --target both tests/engine/undo``); their first line stands for
google's defaults.sh, whose other values are ustcp's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from ustcp.packetdrill.parser import parse_script
from ustcp.packetdrill.runner import Runner

SCRIPTS = Path(__file__).parent / "undo"


@pytest.mark.parametrize("name", [
    "dsack-undo-in-recovery",  # cwnd 7 -> 10, ssthresh infinite again; TCPDSACKUndo
    "eifel-undo-after-rto",  # cwnd 1 -> 11; TCPLossUndo
    "eifel-full-undo",  # cwnd 7 -> 17 as recovery ends; TCPFullUndo
    "eifel-partial-undo",  # cwnd 7 -> 12 on the partial ACK; TCPPartialUndo
    "frto-spurious-rto",  # two new segments, then cwnd 2 -> 12; TCPSpuriousRTOs
    "frto-off",  # tcp_frto=0: retransmissions, still CA_Loss
    "dsack-undo-after-rto",  # cwnd 1 -> 21 (the duplicate counts as delivered)
    "dsack-undo-needs-every-retransmission",  # one of two D-SACKed: no undo; both: undo
    "reno-eifel-full-undo",  # without SACK: undone, Recovery held until above high_seq
])
def test_undo_script(name: str) -> None:
    path = SCRIPTS / f"{name}.pkt"
    result = Runner(parse_script(path.read_text()), SCRIPTS, path.name).run()
    assert result.status == "pass", result.message
