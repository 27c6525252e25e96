"""Pacing (tcp/pacing.py): SO_MAX_PACING_RATE's internal pacing, which this machine's kernel
has too (the scripts here pass on ``ustcp packetdrill --target both``), fq as a script's qdisc
(the model in ustcp/qdisc.py; this kernel lacks sch_fq), and the gaps between packets on
virtual time."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ustcp.packetdrill.parser import parse_script
from ustcp.packetdrill.runner import Runner
from ustcp.qdisc import FQ_FLOW_PLIMIT, FQ_HORIZON, Fq
from ustcp.tcp import pacing

from .util import FIRST_FLIGHT, PASSIVE_OPEN


def with_init(command: str, script: str) -> str:
    """``script`` with ``command`` added to its initial shell command."""
    return script.replace("`", f"`{command}\n", 1)


# SO_MAX_PACING_RATE at 100000 bytes/s: TCP paces itself (SK_PACING_NEEDED). The first 10
# segments leave at once; later 2000-byte packets one per 20 ms, the first after an idle
# stretch half as late (the credit rule of tcp_update_skb_after_send).
MAX_PACING_RATE = PASSIVE_OPEN % 257 + """\
+0 setsockopt(4, SOL_SOCKET, SO_MAX_PACING_RATE, [100000], 4) = 0
+0 getsockopt(4, SOL_SOCKET, SO_MAX_PACING_RATE, [100000], [4]) = 0
+0 %{ assert tcpi_max_pacing_rate == 100000, tcpi_max_pacing_rate }%
+0 %{ assert tcpi_pacing_rate == 100000, tcpi_pacing_rate }%
+0 write(4, ..., 16000) = 16000
""" + FIRST_FLIGHT + """\
+.1 < . 1:1(0) ack 4001 win 257
+0 > P. 10001:12001(2000) ack 1
+.01 > P. 12001:14001(2000) ack 1
+.02 > P. 14001:16001(2000) ack 1
+.1 < . 1:1(0) ack 16001 win 257
"""


# Set on the listener, SO_MAX_PACING_RATE is the accepted socket's too (sk_clone_lock copies
# the rate and SK_PACING_NEEDED), its pacing rate capped from the start.
INHERITED = PASSIVE_OPEN.replace(
    "+0 bind", "+0 setsockopt(3, SOL_SOCKET, SO_MAX_PACING_RATE, [100000], 4) = 0\n+0 bind"
) % 257 + """\
+0 getsockopt(4, SOL_SOCKET, SO_MAX_PACING_RATE, [100000], [4]) = 0
+0 %{ assert tcpi_pacing_rate == 100000, tcpi_pacing_rate }%
+0 write(4, ..., 12000) = 12000
""" + FIRST_FLIGHT + """\
+.1 < . 1:1(0) ack 4001 win 257
+0 > P. 10001:12001(2000) ack 1
+.1 < . 1:1(0) ack 12001 win 257
"""


def run(text: str) -> None:
    result = Runner(parse_script(text), Path("."), "inline").run()
    assert result.status == "pass", f"{result.message}\n" + "\n".join(result.log)


def test_so_max_pacing_rate_paces_the_connection_itself() -> None:
    run(MAX_PACING_RATE)


def test_an_accepted_socket_inherits_so_max_pacing_rate() -> None:
    run(INHERITED)


# fq as the script's qdisc: the flow is paced at sk_pacing_rate (2 x cwnd x MSS / SRTT in
# slow start). After the ACK at 0.2 s, cwnd 14 lets four 2000-byte packets go at 280000 B/s:
# the first at once and half a slot (3.57 ms) ahead of the next (the idle credit), then one
# per 7.14 ms; fq holds them, and TCP Small Queues keeps two at most in it, the fourth handed
# down when fq releases the second.
FQ_SLOW_START = with_init("tc qdisc replace dev tun0 root fq", PASSIVE_OPEN % 257) + """\
+0 write(4, ..., 18000) = 18000
""" + FIRST_FLIGHT + """\
+.1 < . 1:1(0) ack 4001 win 257
+0 %{ assert tcpi_pacing_rate == 280000, tcpi_pacing_rate }%
+0 > P. 10001:12001(2000) ack 1
+0 > P. 12001:14001(2000) ack 1
+.007 > P. 14001:16001(2000) ack 1
+.007 > P. 16001:18001(2000) ack 1
"""


def departures(text: str) -> list[float]:
    """The times the runner saw the stack's data segments leave."""
    result = Runner(parse_script(text), Path("."), "inline").run()
    assert result.status == "pass", f"{result.message}\n" + "\n".join(result.log)
    return [float(line.split()[0]) for line in result.log
            if " > " in line and "(1000)" in line]


def test_fq_spaces_packets_at_the_pacing_rate() -> None:
    times = departures(FQ_SLOW_START)
    assert times[:10] == [0.1] * 10  # the first 10 segments are never paced
    after_ack = times[10::2]  # the first segment of each 2000-byte packet
    gaps = [round((b - a) * 1e6) for a, b in itertools.pairwise(after_ack)]
    assert after_ack[0] == pytest.approx(0.2)
    assert gaps == [3571, 7143, 7143]  # us: half a slot (credit), then 2000 B / 280000 B/s


def test_without_fq_cubic_is_not_paced() -> None:
    script = FQ_SLOW_START.replace("root fq", "root pfifo").replace("+.007 >", "+0 >")
    times = departures(script)
    assert times[10:] == [0.2] * 8


def test_the_idle_credit_halves_the_first_slot() -> None:
    # 2000 bytes at 100000 B/s is 20 ms; a packet leaving 50 ms after its stamp costs 10.
    assert pacing.advance(1.05, 1.0, 2000, 100000, 12) == pytest.approx(1.06)
    assert pacing.advance(1.0, 1.0, 2000, 100000, 12) == pytest.approx(1.02)
    assert pacing.advance(1.0, 1.0, 2000, 100000, 9) == 1.0  # the first 10 segments
    assert pacing.advance(1.0, 1.0, 2000, pacing.PACING_UNLIMITED, 12) == 1.0


def test_fq_drops_beyond_its_horizon_and_its_flow_limit() -> None:
    q: Fq[int] = Fq()
    assert q.enqueue(0.0, "a", 0, 0.0) is None  # due, nothing ahead: leaves at once
    assert q.enqueue(0.0, "a", 1, FQ_HORIZON + 0.5) is False
    assert q.stats["horizon_drops"] == 1
    for i in range(FQ_FLOW_PLIMIT):
        assert q.enqueue(0.0, "a", i, 1.0 + i / 1000)
    assert q.enqueue(0.0, "a", -1, 2.0) is False
    assert q.stats["flows_plimit"] == 1 and q.qlen == FQ_FLOW_PLIMIT
    assert q.next_time() == 1.0
    assert [p for _, p in q.dequeue(1.0015)] == [0, 1]
    assert q.next_time() == pytest.approx(1.002)


# HyStart (tcp_cubic.c) sees SND.UNA already moved by the ACK it samples (tcp_ack updates it
# before tcp_clean_rtx_queue), and since Linux 6.14 starts its rounds below
# hystart_low_window too: with one ACK of 2 segments every 100 ms the delay detector ends
# slow start at cwnd 36 on the ACK at 1.5 s. Measured on this machine's kernel (6.18).
HYSTART_ROUNDS = with_init("sysctl -q net.ipv4.tcp_early_retrans=0", PASSIVE_OPEN % 514) + """\
+0 setsockopt(4, SOL_SOCKET, SO_SNDBUF, [200000], 4) = 0
+0 write(4, ..., 100000) = 100000
""" + "".join(f"+.1 < . 1:1(0) ack {2001 + 2000 * i} win 514\n" for i in range(13)) + """\
+0 %{ assert tcpi_snd_cwnd == 36 and tcpi_snd_ssthresh > 1000, tcpi_snd_ssthresh }%
+.1 < . 1:1(0) ack 28001 win 514
+0 %{ assert tcpi_snd_cwnd == 36 and tcpi_snd_ssthresh == 36, tcpi_snd_ssthresh }%
"""


def test_hystart_rounds_follow_the_new_snd_una() -> None:
    result = Runner(parse_script(HYSTART_ROUNDS), Path("."), "inline").run()
    assert result.status == "pass", result.message
