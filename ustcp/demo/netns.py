"""The demos' sandbox: a network namespace of their own, the daemon inside it, and the
kernel-side programs that talk to it.

Nothing is configured outside the namespace: the daemon creates its TUN device inside it and
gives the kernel's side 10.77.0.1/24 there. :class:`Namespace` deletes the namespace (and
ends every process still in it) on exit, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from ustcp.obs.ss import Row, filter_rows

STACK_ADDR = "10.77.0.2"
KERNEL_ADDR = "10.77.0.1"
COMMAND_TIMEOUT = 20.0
READY_TIMEOUT = 30.0  # the daemon starts in seconds, but in 10+ on a loaded 2-core machine
STOP_TIMEOUT = 15.0
SHUTDOWN_GRACE = 0.5  # s: what is still open when a demo stops its daemon is reset soon


class DemoError(RuntimeError):
    """Something the demo needs did not work (a command failed, the daemon did not start)."""


def missing_privileges() -> str | None:
    """Why the demos cannot run here, or None."""
    if os.geteuid() != 0:
        return "the demos create a network namespace and a TUN device: run them as root"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist (modprobe tun)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    return None


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


class Namespace:
    """A fresh network namespace with loopback up; ``with`` deletes it."""

    def __init__(self, topic: str) -> None:
        self.name = f"ustcp-demo-{topic}-{os.getpid()}-{secrets.token_hex(2)}"
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Namespace:
        done = _ip("netns", "add", self.name)
        if done.returncode:
            raise DemoError(f"ip netns add {self.name}: {done.stderr.strip()}")
        try:
            self.run(["ip", "link", "set", "lo", "up"], check=True)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        pids = _ip("netns", "pids", self.name).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "del", self.name)

    def argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], *, timeout: float = COMMAND_TIMEOUT,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace and wait (at most ``timeout`` seconds)."""
        try:
            done = subprocess.run(self.argv(argv), capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DemoError(f"{' '.join(argv)}: no result after {timeout:g} s") from exc
        if check and done.returncode:
            raise DemoError(f"{' '.join(argv)} exited with {done.returncode}: "
                            f"{done.stderr.strip()[-400:]}")
        return done

    def spawn(self, argv: list[str], *, stdout: Any = subprocess.DEVNULL,
              stderr: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the namespace; it is killed on exit if still running."""
        proc = subprocess.Popen(self.argv(argv), stdout=stdout, stderr=stderr,
                                stdin=subprocess.DEVNULL)
        self._procs.append(proc)
        return proc

    def python(self, module: str, *args: str, timeout: float = COMMAND_TIMEOUT,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-m", module, *args], timeout=timeout, check=check)

    def peer(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> Any:
        """Run a kernel-side action of :mod:`ustcp.demo.peer`; its JSON result."""
        done = self.python("ustcp.demo.peer", *args, timeout=timeout)
        return json.loads(done.stdout)

    def kernel_counter(self, name: str) -> int:
        """The namespace's own kernel counter ``name``, absolute (``nstat -asz``)."""
        out = self.run(["nstat", "-asz", name], check=True).stdout
        rows = [line.split() for line in out.splitlines()[1:]]
        return next((int(row[1]) for row in rows if row and row[0] == name), 0)

    def spawn_peer(self, *args: str) -> subprocess.Popen[bytes]:
        """Start a kernel-side action whose JSON lines are read from its stdout."""
        return self.spawn([sys.executable, "-m", "ustcp.demo.peer", *args],
                          stdout=subprocess.PIPE)


def read_json_line(proc: subprocess.Popen[bytes]) -> Any:
    """The next JSON line a kernel-side program printed (its result or a phase report)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise DemoError(f"a kernel-side program ended early (status {proc.wait(timeout=5)})")
    return json.loads(line)


class Daemon:
    """``ustcp serve`` inside ``ns`` with a pcap and JSON debug logs in ``workdir``."""

    def __init__(self, ns: Namespace, workdir: Path, name: str, *, apps: list[str],
                 sysctls: dict[str, int | str] | None = None, impair: str | None = None,
                 offload: bool = True) -> None:
        self.ns = ns
        self.pcap = workdir / f"{name}.pcap"
        self.log = workdir / f"{name}.log"
        args = ["serve", "--pcap", str(self.pcap), "--seed", "1", "--log-format", "json",
                "--log-level", "debug", "--offload", "on" if offload else "off",
                "--shutdown-grace", str(SHUTDOWN_GRACE)]
        for app in apps:
            args += ["--app", app]
        for key, value in (sysctls or {}).items():
            args += ["--sysctl", f"{key}={value}"]
        if impair:
            args += ["--impair", impair]
        self._log_file = open(self.log, "wb")  # noqa: SIM115 -- closed in stop()
        self.proc = ns.spawn([sys.executable, "-m", "ustcp.cli", *args], stderr=self._log_file)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise DemoError(f"the daemon exited with {self.proc.returncode}: "
                                f"{self.log.read_text(errors='replace').strip()[-600:]}")
            if self.cli("nstat", "-a", check=False).returncode == 0:  # history untouched
                return
            time.sleep(0.1)
        self.stop()
        raise DemoError(f"the daemon did not answer on its control socket in {READY_TIMEOUT:g} s")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ustcp ARGS`` inside the namespace (the client side of the control socket)."""
        return self.ns.python("ustcp.cli", *args, check=check)

    def ss(self, *, state: str | None = None, port: int | None = None) -> list[Row]:
        rows: list[Row] = json.loads(self.cli("ss", "-a", "--json").stdout)
        return filter_rows(rows, state=state, port=port)

    def sysctl(self, *names: str) -> dict[str, Any]:
        """The daemon's values of the named knobs (its ``sysctl`` control command)."""
        code = ("import json; from ustcp.obs import control; "
                "print(json.dumps(control.request('sysctl')['sysctl']))")
        done = self.ns.run([sys.executable, "-c", code], check=True)
        values: dict[str, Any] = json.loads(done.stdout)
        return {name: values[name] for name in names}

    def nstat_reset(self) -> None:
        self.cli("nstat", "-n")  # nstat's history, kept by the daemon, is now

    def nstat_deltas(self) -> dict[str, int]:
        """The counters that moved since the last :meth:`nstat_reset` (and restarts the
        interval, as ``nstat`` does)."""
        deltas: dict[str, int] = json.loads(self.cli("nstat", "-j").stdout)["kernel"]
        return deltas

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; the pcap is complete afterwards."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        self._log_file.close()

    def events(self, *names: str) -> list[dict[str, Any]]:
        """The daemon's log events (all, or those named)."""
        events = []
        for line in self.log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not names or event.get("event") in names:
                events.append(event)
        return events
