"""A demo's line to the daemon's control socket that costs no process per question.

The control socket is an abstract unix socket, which belongs to the daemon's network
namespace; ``ustcp ss`` run through ``ip netns exec`` reaches it, at the price of starting
Python (about a second on a loaded machine). A demo that polls for a condition asks through
:class:`Control` instead: one small process inside the namespace keeps a connection to the
socket open and relays JSON lines both ways.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

from ustcp.demo.netns import Daemon, DemoError, Namespace
from ustcp.obs.ss import Row, filter_rows

WAIT = 20.0  # seconds any awaited condition gets before the demo gives up
T = TypeVar("T")

RELAY = """
import socket, sys
from ustcp.obs import control
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(control.address(control.DEFAULT_NAME))
replies = sock.makefile("rb")
for line in sys.stdin.buffer:
    sock.sendall(line)
    sys.stdout.buffer.write(replies.readline())
    sys.stdout.flush()
"""


class Control:
    """Requests to the daemon in ``ns`` over one relayed control connection."""

    def __init__(self, ns: Namespace) -> None:
        self.proc = subprocess.Popen(ns.argv([sys.executable, "-c", RELAY]),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def __enter__(self) -> Control:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError as exc:
            raise DemoError("the control relay ended (is the daemon gone?)") from exc
        line = self.proc.stdout.readline()
        if not line:
            raise DemoError("the control relay ended (is the daemon gone?)")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise DemoError(f"the daemon answered {cmd}: {reply['error']}")
        return reply

    def ss(self, *, state: str | None = None, port: int | None = None) -> list[Row]:
        return filter_rows(self.request("ss")["sockets"], state=state, port=port)

    def sysctl(self, *names: str) -> dict[str, Any]:
        """The daemon's values of the named knobs."""
        values: dict[str, Any] = self.request("sysctl")["sysctl"]
        return {name: values[name] for name in names}

    def nstat_deltas(self) -> dict[str, int]:
        """The counters that moved since the last reset (and a new interval starts)."""
        counters: dict[str, int] = self.request("nstat", reset=True)["counters"]
        return {name: value for name, value in counters.items() if value}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def wait_for(what: str, probe: Callable[[], T], timeout: float = WAIT) -> T:
    """Poll ``probe`` until it returns something true, and return that. DemoError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := probe()):
        if time.monotonic() > deadline:
            raise DemoError(f"{what}: not seen within {timeout:g} s")
        time.sleep(0.05)
    return result


class Tally:
    """Counter increments summed over several ``nstat --reset`` polls."""

    def __init__(self, ctl: Control) -> None:
        self.ctl = ctl
        self.deltas: dict[str, int] = {}
        ctl.nstat_deltas()

    def poll(self) -> dict[str, int]:
        for name, value in self.ctl.nstat_deltas().items():
            self.deltas[name] = self.deltas.get(name, 0) + value
        return self.deltas

    def reached(self, name: str, count: int) -> Callable[[], bool]:
        return lambda: self.poll().get(name, 0) >= count


@contextmanager
def watched(daemon: Daemon) -> Iterator[Tally]:
    """A tally of ``daemon``'s counters from now on, over a relayed control connection
    (``tally.ctl``); on the way out the connection ends and the daemon stops (its capture is
    then complete)."""
    ctl = Control(daemon.ns)
    try:
        yield Tally(ctl)
    finally:
        ctl.close()
        daemon.stop()
