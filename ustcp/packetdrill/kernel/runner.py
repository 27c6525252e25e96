"""The kernel target: one script against the Linux kernel's TCP, on real time.

:class:`KernelRunner` is the engine's :class:`Runner` with its target hooks replaced; the
script's timeline, tolerances, sequence/timestamp remapping and packet matching are the
engine target's own code. It must run inside a private namespace (``worker.py`` makes one):

- ``<`` packets are written to ``tun0`` at their script time (``Tun.inject``); how late each
  write finished after its scheduled time is kept (``inject_lateness``) and reported;
- ``>`` packets come from the device's reader thread with the time it read them;
- system calls run on real sockets (``syscalls.py``), each in a thread of its own, so a
  ``...`` call blocks while the script goes on and its return time is checked;
- ``%{ }%`` blocks see the kernel's own TCP_INFO; shell commands act on the namespace
  (``commands.py``).

A wait that the engine does on virtual time is a real sleep here, bounded: an expected packet
that has not come ``KERNEL_LATE`` s after its window is missing, and a call written without
``...`` that blocks for ``BLOCK_WAIT`` s fails the script.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ...wire.tcp import TcpSegment, gso_segments
from ..ast import CodeSpec, CommandSpec, Event, PacketSpec, Script, SyscallSpec
from ..code import CodeFailure
from ..packets import Flow
from ..runner import (
    EPS,
    IDLE_WAIT,
    OUTBOUND_HORIZON,
    Outbound,
    Result,
    Runner,
    ScriptFailure,
    describe_call,
)
from ..sockets import CONNECT_PORT, LOCAL_IP, REMOTE_IP, CallMismatch, recvmsg_reason
from ..suites import Suite
from ..support import unsupported_reason
from ..symbols import Unsupported, evaluate
from . import commands
from .syscalls import REMOTE_ADDR, KernelSockets, Thunk
from .tcpinfo import read_tcp_info
from .world import LOCAL_ADDR, Tun

KERNEL_LATE = 3.0  # how long past its window an expected packet may still come (s)
BLOCK_WAIT = 10.0  # how long a call without '...' may block (s)


@dataclass(slots=True)
class Call:
    """A system call running in its own thread."""

    event: Event
    spec: SyscallSpec
    start: float
    end: float | None  # the script's return time ('...'); None if it gives none
    thunk: Thunk
    done: threading.Event = field(default_factory=threading.Event)
    value: int | None = None
    error: BaseException | None = None
    returned_at: float = 0.0  # monotonic

    def begin(self) -> None:
        threading.Thread(target=self._run, name=f"syscall-{self.spec.name}",
                         daemon=True).start()

    def _run(self) -> None:
        try:
            self.value = self.thunk()
        except BaseException as exc:  # handed to the runner's thread
            self.error = exc
        self.returned_at = time.monotonic()
        self.done.set()


def syscall_reason(spec: SyscallSpec) -> str | None:
    """What the kernel target cannot express: calls it lacks and unknown symbols."""
    if spec.name not in KernelSockets.CALLS:
        return f"system call {spec.name}"
    if spec.name == "recvmsg":
        return recvmsg_reason(spec)
    if spec.name in ("setsockopt", "getsockopt"):
        try:
            for arg in spec.args[1:3]:
                evaluate(arg)
        except Unsupported as exc:
            return str(exc)
    return None


class KernelRunner(Runner):
    tun: Tun | None = None

    def __init__(self, script: Script, script_dir: Path, name: str,
                 suite: Suite | None = None) -> None:
        super().__init__(script, script_dir, name, suite)
        self.steps: dict[int | None, list[commands.Step]] = {}
        self.kernel_sockets = KernelSockets(self)
        self.call: Call | None = None
        self.t0 = time.monotonic()
        self.scheduled = 0.0  # script time of the event being run
        self.began = 0.0  # when the event being run began (after its wait)
        self.call_slack = 0.0  # how long the previous system call took to run
        self.inject_lateness: list[float] = []  # s, one per injected packet
        self.pieces: deque[Outbound] = deque()  # the rest of a TSO packet cut at --mss

    def clock(self) -> float:
        return time.monotonic() - self.t0

    # ------------------------------------------------------------------ life cycle

    def run_script(self) -> Result:
        try:
            return super().run_script()
        finally:
            commands.nstat_history().unlink(missing_ok=True)
            self.kernel_sockets.close_all()
            if self.tun is not None:
                self.tun.close()

    def skip_reason(self) -> str | None:
        reason = unsupported_reason(self.script, {}, syscall_reason)
        if reason:
            return reason
        for name, value in self.script.options:
            if name in ("local_ip", "remote_ip") and value is not None and \
                    value.split("/", 1)[0] != {"local_ip": LOCAL_ADDR,
                                               "remote_ip": REMOTE_ADDR}[name]:
                return f"--{name}={value} (the kernel target's namespace has " \
                       f"{LOCAL_ADDR} and {REMOTE_ADDR})"
        versions = {self.ip_version} | {v for n, v in self.script.options if n == "ip_version"}
        if versions - {"ipv4"}:
            return "--ip_version other than ipv4 (the kernel target's world is IPv4)"
        try:
            self.steps[None] = commands.plan(self.suite.init_command, self.script_dir)
            if self.script.init_command:
                self.steps[self.script.init_command.line] = commands.plan(
                    self.script.init_command.spec.text, self.script_dir)
            for event in self.script.events:
                if isinstance(event.action, CommandSpec):
                    self.steps[event.line] = commands.plan(event.action.text,
                                                           self.script_dir)
        except Unsupported as exc:
            return str(exc)
        return None

    def device(self) -> Tun:
        if self.tun is None:
            self.tun = Tun(self.mtu or 1500)
        return self.tun

    def command(self, text: str, line: int | None) -> None:
        self.device()  # commands may name tun0
        for step in self.steps[line]:
            if step.target.endswith("/tcp_congestion_control"):
                self.kernel_sockets.congestion = step.value
                self.log.append(f"# tcp_congestion_control={step.value}: set on each "
                                "socket (TCP_CONGESTION)")
                continue
            try:
                note = commands.run(step)
            except commands.CheckFailed as exc:
                raise ScriptFailure(line or 0, str(exc)) from exc
            if note:
                self.log.append(f"# {note}")

    def start(self) -> None:
        self.device()
        self.t0 = time.monotonic()
        self.now = 0.0

    def finish(self) -> None:
        if self.call is not None:
            self.call.done.wait(IDLE_WAIT)
            if not self.call.done.is_set():
                raise ScriptFailure(self.call.event.line, "blocking system call still in "
                                                          "progress at the end of the script")
            self.reap()

    # ------------------------------------------------------------------ hooks (sockets)

    def on_connect(self) -> None:
        self.flow = Flow(None, CONNECT_PORT, passive=False)  # the SYN shows the port

    def listen_port(self) -> int:
        return self.kernel_sockets.listen_port or 8080

    # ------------------------------------------------------------------ time

    def run_event(self, event: Event) -> None:
        self.reap()
        super().run_event(event)
        # The next relative time counts from when this event finished (run.c
        # adjust_relative_event_times: "now"), except that an expected packet's time is
        # when it was read and an injected packet's when its write began (deliver): what
        # the kernel sends in answer is sent inside that write, so it cannot be earlier.
        if not isinstance(event.action, PacketSpec):
            self.now = self.clock()
        self.call_slack = self.now - self.began if isinstance(event.action, SyscallSpec) \
            else 0.0

    def verify_time(self, event: Event, start: float, end: float | None, actual: float,
                    what: str, tol: float | None = None) -> None:
        if what == "outbound packet" and actual < start:
            # Sent while the previous system call was still running (a connect's SYN, a
            # write's data): for the script that is at the call's end.
            actual = min(start, actual + self.call_slack)
        super().verify_time(event, start, end, actual, what, tol)

    def wait_until(self, event: Event, start: float) -> None:
        self.scheduled = start
        now = self.clock()
        if now > start + EPS:
            self.verify_time(event, start, None, now, "event")
        else:
            time.sleep(start - now)
        self.now = self.began = self.clock()

    # ------------------------------------------------------------------ packets

    def deliver(self, seg: TcpSegment) -> None:
        self.deliver_frame(self.device().frame(seg), seg.gso_size)

    def deliver_frame(self, frame: bytes, gso_size: int = 0) -> None:
        began = self.clock()
        self.device().inject(frame, gso_size)
        self.inject_lateness.append(self.clock() - self.scheduled)
        self.now = began

    def endpoints(self) -> tuple[bytes, bytes]:
        return LOCAL_IP, REMOTE_IP

    def next_outbound(self, flow: Flow, limit: float) -> Outbound | None:
        deadline = limit - OUTBOUND_HORIZON + KERNEL_LATE
        frames = self.device().frames
        while True:
            if self.pieces:
                out = self.pieces.popleft()
            else:
                try:
                    item = frames.get(timeout=max(0.0, deadline - self.clock()))
                except queue.Empty:
                    return None
                # --mss: a TSO packet is matched as the segments it stands for.
                self.pieces.extend(Outbound(item.time - self.t0, piece)
                                   for piece in gso_segments(item.seg, self.mss))
                out = self.pieces.popleft()
            if flow.matches(out.seg, CONNECT_PORT):
                return out
            self.log.append(f"{out.time:9.6f} {self.render_live(out.seg)}   "
                            "(other socket, ignored)")

    def drain_log(self) -> None:
        if self.tun is not None:
            while True:
                try:
                    item = self.tun.frames.get_nowait()
                except queue.Empty:
                    break
                self.outq.append(Outbound(item.time - self.t0, item.seg))
        super().drain_log()

    # ------------------------------------------------------------------ system calls

    def syscall(self, event: Event, spec: SyscallSpec, base: float) -> None:
        end = None
        if spec.end_time is not None:
            end = base + spec.end_time if event.time.is_relative else spec.end_time
            if self.call is not None:
                self.call.done.wait(IDLE_WAIT)
                self.reap()
                if self.call is not None:
                    raise ScriptFailure(event.line, "blocking system call while another "
                                                    "blocking system call is in progress")
        self.log.append(f"{self.now:9.6f} {describe_call(spec)}")
        try:
            thunk = self.kernel_sockets.prepare(spec)
        except OSError as exc:
            self.check_result(event, spec, None, exc)
            return
        call = Call(event, spec, self.now, end, thunk)
        call.begin()
        if end is not None:
            self.call = call
            return
        if not call.done.wait(BLOCK_WAIT):
            raise ScriptFailure(event.line, f"system call blocked for {BLOCK_WAIT:.0f} s: "
                                            "expected it to return at once (no '...' end "
                                            "time in the script)")
        self.complete(call)

    def reap(self) -> None:
        """Check a '...' call that has returned meanwhile."""
        call = self.call
        if call is not None and call.done.is_set():
            self.call = None
            returned = call.returned_at - self.t0
            result = f"-1 {call.error}" if call.error is not None else str(call.value)
            self.log.append(f"{returned:9.6f} {call.spec.name} returned {result}")
            self.complete(call)

    def complete(self, call: Call) -> None:
        error = call.error
        if isinstance(error, CallMismatch):
            raise ScriptFailure(call.event.line, str(error))
        if isinstance(error, OSError):
            self.check_result(call.event, call.spec, None, error)
        elif error is not None:
            raise error
        else:
            self.check_result(call.event, call.spec, call.value, None)
        if call.end is not None:
            self.verify_time(call.event, call.end, None, call.returned_at - self.t0,
                             "system call return", self.return_tolerance(call.start, call.end))

    # ------------------------------------------------------------------ code

    def run_code(self, event: Event, spec: CodeSpec) -> None:
        fd = self.kernel_sockets.info_fd
        sock = self.kernel_sockets.fds.get(fd) if fd is not None else None
        info = read_tcp_info(sock) if sock is not None else None
        try:
            printed = self.code.run(spec.text, info, event.line)
        except CodeFailure as exc:
            raise ScriptFailure(event.line, str(exc)) from exc
        self.log.extend(f"# {line}" for line in printed.splitlines())
