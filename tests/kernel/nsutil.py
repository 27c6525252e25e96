"""Helpers for kernel tests: namespaces, the daemon in one, commands run inside them.

Every namespace is named ``ustcp-t-<pid>-<n>`` and deleted in ``finally`` even when a test
fails; one left by a killed run (its pid gone) is deleted by the next run. Nothing is
configured in the root namespace.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEER = Path(__file__).resolve().parent / "peer.py"
ADDR = "10.77.0.2"
PEER_ADDR = "10.77.0.1"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

_serial = itertools.count()


@functools.cache
def kernel_unavailable() -> str | None:
    """Why kernel tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    if shutil.which("ip") is None:
        return "needs ip (iproute2)"
    probe = f"ustcp-t-{os.getpid()}-probe"
    try:
        added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"ip netns add failed: {exc}"
    if added.returncode != 0:
        return f"ip netns add failed: {added.stderr.decode(errors='replace').strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


@functools.cache
def remove_stale_namespaces() -> list[str]:
    """Delete the ``ustcp-t-<pid>-*`` namespaces of test runs that were killed before their
    ``finally`` ran (their pid is gone); once per run. The names deleted."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    stale = []
    for line in listed.stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        parts = name.split("-")
        if name.startswith("ustcp-t-") and len(parts) >= 4 and parts[2].isdigit() \
                and not os.path.exists(f"/proc/{parts[2]}"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
            stale.append(name)
    return stale


def in_ns(ns: str, *cmd: str, timeout: float = 60, input: bytes | None = None,
          check: bool = False) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` inside namespace ``ns`` and capture its output."""
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True,
                          timeout=timeout, input=input, check=check, cwd=ROOT)


def ustcp_cmd(*args: str) -> list[str]:
    """The ustcp command line, run from this checkout with this interpreter."""
    return [sys.executable, "-m", "ustcp.cli", *args]


def peer_cmd(*args: str) -> list[str]:
    return [sys.executable, str(PEER), *args]


@contextmanager
def netns() -> Iterator[str]:
    """A fresh namespace with lo up; deleted on the way out, whatever happened."""
    remove_stale_namespaces()
    name = f"ustcp-t-{os.getpid()}-{next(_serial)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True, capture_output=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def interrupt(proc: subprocess.Popen[bytes]) -> int:
    """SIGINT, then SIGKILL if it does not leave in time; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
    return proc.returncode


@dataclass
class Daemon:
    ns: str
    addr: str
    peer_addr: str
    proc: subprocess.Popen[bytes]
    log: Path

    def run(self, *cmd: str, timeout: float = 60,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return in_ns(self.ns, *cmd, timeout=timeout, input=input)

    def stop(self) -> int:
        return interrupt(self.proc)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def daemon(ns: str, log: Path, *args: str) -> Iterator[Daemon]:
    """``ustcp serve ARGS`` inside ``ns``, ready when ``GET /`` answers; stopped on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *ustcp_cmd("serve", "--log-format", "json", *args)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    d = Daemon(ns, ADDR, PEER_ADDR, proc, log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ustcp serve exited with {proc.returncode}:\n{d.output()}")
            probe = in_ns(ns, "curl", "-s", "-o", "/dev/null", "-m", "2", f"http://{ADDR}/",
                          timeout=10)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"ustcp serve did not answer GET / within {READY_TIMEOUT}s:\n"
                            f"{d.output()}")
            time.sleep(0.2)
        yield d
    finally:
        d.stop()


def connect_to_kernel_server(ns: str, kernel_addr: str, tun: str) -> None:
    """``ustcp connect KERNEL_ADDR 5000`` in ``ns`` (a device of its own) sends 1 MB to a
    kernel server (peer.py serve), which answers with the length and sha256 it got."""
    data = os.urandom(1_000_000)
    server = subprocess.Popen(["ip", "netns", "exec", ns, *peer_cmd("serve", "5000")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == b"listening\n"
        done = in_ns(ns, *ustcp_cmd("connect", kernel_addr, "5000", "--tun", tun),
                     input=data, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode() == f"{len(data)} {hashlib.sha256(data).hexdigest()}\n"
        assert server.wait(30) == 0
    finally:
        server.kill()
        server.wait()
