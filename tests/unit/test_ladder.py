"""The ladder renderer: the checked-in capture gives the expected diagram, text and SVG."""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

import dpkt
import pytest

from tests.fixtures import make_pcaps
from ustcp.obs import ladder
from ustcp.obs.ladder import ACK, FIN, PSH, RST, SYN, Segment

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "http_close.pcap"
SVG = "{http://www.w3.org/2000/svg}"

EXPECTED = """\
    time  client 10.77.0.1:40000                                                             server 10.77.0.2:80
          CLOSED                                                                             LISTEN
   0.000  SYN-SENT     ──SYN seq=0 win=64240 <mss 1460,sackOK,TS,nop,wscale 7>────────────>
   0.001  ESTABLISHED  <──SYN,ACK seq=0 ack=1 win=65160 <mss 1460,sackOK,TS,nop,wscale 7>──  SYN-RECV
   0.002               ──ACK seq=1 ack=1 win=502 <nop,nop,TS>─────────────────────────────>  ESTABLISHED
   0.003               ──PSH,ACK seq=1 ack=1 win=502 len=72 <nop,nop,TS>──────────────────>
   0.004               <──ACK seq=1 ack=73 win=509 <nop,nop,TS>────────────────────────────
   0.005               <──ACK seq=1 ack=73 win=509 len=1448 <nop,nop,TS>───────────────────
   0.006               <──PSH,ACK seq=1449 ack=73 win=509 len=500 <nop,nop,TS>─────────────
   0.007               ──ACK seq=73 ack=1949 win=501 <nop,nop,TS>─────────────────────────>
   0.008  CLOSE-WAIT   <──FIN,ACK seq=1949 ack=73 win=509 <nop,nop,TS>─────────────────────  FIN-WAIT-1
   0.009               ──ACK seq=73 ack=1950 win=501 <nop,nop,TS>─────────────────────────>  FIN-WAIT-2
   0.010  LAST-ACK     ──FIN,ACK seq=73 ack=1950 win=501 <nop,nop,TS>─────────────────────>  TIME-WAIT
   0.011  CLOSED       <──ACK seq=1950 ack=74 win=509 <nop,nop,TS>─────────────────────────
"""  # noqa: E501


def test_fixture_is_what_the_generator_writes() -> None:
    assert FIXTURE.read_bytes() == make_pcaps.pcap_bytes(make_pcaps.http_close_packets())


def test_fixture_renders_the_expected_diagram() -> None:
    convs = ladder.conversations(ladder.read_pcap(str(FIXTURE)))
    assert [(c.client, c.server, len(c.segments)) for c in convs] == [
        ("10.77.0.1:40000", "10.77.0.2:80", 12)]
    assert ladder.render_text(ladder.ladder(convs[0])) == EXPECTED


def test_svg_is_well_formed_with_one_arrow_per_segment() -> None:
    lad = ladder.ladder(ladder.conversations(ladder.read_pcap(str(FIXTURE)))[0])
    root = ET.fromstring(ladder.render_svg([lad]))
    assert root.tag == f"{SVG}svg"
    arrows = [e for e in root.iter(f"{SVG}line") if e.get("class") == "arrow"]
    assert len(arrows) == 12
    texts = [e.text for e in root.iter(f"{SVG}text")]
    assert "SYN seq=0 win=64240 <mss 1460,sackOK,TS,nop,wscale 7>" in texts
    assert texts.count("TIME-WAIT") == 1
    # Arrows alternate direction as the segments do: the SYN goes right, the SYN-ACK left.
    assert float(arrows[0].get("x1", 0)) < float(arrows[0].get("x2", 0))
    assert float(arrows[1].get("x1", 0)) > float(arrows[1].get("x2", 0))


def test_ethernet_capture_gives_the_same_diagram(tmp_path: Path) -> None:
    frames = [
        (t, bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6,
                                         type=dpkt.ethernet.ETH_TYPE_IP, data=ip)))
        for t, ip in make_pcaps.http_close_packets()
    ]
    path = tmp_path / "eth.pcap"
    path.write_bytes(make_pcaps.pcap_bytes(frames, linktype=ladder.LINKTYPE_ETHERNET))
    convs = ladder.conversations(ladder.read_pcap(str(path)))
    assert ladder.render_text(ladder.ladder(convs[0])) == EXPECTED


def test_timestamp_values_on_request() -> None:
    conv = ladder.conversations(ladder.read_pcap(str(FIXTURE)))[0]
    labels = [a.label for a in ladder.ladder(conv, ts_values=True).arrows]
    assert labels[0] == "SYN seq=0 win=64240 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>"
    assert labels[2] == "ACK seq=1 ack=1 win=502 <nop,nop,TS val 101 ecr 900>"


def seg(t: float, from_client: bool, flags: int, seq: int, ack: int = 0, length: int = 0,
        win: int = 100, options: bytes = b"") -> Segment:
    a, b = ("10.0.0.1", 1234), ("10.0.0.2", 80)
    (src, sport), (dst, dport) = (a, b) if from_client else (b, a)
    return Segment(t, src, sport, dst, dport, flags, seq, ack, win, length, options)


def handshake(t: float = 0.0, c: int = 100, s: int = 900) -> list[Segment]:
    return [seg(t, True, SYN, c), seg(t + 0.001, False, SYN | ACK, s, c + 1),
            seg(t + 0.002, True, ACK, c + 1, s + 1)]


def test_marks_retransmissions_dup_acks_and_probes() -> None:
    segs = [
        *handshake(),
        seg(0.01, False, ACK, 901, 101, 100),
        seg(0.02, False, ACK, 1001, 101, 100),  # lost
        seg(0.03, False, ACK, 1101, 101, 100),
        seg(0.04, True, ACK, 101, 1001),
        seg(0.05, True, ACK, 101, 1001, options=b"\x01\x01\x05\x0a" +
            (1101).to_bytes(4, "big") + (1201).to_bytes(4, "big")),
        seg(0.06, True, ACK, 101, 1001),
        seg(0.07, False, ACK, 1001, 101, 100),  # the retransmission
        seg(0.08, True, ACK, 101, 1201),
        seg(0.09, False, ACK, 1200, 101),  # keepalive-style probe
    ]
    labels = [a.label for a in ladder.ladder(ladder.conversations(segs)[0]).arrows]
    assert labels[3:] == [
        "ACK seq=1 ack=1 win=100 len=100",
        "ACK seq=101 ack=1 win=100 len=100",
        "ACK seq=201 ack=1 win=100 len=100",
        "ACK seq=1 ack=101 win=100",
        "ACK seq=1 ack=101 win=100 <nop,nop,sack 201:301> [dup ack #1]",
        "ACK seq=1 ack=101 win=100 [dup ack #2]",
        "ACK seq=101 ack=1 win=100 len=100 [retransmission]",
        "ACK seq=1 ack=301 win=100",
        "ACK seq=300 ack=1 win=100 [probe]",
    ]


def test_new_syn_on_the_same_tuple_starts_a_new_connection() -> None:
    first = [*handshake(), seg(0.01, True, FIN | ACK, 101, 901),
             seg(0.02, False, FIN | ACK, 901, 102), seg(0.03, True, ACK, 102, 902)]
    second = handshake(t=1.0, c=5000, s=7000)
    convs = ladder.conversations([*first, seg(0.5, True, SYN, 100), *second])
    # The retransmitted first SYN (same ISN) stays with the first connection.
    assert [len(c.segments) for c in convs] == [7, 3]
    states = ladder.ladder(convs[0]).arrows
    assert [(a.client_state, a.server_state) for a in states[3:6]] == [
        ("FIN-WAIT-1", "CLOSE-WAIT"), ("TIME-WAIT", "LAST-ACK"), (None, "CLOSED")]
    assert states[6].label.endswith("[retransmission]")


def test_simultaneous_close_goes_through_closing() -> None:
    segs = [*handshake(), seg(0.01, True, FIN | ACK, 101, 901),
            seg(0.011, False, FIN | ACK, 901, 101),
            seg(0.02, True, ACK, 102, 902), seg(0.021, False, ACK, 902, 102)]
    arrows = ladder.ladder(ladder.conversations(segs)[0]).arrows
    assert [(a.client_state, a.server_state) for a in arrows[3:]] == [
        ("FIN-WAIT-1", "CLOSE-WAIT"), ("CLOSING", "LAST-ACK"), (None, "CLOSED"),
        ("TIME-WAIT", None)]


def test_reset_and_dropped_third_ack() -> None:
    # Accept queue full, tcp_abort_on_overflow=0: the server ignores the third ACK and
    # retransmits its SYN-ACK, which puts it back in SYN-RECV; a RST closes both sides.
    segs = [*handshake(), seg(1.0, False, SYN | ACK, 900, 101), seg(1.1, True, RST, 101)]
    arrows = ladder.ladder(ladder.conversations(segs)[0]).arrows
    assert [(a.client_state, a.server_state) for a in arrows] == [
        ("SYN-SENT", None), ("ESTABLISHED", "SYN-RECV"), (None, "ESTABLISHED"),
        (None, "SYN-RECV"), ("CLOSED", "CLOSED")]
    assert arrows[3].label == "SYN,ACK seq=0 ack=1 win=100 [retransmission]"


def test_elision_keeps_both_ends_and_restates_the_states() -> None:
    segs = [*handshake(), *(seg(0.01 + i / 100, False, PSH | ACK, 901 + 10 * i, 101, 10)
                            for i in range(20))]
    text = ladder.render_text(ladder.ladder(ladder.conversations(segs)[0]), max_arrows=6)
    lines = text.splitlines()
    assert len(lines) == 2 + 6 + 1
    assert "... 17 more segments ..." in lines[5]
    assert lines[6].split()[1] == "ESTABLISHED" and lines[6].endswith("ESTABLISHED")


def test_capture_that_starts_mid_connection() -> None:
    segs = [seg(0.0, True, PSH | ACK, 5000, 8000, 10), seg(0.1, False, ACK, 8000, 5010)]
    lad = ladder.ladder(ladder.conversations(segs)[0])
    assert lad.initial == ("ESTABLISHED", "ESTABLISHED")
    assert [a.label for a in lad.arrows] == ["PSH,ACK seq=0 ack=0 win=100 len=10",
                                             "ACK seq=0 ack=10 win=100"]


def test_command_prints_and_writes_svg(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    ladder.add_arguments(parser)
    out = tmp_path / "ladder.svg"
    assert ladder.main(parser.parse_args([str(FIXTURE), "--conn", "1", "--svg", str(out)])) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("connection 1: 10.77.0.1:40000 > 10.77.0.2:80, 12 segments\n")
    assert EXPECTED in printed
    ET.parse(out)
    assert ladder.main(parser.parse_args([str(FIXTURE), "--conn", "2"])) == 1
    assert "no connection 2" in capsys.readouterr().err


def test_absolute_sequence_numbers_on_request() -> None:
    conv = ladder.conversations(handshake(c=100, s=900))[0]
    relative = [a.label for a in ladder.ladder(conv).arrows]
    absolute = [a.label for a in ladder.ladder(conv, absolute=True).arrows]
    assert relative[1].startswith("SYN,ACK seq=0 ack=1 ")
    assert absolute[1].startswith("SYN,ACK seq=900 ack=101 ")
    assert absolute[2].startswith("ACK seq=101 ack=901 ")


def test_ipv6_endpoints_are_bracketed_as_ss_prints_them() -> None:
    syn = Segment(0.0, "fd77::1", 40000, "fd77::2", 80, SYN, 1, 0, 100, 0)
    assert (syn.source, syn.destination) == ("[fd77::1]:40000", "[fd77::2]:80")
    [conv] = ladder.conversations([syn])
    assert (conv.client, conv.server) == ("[fd77::1]:40000", "[fd77::2]:80")
