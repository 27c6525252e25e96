"""``ustcp serve --workers N``: N processes, one queue each of one multi-queue TUN device.

Linux's TUN driver hands each flow to one queue of a device opened with
``IFF_MULTI_QUEUE`` (drivers/net/tun.c, ``tun_select_queue``: the flow's hash, and the
queue the flow's packets last came from), so N processes, one per queue, each see whole
connections and never another's: the stack scales as SO_REUSEPORT groups do, one listener
per worker on the same port.

The supervisor (the ``serve`` process itself):

1. opens the device's first queue and configures it (MTU, queue length, up, the kernel
   side's address): the device exists;
2. forks the workers; each opens a queue of its own (``attach``), says so on a pipe, and
   runs the daemon's ``_serve`` with its :class:`Worker`;
3. closes its own queue once every worker has attached (the device lives while one queue
   is open), forwards SIGINT and SIGTERM to the workers, and returns the worst exit status.

What the workers share, so the kernel's steering cannot break a connection:

- the engines' ISN key and syncookie secrets, derived from one seed (``--seed``, or a
  random one): a SYN-ACK's cookie made by one worker validates in another (the ACK of a
  handshake whose SYN met a full queue may be steered to another queue than the SYN);
- the listeners: each worker opens every app's port.

Each worker draws its ephemeral ports from a generator of its own, so active opens of two
workers do not pick the same port. Worker 0 answers the control socket at ``--control``'s
name and says how many workers there are; worker ``i`` answers at ``NAME-i``.
``ustcp nstat`` and ``ustcp ss`` ask every worker and add up (``ustcp.obs.ctl.request_all``);
``ustcp sysctl NAME=VALUE`` sets the knob in every worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_WORKERS = 64
ATTACH_TIMEOUT = 30.0  # s the supervisor waits for every worker to open its queue
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Worker:
    """One of ``count`` worker processes; ``seed`` derives the keys they share."""

    index: int
    count: int
    seed: int
    ready_fd: int  # write one byte here once the queue is open

    def attached(self) -> None:
        os.write(self.ready_fd, b"!")
        os.close(self.ready_fd)


def control_name(name: str, index: int) -> str:
    """The control socket of worker ``index`` (worker 0 keeps the daemon's name)."""
    return name if index == 0 else f"{name}-{index}"


def shared_seed(seed: int | None) -> int:
    return seed if seed is not None else secrets.randbits(128)


def supervise(count: int, seed: int | None, close_first_queue: Callable[[], None],
              run_worker: Callable[[Worker], int]) -> int:
    """Fork ``count`` workers running ``run_worker`` (which returns an exit status), with
    the first queue already open; close it once all attached; wait for them all."""
    read_end, write_end = os.pipe()
    pids: list[int] = []
    common = shared_seed(seed)
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                os.close(read_end)
                os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the supervisor only
                _die_with_parent()
                close_first_queue()
                status = run_worker(Worker(index, count, common, write_end))
            finally:
                os._exit(status)
        pids.append(pid)
    os.close(write_end)
    try:
        _wait_attached(read_end, count)
    finally:
        os.close(read_end)
        close_first_queue()

    def forward(signum: int, _frame: object) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    worst = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        worst = max(worst, os.waitstatus_to_exitcode(status) & 0xFF)
    return worst


def _wait_attached(fd: int, count: int) -> None:
    """Until ``count`` workers said they attached, one exited first (EOF once all have
    closed the pipe), or the time runs out."""
    got = 0
    deadline = time.monotonic() + ATTACH_TIMEOUT
    while got < count:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return
        data = os.read(fd, count)
        if not data:
            return
        got += len(data)


def _die_with_parent() -> None:
    """SIGTERM this worker if the supervisor dies (prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
