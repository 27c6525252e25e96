"""Wire details Linux 6.18 shows in the Google scripts (issue 16): a simultaneous open's
SYN-ACK that repeats the SYN (accepted, its SYN D-SACKed), a Fast Open SYN's data keeping
PSH on every retransmission, and the RST that answers data for a closed socket in
FIN_WAIT1. The scripts in ``fidelity/`` run the same on this machine's kernel (``ustcp
packetdrill --target both tests/engine/fidelity``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ustcp.packetdrill.parser import parse_script
from ustcp.packetdrill.runner import Runner

SCRIPTS = Path(__file__).parent / "fidelity"


@pytest.mark.parametrize("name", [
    "simultaneous-open-synack",
    "fastopen-syn-data-psh",
    "abort-on-data-reset",
])
def test_fidelity_script(name: str) -> None:
    path = SCRIPTS / f"{name}.pkt"
    result = Runner(parse_script(path.read_text()), SCRIPTS, path.name).run()
    assert result.status == "pass", result.message
