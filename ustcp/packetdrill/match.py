"""Checking an outbound segment against the scripted packet (run_packet.c verify_*).

Every header field is compared (flags, seq, ack, urgent pointer; the window only when the
script gives ``win``), then the options in order with their values: the TS val only when
``--tcp_ts_tick_usecs`` is set, the TS ecr never. One scripted packet may be matched by
several consecutive segments whose payloads add up; they must look like the pieces of one
TSO packet (verify_packet_fragments).
"""

from __future__ import annotations

import struct

from ..wire.tcp import OPT_TIMESTAMP, TcpSegment, encode_options
from .ast import PacketSpec
from .packets import (
    MOD32,
    Actual,
    Flow,
    flag_bits,
    flag_letters,
    render_options,
    script_wire_options,
)


def record_timestamps(spec: PacketSpec, seg: TcpSegment, flow: Flow) -> None:
    """Remember the script->live TS val pair (map_outbound_live_packet)."""
    script_ts = next((o for o in spec.options or () if o.name == "TS"), None)
    if script_ts is None or seg.options.ts_val is None:
        return
    script_val, live_val = script_ts.values[0] % MOD32, seg.options.ts_val
    flow.ts_map[script_val] = live_val
    if flow.first_ts is None:
        flow.first_ts = (script_val, live_val)


def compare(spec: PacketSpec, actual: Actual, flow: Flow, ts_tick_us: int,
            tolerance_s: float) -> str | None:
    """The first difference, as ``what: expected X actual Y``; None when they match."""
    expected_flags = flag_bits(spec.flags)
    if actual.flags != expected_flags:
        return f"flags: expected {flag_letters(expected_flags)} actual " \
               f"{flag_letters(actual.flags)}"
    if actual.seq != spec.start_seq % MOD32:
        return f"seq: expected {spec.start_seq} actual {actual.seq}"
    if actual.ack != (spec.ack or 0) % MOD32:
        return f"ack: expected {spec.ack or 0} actual {actual.ack}"
    if spec.window is not None and actual.window != spec.window:
        return f"win: expected {spec.window} actual {actual.window}"
    if actual.urg_ptr != spec.urg_ptr:
        return f"urg: expected {spec.urg_ptr} actual {actual.urg_ptr}"
    if spec.options is not None:
        problem = _compare_options(spec, actual, flow, ts_tick_us, tolerance_s)
        if problem:
            return problem
    if not actual.payload_zero:
        return "payload: expected the bytes the application wrote actual other bytes"
    return None


def _compare_options(spec: PacketSpec, actual: Actual, flow: Flow, ts_tick_us: int,
                     tolerance_s: float) -> str | None:
    assert spec.options is not None
    expected = script_wire_options(spec.options)
    if [o.kind for o in expected] != [o.kind for o in actual.options]:
        return f"options: expected {render_options(expected)} actual " \
               f"{render_options(actual.options)}"
    for want, got in zip(expected, actual.options, strict=True):
        if want.kind == OPT_TIMESTAMP:
            if ts_tick_us and flow.first_ts is not None:
                script_val = struct.unpack("!I", want.data[:4])[0]
                live_val = struct.unpack("!I", got.data[:4])[0]
                mapped = (flow.first_ts[0] + live_val - flow.first_ts[1]) % MOD32
                drift = abs(((mapped - script_val + (1 << 31)) % MOD32) - (1 << 31))
                if drift * ts_tick_us > tolerance_s * 1e6:
                    return f"TS val: expected {script_val} actual {mapped}"
        elif want.data != got.data:
            return f"options: expected {render_options(expected)} actual " \
                   f"{render_options(actual.options)}"
    return None


def fragment_problem(prev: TcpSegment, cur: TcpSegment, sniffed: int, expected: int) -> \
        str | None:
    """Whether ``cur`` can continue the aggregate that ``prev`` ends (non-strict mode)."""
    if len(encode_options(prev.options, prev.flags)) != \
            len(encode_options(cur.options, cur.flags)):
        return "aggregate candidate option length differs"
    keep = flag_bits("SR.UE")
    if prev.flags & keep != cur.flags & keep:
        return f"aggregate candidate flags: expected {flag_letters(prev.flags)} actual " \
               f"{flag_letters(cur.flags)}"
    if cur.seq != (prev.seq + len(prev.payload)) % MOD32:
        return "aggregate candidate seq is not contiguous"
    if cur.ack != prev.ack or cur.window != prev.window or cur.urg_ptr != prev.urg_ptr:
        return "aggregate candidate ack/win differ"
    size = len(cur.payload)
    if size < expected - sniffed and size != len(prev.payload):
        return f"fragment payload: expected {len(prev.payload)} bytes actual {size} bytes"
    return None
