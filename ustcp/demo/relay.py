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
from types import TracebackType
from typing import Any

from ustcp.demo.netns import DemoError, Namespace
from ustcp.obs.ss import Row, filter_rows

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
