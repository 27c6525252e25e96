"""Run one packetdrill script against a fresh :class:`TcpEngine` on virtual time.

The clock moves only through the script: before an event at time T every engine timer due
by T fires (at its own deadline), and what the engine sends is queued with the time it was
sent. An expected (``>``) packet takes the next queued segment of the socket under test,
running timers forward when nothing is queued yet, and checks it and its time (packetdrill's
tolerance: max(--tolerance_usecs, 12.5 % of the time since the previous event)). Relative
times count from the moment the previous event finished, except that consecutive inbound
packets count from each other's script times (run.c adjust_relative_event_times).
"""

from __future__ import annotations

import errno as errno_module
import os
import socket as pysocket
import traceback
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config import StackConfig, SysctlError
from ..ip import IpLayer
from ..mib import Counters
from ..qdisc import Fq
from ..tcp.engine import TcpEngine
from ..wire.tcp import ACK, SYN, TcpSegment, gso_segments
from .ast import (
    CodeSpec,
    CommandSpec,
    EllipsisExpr,
    Event,
    IcmpSpec,
    PacketSpec,
    Script,
    SyscallSpec,
    TimeKind,
)
from .code import CodeFailure, CodeRunner
from .icmp import IcmpNameError, error_frame, render_icmp
from .match import compare, fragment_problem, record_timestamps
from .packets import (
    ECN_CODEPOINTS,
    Actual,
    Flow,
    MappingError,
    flag_bits,
    inbound_segment,
    render_spec,
    script_ecn,
    to_script_space,
)
from .parser import ParseError, UnsupportedSyntax, parse_file
from .shell import ShellPlan, check_status, plan_command
from .sockets import CONNECT_PORT, Attempt, CallMismatch, Sockets, WouldBlock
from .suites import Suite, suite_for
from .support import command_plans, unsupported_reason
from .symbols import Unsupported, evaluate, render_expr

ECN_NAMES = {values[0]: name for name, values in ECN_CODEPOINTS.items() if len(values) == 1}
TOLERANCE_USECS = 4000
TOLERANCE_PERCENT = 12.5
OUTBOUND_HORIZON = 120.0  # how far past its window to look for a late packet
BLOCK_HORIZON = 600.0  # how long a call without '...' may block before we give up
IDLE_WAIT = 1.0  # packetdrill waits this long for a blocked call to finish (await_idle)
REMOTE_PORT_BASE = 40000  # remote ephemeral ports for passive connections
SEED = 1
EPS = 1e-9

Status = Literal["pass", "fail", "skip"]


@dataclass(slots=True)
class Result:
    path: str
    status: Status
    line: int | None = None
    message: str = ""
    log: list[str] = field(default_factory=list)
    sent: dict[int, str] = field(default_factory=dict)  # line of a '>' packet -> what came

    def summary(self) -> str:
        if self.status == "pass":
            return f"PASS {self.path}"
        if self.status == "skip":
            return f"SKIP {self.path} ({self.message})"
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"FAIL {where} {self.message}"


class ScriptFailure(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(slots=True)
class Outbound:
    time: float
    seg: TcpSegment


@dataclass(slots=True)
class Pending:
    """A blocking system call in progress."""

    event: Event
    spec: SyscallSpec
    attempt: Attempt
    timeout_at: float | None
    start: float
    end: float | None  # the script's return time ('...'); None if it gives none


def run_file(path: Path, display: str | None = None,
             target: type[Runner] | None = None, ip_version: str = "ipv4",
             definitions: Mapping[str, str] | None = None) -> Result:
    """Parse and run one script on ``target`` (a Runner class; the engine by default), in
    one of packetdrill's ``--ip_version`` modes (a script's own option wins), with
    packetdrill's ``-D NAME=VALUE`` ``definitions``."""
    name = display or str(path)
    try:
        script = parse_file(path, definitions)
    except UnsupportedSyntax as exc:
        return Result(name, "skip", exc.line, f"unsupported: {exc.message}")
    except ParseError as exc:
        return Result(name, "fail", exc.line, f"parse error: {exc.message}")
    runner = (target or Runner)(script, path.parent, name, suite_for(path))
    runner.ip_version = ip_version
    return runner.run()


class Runner:
    def __init__(self, script: Script, script_dir: Path, name: str,
                 suite: Suite | None = None) -> None:
        self.script = script
        self.suite = suite or Suite()
        self.script_dir = script_dir
        self.name = name
        self.log: list[str] = []
        self.sent: dict[int, str] = {}
        self.tol_us = TOLERANCE_USECS
        self.tol_percent = TOLERANCE_PERCENT
        self.ts_tick_us = 0
        self.ts_ecr_scaled = False
        self.strict_segments = False
        self.mtu = 0  # 0: packetdrill's default for the IP version
        self.ip_version = "ipv4"
        self.mss = 0  # --mss: outbound segments longer than this are split before matching,
        # inbound ones longer are GRO packets of this segment size
        self.local_ip: bytes | None = None  # --local_ip / --remote_ip (IPv4), else the
        self.remote_ip: bytes | None = None  # addresses of the IP version
        self.config = StackConfig()
        self.now = 0.0
        self.last_time: float | None = None
        self.last_inbound = False
        self.outq: deque[Outbound] = deque()
        self.pending: Pending | None = None
        self.flow: Flow | None = None
        self.remote_ports = 0
        self.line = 0  # the event being run, for errors raised deep inside
        self.code = CodeRunner(name)
        self.counters = Counters()
        self.nstat_history: dict[str, int] = {}  # what the last nstat saw
        self.plans: dict[int, ShellPlan] = {}
        self.engine: TcpEngine
        self.ip: IpLayer  # the IP layer in front of the engine, for injected ICMP frames
        self.started = False  # the engine exists (commands before it have nothing to flush)
        self.qdisc = "pfifo"  # the root qdisc the script's `tc` lines installed last
        self.sockets: Sockets

    # ------------------------------------------------------------------ top level

    def run(self) -> Result:
        result = self.run_script()
        result.sent = self.sent
        return result

    def run_script(self) -> Result:
        try:
            self.plans = command_plans(self.script, self.script_dir)
            reason = self.skip_reason()
            if reason:
                return Result(self.name, "skip", None, f"unsupported: {reason}", self.log)
            self.configure()
            for event in self.script.events:
                self.line = event.line
                self.run_event(event)
            self.finish()
        except Unsupported as exc:
            return Result(self.name, "skip", self.line or None, f"unsupported: {exc}",
                          self.log)
        except ScriptFailure as exc:
            self.drain_log()
            return Result(self.name, "fail", exc.line, exc.message, self.log)
        except Exception as exc:  # an engine bug must fail this script, not the whole run
            self.log.extend(traceback.format_exc().splitlines())
            return Result(self.name, "fail", self.line or None,
                          f"internal error: {type(exc).__name__}: {exc}", self.log)
        self.drain_log()
        return Result(self.name, "pass", None, "", self.log)

    # ------------------------------------------------------------------ target hooks
    # The engine target is this class; ustcp.packetdrill.kernel.runner overrides these.

    def skip_reason(self) -> str | None:
        return unsupported_reason(self.script, self.plans, ip_version=self.ip_version)

    def command(self, text: str, line: int | None) -> None:
        """A shell command: the suite's init (``line`` None) or the script's."""
        self.apply_plan(plan_command(text, self.script_dir) if line is None
                        else self.plans[line], line)

    def start(self) -> None:
        # Linux's runner gives IPv6 an MTU of 1520, so that scripts see MSS 1460 in every mode
        mtu = self.mtu or (1520 if self.ip_version == "ipv6" else 1500)
        self.engine = TcpEngine(self.config, self.counters, seed=SEED, mtu=mtu, gso_max_size=0)
        self.started = True
        self.install_qdisc()
        self.sockets = Sockets(self.engine, self, self.ip_version, self.local_ip,
                               self.remote_ip)
        self.ip = IpLayer(self.engine, self.counters, {self.sockets.local_ip}, self.config,
                          mtu=mtu)

    def install_qdisc(self) -> None:
        """fq in front of the engine's output (ustcp.qdisc), or nothing that holds packets."""
        self.engine.qdisc = Fq() if self.qdisc == "fq" else None

    def deliver(self, seg: TcpSegment) -> None:
        """Hand an injected segment to the stack under test."""
        self.engine.on_segment(self.now, self.sockets.remote_ip, self.sockets.local_ip, seg)
        self.collect()

    def deliver_frame(self, frame: bytes) -> None:
        """Hand an injected IP frame (an ICMP error) to the stack under test."""
        self.ip.on_frame(self.now, frame)
        self.collect()

    def endpoints(self) -> tuple[bytes, bytes]:
        """The (local, remote) addresses of the connection under test."""
        return self.sockets.local_ip, self.sockets.remote_ip

    def configure(self) -> None:
        for name, value in (*self.suite.options, *self.script.options):
            if name == "tolerance_usecs":
                self.tol_us = int(value or 0)
            elif name == "tolerance_percent":
                self.tol_percent = float(value or 0)
            elif name == "tcp_ts_tick_usecs":
                self.ts_tick_us = int(value or 0)
            elif name == "tcp_ts_ecr_scaled":
                self.ts_ecr_scaled = True
            elif name == "strict_segments":
                self.strict_segments = True
            elif name == "mtu":
                self.mtu = int(value or 1500)
            elif name == "ip_version":
                self.ip_version = value or "ipv4"
            elif name == "mss":
                self.mss = positive_int(name, value)
            elif name in ("local_ip", "remote_ip", "gateway_ip", "netmask_ip"):
                address = ipv4_option(name, value)
                if name == "local_ip":
                    self.local_ip = address
                elif name == "remote_ip":
                    self.remote_ip = address
        self.command(self.suite.init_command, None)
        if self.script.init_command:
            self.command(self.script.init_command.spec.text, self.script.init_command.line)
        self.start()

    def apply_plan(self, plan: ShellPlan, line: int | None) -> None:
        for name, value in plan.sysctls:
            try:
                self.config.set(name, value)
            except SysctlError as exc:
                raise Unsupported(f"sysctl {name}={value}: {exc}") from exc
        self.log.extend(f"# {note}" for note in plan.notes)
        if plan.flush_metrics and self.started:
            self.engine.tcp_metrics_flush()
        if plan.qdisc is not None:
            self.qdisc = plan.qdisc
            if self.started:
                self.install_qdisc()
        if plan.checks:
            self.run_checks(plan, line)

    def run_checks(self, plan: ShellPlan, line: int | None) -> None:
        """The command's exit status as bash's for its list: nstat checks read the
        stack's counters (and the history of the previous nstat); other commands succeed."""
        status = 0
        failed = ""
        for item in plan.steps:
            if (item.connector == "&&" and status) or (item.connector == "||" and not status):
                continue
            status = 0
            if item.check is not None:
                status = check_status(item.check, self.counters.snapshot(), self.nstat_history)
                failed = item.check.text
                self.log.append(f"# $ {failed}: status {status}")
        if status:
            raise ScriptFailure(line or 0, f"shell command {failed!r} exited with status "
                                           f"{status}")

    def finish(self) -> None:
        if self.pending is not None:
            self.wait_pending(self.now + IDLE_WAIT)
            if self.pending is not None:
                raise ScriptFailure(self.pending.event.line,
                                    "blocking system call still in progress at the end of "
                                    "the script")

    # ------------------------------------------------------------------ hooks (Sockets)

    def on_socket(self) -> None:
        self.flow = None

    def on_listen(self) -> None:
        self.flow = None  # the next inbound packet starts a passive connection

    def on_connect(self) -> None:
        conn = self.sockets.info_conn
        port = conn.local_port if conn is not None else None
        self.flow = Flow(port, CONNECT_PORT, passive=False)

    # ------------------------------------------------------------------ time

    def event_times(self, event: Event) -> tuple[float, float | None, float]:
        """(start, end of a range, base of relative times) of an event."""
        when = event.time
        if when.kind is TimeKind.ANY:
            return self.now, None, self.now
        if when.kind in (TimeKind.ABSOLUTE, TimeKind.ABSOLUTE_RANGE):
            if self.last_time is None and when.start != 0:
                raise ScriptFailure(event.line, "first event should be at time 0")
            if self.last_time is not None and when.start < self.last_time - EPS:
                raise ScriptFailure(event.line, f"time goes backward in script from "
                                                f"{self.last_time:.6f} s to {when.start:.6f} s")
            return when.start, when.end, 0.0
        inbound = isinstance(event.action, (PacketSpec, IcmpSpec)) and \
            event.action.direction == "<"
        base = self.last_time if (self.last_inbound and inbound and
                                  self.last_time is not None) else self.now
        end = base + when.end if when.end is not None else None
        return base + when.start, end, base

    def tolerance(self, expected: float) -> float:
        tol = self.tol_us / 1e6
        if self.last_time is not None:
            tol = max(tol, self.tol_percent / 100 * (expected - self.last_time))
        return tol

    def verify_time(self, event: Event, start: float, end: float | None, actual: float,
                    what: str, tol: float | None = None) -> None:
        if event.time.kind is TimeKind.ANY:
            return
        tol = self.tolerance(start) if tol is None else tol
        if end is not None:
            if start - tol - EPS <= actual <= end + tol + EPS:
                return
            raise ScriptFailure(event.line, f"timing: expected {what} at {start:.6f}~"
                                            f"{end:.6f} s actual {actual:.6f} s")
        if abs(actual - start) <= tol + EPS:
            return
        raise ScriptFailure(event.line, f"timing: expected {what} at {start:.6f} s actual "
                                        f"{actual:.6f} s (tolerance {tol:.6f} s)")

    def next_wakeup(self) -> float | None:
        times = [self.engine.next_deadline()]
        if self.pending is not None:
            times.append(self.pending.timeout_at)
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def fire(self, when: float) -> None:
        """Run the engine's timers due at ``when`` (never moving the clock backwards)."""
        self.now = max(self.now, when)
        self.engine.on_timers(self.now)
        self.collect()

    def advance(self, until: float) -> None:
        stalls = 0
        while True:
            when = self.next_wakeup()
            if when is None or when > until + EPS:
                break
            stalls = stalls + 1 if when <= self.now else 0
            if stalls > 10000:
                raise ScriptFailure(self.line, f"engine timer due at {when:.6f} s never "
                                               "completes")
            self.fire(when)
        self.now = max(self.now, until)

    def wait_until(self, event: Event, start: float) -> None:
        if self.now > start + EPS:
            self.verify_time(event, start, None, self.now, "event")
        else:
            self.advance(start)

    # ------------------------------------------------------------------ engine output

    def collect(self) -> None:
        self.drain()
        if self.pending is not None:
            self.retry_pending()
            self.drain()

    def drain(self) -> None:
        for _src, _dst, seg in self.engine.take_output():
            for piece in gso_segments(seg, self.mss):
                self.outq.append(Outbound(self.now, piece))
        self.engine.take_wakeups()
        self.sockets.observe()

    def drain_log(self) -> None:
        """Record what the stack sent that the script never asked about."""
        for item in self.outq:
            self.log.append(f"{item.time:9.6f} {self.render_live(item.seg)}   (not in script)")
        self.outq.clear()

    def render_live(self, seg: TcpSegment) -> str:
        flow = self.flow or Flow(seg.src_port, seg.dst_port, passive=True)
        return to_script_space(seg, seg, len(seg.payload), flow, True).render()

    # ------------------------------------------------------------------ events

    def run_event(self, event: Event) -> None:
        start, end, base = self.event_times(event)
        action = event.action
        if isinstance(action, PacketSpec) and action.direction == ">":
            self.expect_outbound(event, action, start, end)
        else:
            self.wait_until(event, start)
            if isinstance(action, PacketSpec):
                self.inject(event, action)
            elif isinstance(action, IcmpSpec):
                self.inject_icmp(event, action)
            elif isinstance(action, SyscallSpec):
                self.syscall(event, action, base)
            elif isinstance(action, CommandSpec):
                self.command(action.text, event.line)
            elif isinstance(action, CodeSpec):
                self.run_code(event, action)
        self.last_time = start
        self.last_inbound = isinstance(action, (PacketSpec, IcmpSpec)) and \
            action.direction == "<"

    def inject(self, event: Event, spec: PacketSpec) -> None:
        flags = flag_bits(spec.flags)
        flow = self.flow
        if flow is None:
            self.remote_ports += 1
            flow = Flow(self.listen_port(), REMOTE_PORT_BASE + self.remote_ports,
                        passive=True, remote_isn=spec.start_seq)
            self.flow = flow
        elif not flow.passive and flags & SYN and flags & ACK and not flow.remote_isn:
            flow.remote_isn = spec.start_seq
        try:
            seg = inbound_segment(spec, flow, self.ts_ecr_scaled)
        except MappingError as exc:
            raise ScriptFailure(event.line, str(exc)) from exc
        if self.mss and len(seg.payload) > self.mss:
            seg.gso_size = self.mss  # --mss: a GRO packet of mss-sized segments
        self.log.append(f"{self.now:9.6f} {render_spec(spec)}")
        self.deliver(seg)

    def inject_icmp(self, event: Event, spec: IcmpSpec) -> None:
        """An ICMP error about a segment of the connection under test, as a real frame."""
        flow = self.flow
        if flow is None or flow.local_port is None:
            raise ScriptFailure(event.line, "no connection under test for an ICMP packet")
        local, remote = self.endpoints()
        live_seq = spec.echoed_seq + flow.local_offset(False)
        try:
            frame = error_frame(spec, local, flow.local_port, remote, flow.remote_port,
                                live_seq)
        except IcmpNameError as exc:
            raise ScriptFailure(event.line, str(exc)) from exc
        self.log.append(f"{self.now:9.6f} {render_icmp(spec)}")
        self.deliver_frame(frame)

    def listen_port(self) -> int:
        for sock in self.sockets.fds.values():
            if sock.listener is not None and sock.port is not None:
                return sock.port
        return 8080

    def expect_outbound(self, event: Event, spec: PacketSpec, start: float,
                        end: float | None) -> None:
        flow = self.flow
        if flow is None:
            raise ScriptFailure(event.line, "no socket under test for an outbound packet")
        flags = flag_bits(spec.flags)
        tol = self.tolerance(start)
        if event.time.kind is TimeKind.ANY:
            limit = self.now + OUTBOUND_HORIZON
        else:
            limit = (end if end is not None else start) + tol + OUTBOUND_HORIZON
        fragments: list[Outbound] = []
        total = 0
        while total < spec.payload_len or not fragments:
            item = self.next_outbound(flow, limit)
            if item is None:
                if fragments:
                    break
                raise ScriptFailure(event.line, f"expected {render_spec(spec)} at "
                                                f"{start:.6f} s actual no packet sent")
            seg = item.seg
            if not fragments:
                self.learn_isn(flow, spec, flags, seg)
            self.log.append(f"{item.time:9.6f} {self.render_live(seg)}")
            if fragments:
                problem = fragment_problem(fragments[-1].seg, seg, total, spec.payload_len)
                if problem:
                    raise ScriptFailure(event.line, f"{problem} (script: {render_spec(spec)}; "
                                                    f"actual: {self.render_live(seg)})")
            fragments.append(item)
            total += len(seg.payload)
            if self.strict_segments:
                break
        first, last = fragments[0].seg, fragments[-1].seg
        zero = all(bytes(f.seg.payload).count(0) == len(f.seg.payload) for f in fragments)
        actual = to_script_space(first, last, total, flow, zero)
        self.sent[event.line] = actual.render()
        if total != spec.payload_len:
            raise ScriptFailure(event.line, self.mismatch(
                f"payload: expected {spec.payload_len} bytes actual {total} bytes", spec,
                actual))
        record_timestamps(spec, last, flow)
        problem = compare(spec, actual, flow, self.ts_tick_us, self.tol_us / 1e6)
        ecn_field = script_ecn(spec)
        if not problem and ecn_field is not None and first.ecn not in ecn_field:
            problem = f"IP ECN field: expected {spec.ip_info} actual " \
                      f"{ECN_NAMES.get(first.ecn, first.ecn)}"
        if problem:
            raise ScriptFailure(event.line, self.mismatch(problem, spec, actual))
        self.verify_time(event, start, end, fragments[-1].time, "outbound packet", tol)
        self.now = max(self.now, fragments[-1].time)

    @staticmethod
    def mismatch(problem: str, spec: PacketSpec, actual: Actual) -> str:
        return f"{problem} (script: {render_spec(spec)}; actual: {actual.render()})"

    @staticmethod
    def learn_isn(flow: Flow, spec: PacketSpec, flags: int, seg: TcpSegment) -> None:
        """The stack's ISN, from its SYN-ACK (passive) or SYN (active)."""
        synack = flags & (SYN | ACK) == SYN | ACK
        syn = flags & (SYN | ACK) == SYN and seg.flags & (SYN | ACK) == SYN
        if (flow.passive and synack and not flow.isn_learned) or (not flow.passive and syn):
            flow.learn_local_isn(spec.start_seq, seg.seq, seg.src_port)

    def next_outbound(self, flow: Flow, limit: float) -> Outbound | None:
        while True:
            while self.outq:
                item = self.outq.popleft()
                if flow.matches(item.seg, CONNECT_PORT):
                    return item
                self.log.append(f"{item.time:9.6f} {self.render_live(item.seg)}   "
                                "(other socket, ignored)")
            when = self.next_wakeup()
            if when is None or when > limit:
                return None
            self.fire(when)

    # ------------------------------------------------------------------ system calls

    def syscall(self, event: Event, spec: SyscallSpec, base: float) -> None:
        end = None
        if spec.end_time is not None:
            end = base + spec.end_time if event.time.is_relative else spec.end_time
            if self.pending is not None:
                self.wait_pending(self.now + IDLE_WAIT)
                if self.pending is not None:
                    raise ScriptFailure(event.line, "blocking system call while another "
                                                    "blocking system call is in progress")
        self.log.append(f"{self.now:9.6f} {describe_call(spec)}")
        try:
            value = self.sockets.call(self.now, spec)
        except WouldBlock as blocked:
            self.pending = Pending(event, spec, blocked.attempt, blocked.timeout_at, self.now,
                                   end)
            self.drain()
            if end is None:
                self.block(event)
            return
        except OSError as exc:
            self.check_result(event, spec, None, exc)
        except CallMismatch as exc:
            raise ScriptFailure(event.line, str(exc)) from exc
        else:
            self.check_result(event, spec, value, None)
        if end is not None:
            self.verify_time(event, end, None, self.now, "system call return",
                             self.return_tolerance(self.now, end))
        self.collect()

    def block(self, event: Event) -> None:
        """A call without '...' blocked: the script waits for it (timers keep running)."""
        limit = self.now + BLOCK_HORIZON
        while self.pending is not None:
            when = self.next_wakeup()
            if when is None or when > limit:
                raise ScriptFailure(event.line, "system call blocked: expected it to return "
                                                "at once (no '...' end time in the script)")
            self.fire(when)

    def wait_pending(self, limit: float) -> None:
        while self.pending is not None:
            when = self.next_wakeup()
            if when is None or when > limit:
                return
            self.fire(when)

    def retry_pending(self) -> None:
        pending = self.pending
        assert pending is not None
        try:
            value = self.sockets.retry(self.now, pending.attempt)
        except WouldBlock as blocked:
            pending.attempt = blocked.attempt
            pending.timeout_at = blocked.timeout_at
            return
        except OSError as exc:
            self.pending = None
            self.log.append(f"{self.now:9.6f} {pending.spec.name} returned -1 "
                            f"{errno_module.errorcode.get(exc.errno or 0, exc.errno)}")
            self.check_result(pending.event, pending.spec, None, exc)
        except CallMismatch as exc:
            raise ScriptFailure(pending.event.line, str(exc)) from exc
        else:
            self.pending = None
            self.log.append(f"{self.now:9.6f} {pending.spec.name} returned {value}")
            self.check_result(pending.event, pending.spec, value, None)
        if pending.end is not None:
            self.verify_time(pending.event, pending.end, None, self.now,
                             "system call return", self.return_tolerance(pending.start,
                                                                         pending.end))

    def return_tolerance(self, start: float, end: float) -> float:
        return max(self.tol_us / 1e6, self.tol_percent / 100 * (end - start))

    def check_result(self, event: Event, spec: SyscallSpec, value: int | None,
                     error: OSError | None) -> None:
        if isinstance(spec.result, EllipsisExpr):
            return
        want = evaluate(spec.result)
        if error is not None:
            code = error.errno or 0
            name = errno_module.errorcode.get(code, str(code))
            if want != -1:
                raise ScriptFailure(event.line, f"{spec.name}: expected {want} actual -1 "
                                                f"{name} ({os.strerror(code)})")
            if spec.errno is not None:
                want_code = getattr(errno_module, spec.errno, None)
                if not isinstance(want_code, int):
                    raise Unsupported(f"errno {spec.errno}")
                if want_code != code:
                    raise ScriptFailure(event.line, f"{spec.name}: expected -1 {spec.errno} "
                                                    f"actual -1 {name}")
            return
        if want is not None and value != want:
            expected = f"{want} {spec.errno}" if spec.errno else str(want)
            raise ScriptFailure(event.line, f"{spec.name}: expected {expected} actual {value}")

    # ------------------------------------------------------------------ code

    def run_code(self, event: Event, spec: CodeSpec) -> None:
        conn = self.sockets.info_conn
        info = conn.tcp_info(self.now) if conn is not None else None
        try:
            printed = self.code.run(spec.text, info, event.line)
        except CodeFailure as exc:
            raise ScriptFailure(event.line, str(exc)) from exc
        self.log.extend(f"# {line}" for line in printed.splitlines())


def positive_int(name: str, value: str | None) -> int:
    try:
        number = int(value or "")
    except ValueError:
        number = 0
    if number <= 0:
        raise ScriptFailure(0, f"bad --{name}: {value}")
    return number


def ipv4_option(name: str, value: str | None) -> bytes:
    """An address option's IPv4 address (a ``/prefix`` after it, as packetdrill allows for
    --remote_ip, is dropped); an IPv6 address is unsupported until the stack has IPv6."""
    text = (value or "").split("/", 1)[0]
    if ":" in text:
        raise Unsupported(f"--{name}={value} (IPv6)")
    try:
        if text.count(".") == 3:
            return pysocket.inet_aton(text)
    except OSError:
        pass
    raise ScriptFailure(0, f"bad --{name}: {value}")


def describe_call(spec: SyscallSpec) -> str:
    args = ", ".join(render_expr(arg) for arg in spec.args)
    text = f"{spec.name}({args}) = {render_expr(spec.result)}"
    return f"{text} {spec.errno}" if spec.errno else text
