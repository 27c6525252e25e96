"""The syn-flood demo's look inside a cookie: which SYN-ACK was one, and what it carries.

The daemon runs with ``--seed 1``, so its cookie keys are those of any engine seeded with 1;
with them and the engine time at which the stack checked the client's ACK (its log's
``state_change`` event), the demo redoes :func:`~ustcp.tcp.syncookies.cookie_check` on the
numbers of the capture and splits the cookie into its fields.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import dpkt

from ustcp.config import StackConfig
from ustcp.mib import Counters
from ustcp.obs.ladder import Conversation, Segment
from ustcp.tcp import syncookies
from ustcp.tcp.engine import TcpEngine

SYN_ACK, ACK_ONLY = 0x12, 0x10


def _timestamps(seg: Segment) -> tuple[int, int] | None:
    for kind, data in dpkt.tcp.parse_opts(seg.options):
        if kind == dpkt.tcp.TCP_OPT_TIMESTAMP and len(data) == 8:
            val, ecr = struct.unpack("!II", data)
            return int(val), int(ecr)
    return None


def _established(log: Path) -> dict[str, float]:
    """Engine time of each connection's ``state_change`` to ESTABLISHED, by its name
    (``local>remote``)."""
    times: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if '"state_change"' not in line or '"ESTABLISHED"' not in line:
            continue
        event = json.loads(line)
        if event.get("event") == "state_change" and event.get("new") == "ESTABLISHED":
            times.setdefault(event["conn"], float(event["t"]))
    return times


def explain(convs: list[Conversation], log: Path, seed: int = 1) -> tuple[Conversation, str] | None:
    """The first of ``convs`` (connections to the stack) whose SYN-ACK was a cookie, and
    the cookie taken apart; None when none was."""
    engine = TcpEngine(StackConfig(), Counters(), seed=seed)
    secrets = engine.cookie_secrets
    established = _established(log)
    for conv in convs:
        syn = conv.segments[0]
        synack = next((s for s in conv.segments if s.flags & SYN_ACK == SYN_ACK), None)
        ack = next((s for s in conv.segments if synack and s.t >= synack.t
                    and s.source == conv.client and s.flags & SYN_ACK == ACK_ONLY), None)
        now = established.get(f"{conv.server}>{conv.client}")
        if synack is None or ack is None or now is None:
            continue
        client = (socket.inet_aton(syn.src), syn.sport)
        server = (socket.inet_aton(syn.dst), syn.dport)
        mss = syncookies.cookie_check(secrets, now, *client, *server, syn.seq, ack.ack - 1)
        if mss is None:
            continue
        rest = (synack.seq - secrets.cookie_hash(*client, *server, 0, 0) - syn.seq) \
            & 0xFFFFFFFF
        ts, echoed = _timestamps(synack), _timestamps(ack)
        lines = [
            f"SYN-ACK seq {synack.seq} = hash0(4-tuple) + client ISN {syn.seq} + 0x{rest:08x}",
            f"  0x{rest:08x}: top 8 bits 0x{rest >> syncookies.COOKIEBITS:02x} = the minute "
            f"counter (engine time {now:.0f} s / 60 = {int(now // 60)}, mod 256); low 24 "
            "bits = hash1(4-tuple, counter, client ISN) + MSS index",
            f"client ACK ack {ack.ack}: cookie + 1; cookie_check with the daemon's keys at "
            f"that time finds MSS {mss} (index {syncookies.mss_index(mss)} of "
            f"{list(syncookies.MSSTAB)})",
        ]
        if ts is not None:
            offset = engine.isn.ts_offset(server[0], client[0])
            bits = (ts[0] - offset) & syncookies.TSMASK
            wscale = bits & syncookies.TS_OPT_WSCALE_MASK
            lines += [
                f"SYN-ACK TSval {ts[0]} = clock + the address pair's offset {offset} "
                "(RFC 7323 5.4); without the offset",
                f"  its low 6 bits {bits:06b} = wscale "
                f"{'none' if wscale == syncookies.TS_OPT_WSCALE_MASK else wscale}, SACK "
                f"{'on' if bits & syncookies.TS_OPT_SACK else 'off'}, ECN "
                f"{'on' if bits & syncookies.TS_OPT_ECN else 'off'}: the client's SYN options",
                f"client ACK TSecr {echoed[1] if echoed else '-'}: that TSval echoed, so the "
                "options come back with the ACK",
            ]
        return conv, "\n".join(lines)
    return None
