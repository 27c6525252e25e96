"""Pacing (tcp/pacing.py): SO_MAX_PACING_RATE's internal pacing, which this machine's kernel
has too (the scripts here pass on ``ustcp packetdrill --target both``), fq as a script's qdisc
(the model in ustcp/qdisc.py; this kernel lacks sch_fq), and the gaps between packets on
virtual time."""

from __future__ import annotations

from pathlib import Path

import pytest

from ustcp.packetdrill.parser import parse_script
from ustcp.packetdrill.runner import Runner
from ustcp.qdisc import FQ_FLOW_PLIMIT, FQ_HORIZON, Fq
from ustcp.tcp import pacing

from .util import PASSIVE_OPEN

# SO_MAX_PACING_RATE at 100000 bytes/s: TCP paces itself (SK_PACING_NEEDED). The first 10
# segments leave at once; later 2000-byte packets one per 20 ms, the first after an idle
# stretch half as late (the credit rule of tcp_update_skb_after_send).
MAX_PACING_RATE = PASSIVE_OPEN % 257 + """\
+0 setsockopt(4, SOL_SOCKET, SO_MAX_PACING_RATE, [100000], 4) = 0
+0 getsockopt(4, SOL_SOCKET, SO_MAX_PACING_RATE, [100000], [4]) = 0
+0 %{ assert tcpi_max_pacing_rate == 100000, tcpi_max_pacing_rate }%
+0 %{ assert tcpi_pacing_rate == 100000, tcpi_pacing_rate }%
+0 write(4, ..., 16000) = 16000
+0 > P. 1:2001(2000) ack 1
+0 > P. 2001:4001(2000) ack 1
+0 > P. 4001:6001(2000) ack 1
+0 > P. 6001:8001(2000) ack 1
+0 > P. 8001:10001(2000) ack 1
+.1 < . 1:1(0) ack 4001 win 257
+0 > P. 10001:12001(2000) ack 1
+.01 > P. 12001:14001(2000) ack 1
+.02 > P. 14001:16001(2000) ack 1
+.1 < . 1:1(0) ack 16001 win 257
"""


def run(text: str) -> None:
    result = Runner(parse_script(text), Path("."), "inline").run()
    assert result.status == "pass", f"{result.message}\n" + "\n".join(result.log)


def test_so_max_pacing_rate_paces_the_connection_itself() -> None:
    run(MAX_PACING_RATE)
