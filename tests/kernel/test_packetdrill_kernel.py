"""``ustcp packetdrill --target kernel|both``: scripts against this machine's Linux TCP.

A handful of the shared scripts (the fast ones; the whole set is ``tools/conformance.py``),
scripts of our own that check what the runner does on the kernel (a namespace-local
sysctl, the kernel's TCP_INFO, a blocking call's return time, a mismatch reported at its
line), and the comparison table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kernel.nsutil import ROOT

SHARED = ROOT.parent / "shared" / "conformance" / "packetdrill"
FAST = [
    "gvisor/no_rst_to_rst.pkt",
    "gvisor/reset_for_ack_when_no_syn_cookies_in_use.pkt",
    "google/close/close-on-syn-sent.pkt",
    "google/mss/mss-getsockopt-tcp_maxseg-server.pkt",
    "google/syscall_bad_arg/syscall-invalid-buf-ptr.pkt",
]
RUN_TIMEOUT = 120

# Passive open without timestamps, the init command turning them off in the namespace: a
# blocking read that returns when data comes 100 ms later, the kernel's own tcp_info.
OWN_SCRIPT = """\
`sysctl -q net.ipv4.tcp_timestamps=0`
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 65535 <mss 1400,sackOK,TS val 1 ecr 0,nop,wscale 6>
   +0 > S. 0:0(0) ack 1 <...>
  +.01 < . 1:1(0) ack 1 win 1024
   +0 accept(3, ..., ...) = 4
   +0...0.1 read(4, ..., 100) = 100
  +.1 < P. 1:101(100) ack 1 win 1024
   +0 > . 1:1(0) ack 101
   +0 %{ assert tcpi_snd_mss == 1400, tcpi_snd_mss }%
   +0 %{ assert tcpi_state == TCP_ESTABLISHED }%
"""

# epoll on a connection: nothing ready, then a wait that returns when data comes 50 ms on.
EPOLL_SCRIPT = """\
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 65535 <mss 1400>
   +0 > S. 0:0(0) ack 1 <...>
  +.01 < . 1:1(0) ack 1 win 1024
   +0 accept(3, ..., ...) = 4
   +0 epoll_create(1) = 5
   +0 epoll_ctl(5, EPOLL_CTL_ADD, 4, {events=EPOLLIN, fd=4}) = 0
   +0 epoll_wait(5, {events=EPOLLIN, fd=4}, 1, 0) = 0
   +0...0.05 epoll_wait(5, {events=EPOLLIN, fd=4}, 1, 1000) = 1
  +.05 < P. 1:101(100) ack 1 win 1024
   +0 > . 1:1(0) ack 101
   +0 close(5) = 0
"""


def packetdrill(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ustcp.cli", "packetdrill", *map(str, args)],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT,
                          check=False)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/conformance is missing")
def test_fast_shared_scripts_pass_on_the_kernel() -> None:
    done = packetdrill("--target", "kernel", *(SHARED / s for s in FAST))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASS ") == len(FAST), done.stdout
    assert "kernel 6." in done.stdout or "kernel " in done.stdout
    assert "p99" in done.stdout  # the timing figures are printed


def test_own_script_sysctl_blocking_read_and_tcp_info(tmp_path: Path) -> None:
    script = tmp_path / "own.pkt"
    script.write_text(OWN_SCRIPT)
    host_ts = Path("/proc/sys/net/ipv4/tcp_timestamps").read_text()
    done = packetdrill("--target", "kernel", "-v", script)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout
    assert "read returned 100" in done.stdout  # the blocking call, checked at its return
    # The script's sysctl acted in its namespace only.
    assert Path("/proc/sys/net/ipv4/tcp_timestamps").read_text() == host_ts


def test_a_wrong_expectation_fails_at_its_line(tmp_path: Path) -> None:
    wrong = OWN_SCRIPT.replace("> . 1:1(0) ack 101", "> . 1:1(0) ack 100")
    script = tmp_path / "wrong.pkt"
    script.write_text(wrong)
    done = packetdrill("--target", "kernel", "--retries", "0", script)
    assert done.returncode == 1
    assert "wrong.pkt:12 ack: expected 100 actual 101" in done.stdout, done.stdout


def test_both_targets_agree_on_a_script_and_print_the_table(tmp_path: Path) -> None:
    script = tmp_path / "own.pkt"
    script.write_text(OWN_SCRIPT)
    done = packetdrill("--target", "both", script)
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines()
               if line.split()[:1] == [str(script)])
    assert row.split()[1:] == ["pass", "pass", "yes"], row
    assert "agree on 1 of 1" in done.stdout


def test_a_run_that_overstays_is_killed_with_its_namespace(tmp_path: Path) -> None:
    from ustcp.packetdrill.kernel.worker import in_child

    marker = tmp_path / "netns"

    def job() -> dict[str, object]:
        marker.write_text(os.readlink("/proc/self/ns/net"))
        time.sleep(60)
        return {}

    with pytest.raises(TimeoutError):
        in_child(job, 2.0)
    netns = marker.read_text()
    assert netns != os.readlink("/proc/self/ns/net")  # the run had a namespace of its own
    holders = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/net") == netns:
                holders.append(pid)
        except OSError:
            continue
    assert not holders  # no process keeps it: the kernel has freed it


def test_epoll_on_both_targets_and_a_skip_on_one_is_not_a_disagreement(
        tmp_path: Path) -> None:
    script = tmp_path / "epoll.pkt"
    script.write_text(EPOLL_SCRIPT)
    done = packetdrill("--target", "both", "-v", script)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "epoll_wait returned 1" in done.stdout  # the blocking wait, at its return time
    row = next(line for line in done.stdout.splitlines()
               if line.split()[:1] == [str(script)] and len(line.split()) == 4)
    assert row.split()[1:] == ["pass", "pass", "yes"], row
    # An address the kernel target's namespace lacks: skipped there, run on the engine
    script.write_text("--local_ip=192.168.7.7\n" + EPOLL_SCRIPT)
    done = packetdrill("--target", "both", script)
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines()
               if line.split()[:1] == [str(script)] and len(line.split()) == 4)
    assert row.split()[1:] == ["skip", "pass", "-"], row


def test_pacing_scripts_run_the_same_on_the_kernel(tmp_path: Path) -> None:
    """tests/engine/test_pacing.py's kernel-checkable scripts: SO_MAX_PACING_RATE's internal
    pacing (10 ms, then 20 ms between packets), inherited from a listener, and HyStart
    ending slow start at cwnd 36."""
    from tests.engine.test_pacing import HYSTART_ROUNDS, INHERITED, MAX_PACING_RATE

    paths = []
    for name, text in (("max_pacing_rate.pkt", MAX_PACING_RATE), ("inherited.pkt", INHERITED),
                       ("hystart_rounds.pkt", HYSTART_ROUNDS)):
        paths.append(tmp_path / name)
        paths[-1].write_text(text)
    done = packetdrill("--target", "both", *paths)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split()[1:] for line in done.stdout.splitlines()
            if line.split()[:1] in ([p.name] for p in paths)]
    assert rows == [["pass", "pass", "yes"]] * 3, done.stdout
