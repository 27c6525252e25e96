"""D-SACK generation as Linux 6.18 does it (Receiver.dsack_set/dsack_extend/dupack,
ReceiveBuffer.ofo_insert's duplicate parts): one block per ACK, first, for a queued
segment again, the part of a segment that spans or overlaps queued ranges, in-order data
overlapping the queue, old data (also before RCV.WUP) and a FIN again in CLOSE_WAIT; none
for a window probe or with tcp_dsack=0. The scripts in ``dsack/`` gave the same packets and
nstat counters on this machine's kernel (``ustcp packetdrill --target both
tests/engine/dsack``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ustcp.packetdrill.parser import parse_script
from ustcp.packetdrill.runner import Runner

SCRIPTS = Path(__file__).parent / "dsack"


@pytest.mark.parametrize("name", ["dsack-generation", "dsack-off"])
def test_dsack_script(name: str) -> None:
    path = SCRIPTS / f"{name}.pkt"
    result = Runner(parse_script(path.read_text()), SCRIPTS, path.name).run()
    assert result.status == "pass", result.message
