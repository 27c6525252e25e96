"""Many connections at once against ``ustcp serve``'s echo app: stranded connections, the TUN
device's drops, and the daemon's memory per connection.

    sudo .venv/bin/python tools/burst.py [--connections 10000] [--rounds 3]
                                         [--txqueuelen N] [--timeout 60] [--hold]

Each round, a kernel-side client in the daemon's namespace opens ``--connections``
connections to echo:7 at once (non-blocking connects, one epoll), sends one byte on each and
waits up to ``--timeout`` seconds for every echo; a connection that never got its byte back
(connect failed, or no echo in time) is *stranded*. Then it closes them all. Rounds run one
after another on the same daemon. Printed per round: echoed, stranded, seconds; the device's
own drops (``UstcpTunTxDropped`` in ``ustcp nstat``) and the daemon's RSS (VmRSS) before the
round, with every connection held open (``--hold``: the client keeps them until the RSS is
read) and once they have all closed, as KB per connection.

Everything runs in a namespace of its own, deleted at the end; each round is bounded by
``--timeout`` and the whole run by the number of rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ADDR = "10.77.0.2"
PORT = 7
HTTP_PORT = 80
READY_TIMEOUT = 30.0
MAX_CONNECTIONS = 30000
# s after the last close before the RSS is read: two of the daemon's memory-trim looks
SETTLE_AFTER_CLOSE = 11.0


# ---------------------------------------------------------------- the kernel-side client

def client(host: str, port: int, count: int, timeout: float, hold: bool) -> None:
    """Open ``count`` connections at once, echo one byte on each (port 7), or ask each for a
    large HTTP response it never reads (port 80: a stalled reader, done when its request is
    sent); report; with ``hold`` wait for a line on stdin before closing them."""
    request = b"x" if port == PORT else b"GET /bytes/1000000000 HTTP/1.1\r\nHost: b\r\n\r\n"
    need = count + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
    ep = select.epoll()
    socks: dict[int, socket.socket] = {}
    state: dict[int, int] = {}  # 0 connecting, 1 sent, 2 echoed
    errors: dict[str, int] = {}
    started = time.monotonic()
    for _ in range(count):
        sock = socket.socket()
        if port != PORT:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        code = sock.connect_ex((host, port))
        if code not in (0, errno.EINPROGRESS):
            name = errno.errorcode.get(code, str(code))
            errors[name] = errors.get(name, 0) + 1
            sock.close()
            continue
        socks[sock.fileno()] = sock
        state[sock.fileno()] = 0
        ep.register(sock.fileno(), select.EPOLLOUT)
    echoed = 0
    deadline = started + timeout
    while echoed + sum(errors.values()) < count and time.monotonic() < deadline:
        for fd, events in ep.poll(min(1.0, max(0.0, deadline - time.monotonic()))):
            sock = socks[fd]
            if state[fd] == 0:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    name = errno.errorcode.get(code, str(code))
                    errors[name] = errors.get(name, 0) + 1
                    ep.unregister(fd)
                    continue
                sock.send(request)
                if port != PORT:  # a stalled reader: sent its request, never reads
                    state[fd] = 2
                    echoed += 1
                    ep.unregister(fd)
                    continue
                state[fd] = 1
                ep.modify(fd, select.EPOLLIN)
            elif state[fd] == 1 and events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                try:
                    data = sock.recv(16)
                except OSError as exc:
                    name = errno.errorcode.get(exc.errno or 0, "OSError")
                    errors[name] = errors.get(name, 0) + 1
                    ep.unregister(fd)
                    continue
                if data:
                    state[fd] = 2
                    echoed += 1
                    ep.unregister(fd)
    seconds = time.monotonic() - started
    result = {"count": count, "echoed": echoed, "stranded": count - echoed,
              "errors": errors, "seconds": round(seconds, 2)}
    if hold:
        print(json.dumps({"phase": "held", **result}), flush=True)
        sys.stdin.readline()
    for sock in socks.values():
        sock.close()
    print(json.dumps({"phase": "done", **result}), flush=True)


# ---------------------------------------------------------------- the driver

def ns_run(ns: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@contextlib.contextmanager
def netns() -> Iterator[str]:
    name = f"ustcp-burst-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        ns_run(name, "ip", "link", "set", "lo", "up")
        # three rounds of 10,000 client ports, each in TIME_WAIT for 60 s afterwards
        ns_run(name, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65000")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=10)


def control(ns: str, cmd: str) -> dict[str, Any]:
    code = ("import json, sys; from ustcp.obs import control; "
            "print(json.dumps(control.request(sys.argv[1])))")
    done = ns_run(ns, sys.executable, "-c", code, cmd)
    if done.returncode:
        raise RuntimeError(done.stderr.strip())
    reply: dict[str, Any] = json.loads(done.stdout)
    return reply


def print_census(ns: str, when: str) -> None:
    """The daemon's ``memory`` reply (ustcp/obs/memory.py), a few lines."""
    try:
        reply = control(ns, "memory")
    except RuntimeError as exc:
        print(f"  census {when}: {exc}", flush=True)
        return
    tables = " ".join(f"{name}={n}/{size // 1024}KB"
                      for name, (n, size) in reply["tables"].items())
    objects = " ".join(f"{name}={n}" for name, n in reply["objects"][:12])
    print(f"  census {when}: RSS {reply['rss_kb'] // 1024} MB; "
          f"Connection objects {reply['connections_alive']}; pymalloc {reply['pymalloc']}\n"
          f"    tables (entries/storage) {tables}\n    objects {objects}", flush=True)
    for where, size, count in reply.get("tracemalloc", [])[:10]:
        print(f"    {count:+d} blocks {size // 1024:+d} KB since the first census at {where}",
              flush=True)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def daemon_pid(ns: str) -> int:
    """The ustcp serve process in the namespace (ip netns exec's child)."""
    for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                              text=True).stdout.split():
        with contextlib.suppress(OSError):
            if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
    raise RuntimeError("no daemon process in the namespace")


def settle(ns: str, port: int, count: int, stalled: bool, timeout: float = 60.0) -> None:
    """Wait until the daemon holds ``count`` established connections on ``port`` (with
    unsent data queued, for stalled readers): the state whose memory is measured."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rows = control(ns, "ss")["sockets"]
        except RuntimeError:
            continue
        held = [r for r in rows if r["state"] == "ESTAB" and r["local"].endswith(f":{port}")
                and (not stalled or r["send_q"] > 0)]
        if len(held) >= count:
            return
        time.sleep(0.5)


def wait_closed(ns: str, timeout: float) -> float:
    """Seconds until the daemon holds no connection (TIME_WAIT aside)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            rows = control(ns, "ss")["sockets"]
        except RuntimeError:  # a daemon busy with thousands of closes answers late
            continue
        if not [r for r in rows if r["state"] not in ("LISTEN", "TIME-WAIT")]:
            break
        time.sleep(0.5)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--txqueuelen", type=int, help="passed to ustcp serve (its default)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per round (s)")
    parser.add_argument("--stalled-readers", action="store_true",
                        help="each connection asks the http app for 1 GB and never reads "
                             "(with --hold: the daemon's memory per stalled reader)")
    parser.add_argument("--hold", action="store_true",
                        help="read the daemon's RSS with every connection open")
    parser.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                        help="an extra argument for ustcp serve (repeatable)")
    parser.add_argument("--counters", action="store_true",
                        help="print the daemon's counters that moved in each round")
    parser.add_argument("--census", action="store_true",
                        help="print the daemon's memory census (ustcp/obs/memory.py) before "
                             "each round, while held and after close (run under "
                             "PYTHONTRACEMALLOC=1: what was allocated since and lives)")
    parser.add_argument("--drain", type=float, default=0.0, metavar="S",
                        help="after the last round, wait S seconds more and read the RSS "
                             "again (TIME_WAIT entries live 60 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    parser.add_argument("--client", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        host, port, count, timeout, hold = args.client
        client(host, int(port), int(count), float(timeout), hold == "1")
        return 0
    if not 1 <= args.connections <= MAX_CONNECTIONS or not 1 <= args.rounds <= 10:
        parser.error(f"--connections 1..{MAX_CONNECTIONS}, --rounds 1..10")
    port = HTTP_PORT if args.stalled_readers else PORT
    serve = [sys.executable, "-m", "ustcp.cli", "serve", "--app", f"echo:{PORT}",
             "--app", f"http:{HTTP_PORT}",
             "--log-level", "warning", *args.daemon_arg]
    if args.txqueuelen is not None:
        serve += ["--txqueuelen", str(args.txqueuelen)]
    rounds = []
    with netns() as ns:
        daemon_log = tempfile.NamedTemporaryFile(  # noqa: SIM115 -- closed in finally
            prefix="ustcp-burst-", suffix=".log")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *serve, "--log-format", "json"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=daemon_log)
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                try:
                    control(ns, "nstat")
                    break
                except RuntimeError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the daemon did not start") from None
                    time.sleep(0.2)
            pid = daemon_pid(ns)
            for n in range(1, args.rounds + 1):
                rss_before = rss_kb(pid)
                if args.census:
                    print_census(ns, "before")
                before = control(ns, "nstat")["counters"]
                drops_before = before.get("UstcpTunTxDropped", 0)
                peer = subprocess.Popen(
                    ["ip", "netns", "exec", ns, sys.executable, str(Path(__file__).resolve()),
                     "--client", ADDR, str(port), str(args.connections), str(args.timeout),
                     "1" if args.hold else "0"],
                    cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                assert peer.stdin is not None and peer.stdout is not None
                rss_held = None
                if args.hold:
                    json.loads(peer.stdout.readline())
                    settle(ns, port, args.connections, args.stalled_readers)
                    rss_held = rss_kb(pid)
                    if args.census:
                        print_census(ns, "held")
                    peer.stdin.write("\n")
                    peer.stdin.flush()
                result = json.loads(peer.stdout.readline())
                peer.wait(timeout=60)
                closing = wait_closed(ns, 120)
                time.sleep(SETTLE_AFTER_CLOSE)
                counters = control(ns, "nstat")["counters"]
                row = {"round": n, **{k: result[k] for k in
                                      ("echoed", "stranded", "errors", "seconds")},
                       "tun_tx_dropped": counters.get("UstcpTunTxDropped", 0) - drops_before,
                       "rss_before_kb": rss_before, "rss_held_kb": rss_held,
                       "rss_after_kb": rss_kb(pid), "closed_in_s": round(closing, 1)}
                rounds.append(row)
                per_conn = ("" if rss_held is None else
                            f", held {(rss_held - rss_before) / args.connections:.1f} KB/conn")
                print(f"round {n}: {row['echoed']}/{args.connections} echoed, "
                      f"{row['stranded']} stranded in {row['seconds']} s "
                      f"(errors {row['errors']}); device drops {row['tun_tx_dropped']}; "
                      f"RSS {rss_before // 1024} MB before{per_conn}, "
                      f"{row['rss_after_kb'] // 1024} MB after close "
                      f"({(row['rss_after_kb'] - rss_before) / args.connections:+.1f} KB/conn)",
                      flush=True)
                if args.census:
                    print_census(ns, "after close")
                if args.counters:
                    moved = {k: v - before.get(k, 0) for k, v in counters.items()
                             if v != before.get(k, 0)}
                    print("  " + " ".join(f"{k}={v}" for k, v in sorted(moved.items())),
                          flush=True)
            if args.drain:
                time.sleep(args.drain)
                print(f"after {args.drain:g} s more: RSS {rss_kb(pid) // 1024} MB", flush=True)
                if args.census:
                    print_census(ns, "drained")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            trims = [line for line in Path(daemon_log.name).read_text().splitlines()
                     if '"memory_trim"' in line]
            daemon_log.close()
    for line in trims:
        event = json.loads(line)
        print(f"daemon memory_trim: {event['connections']} of {event['peak']} connections "
              f"left, RSS {event['rss_kb_before'] // 1024} -> {event['rss_kb_after'] // 1024} MB")
    if args.json:
        print(json.dumps({"connections": args.connections, "txqueuelen": args.txqueuelen,
                          "rounds": rounds}))
    return 0 if all(r["stranded"] == 0 for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
