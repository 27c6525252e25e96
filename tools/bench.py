"""ustcp against the kernel's own TCP and against a raw TUN ceiling, in one command.

    sudo .venv/bin/python tools/bench.py [--quick] [--json FILE] [--only SCENARIO]
                                         [--offload on|off|both] [--profile DIR]
                                         [--engine compiled|pure|both] [--repeat N]
                                         [--busy-poll US] [--workers N]
                                         [--sysctl NAME=VALUE ...]

Every scenario is measured three ways in the same invocation:

- ``ustcp``: ``ustcp serve`` in a fresh namespace, a Python kernel-socket client in the same
  namespace talking to 10.77.0.2 through the TUN device; once per engine (``--engine``,
  default both: the mypyc-compiled engine of ``make compiled`` and pure Python, chosen with
  ``USTCP_ENGINE``); ``--busy-poll US`` adds the compiled engine with busy_poll=US and
  busy_read=US, ``--workers N`` the compiled engine with ``serve --workers N``;
- ``kernel``: two fresh namespaces joined by a veth pair (10.78.0.1 <-> 10.78.0.2), a Python
  server in the second one speaking the same protocols with the kernel's TCP (discard sink,
  chargen and ``GET /bytes/N`` sources, 1-byte echo, accept-and-close), the same client in
  the first; with ``--offload off`` both veth ends get ``gso_max_segs 1`` so the kernel
  builds MSS-sized packets as ustcp does (veth still skips checksums: there is no wire);
- ``ceiling``: ``tools/raw_ceiling.py`` (see its docstring for exactly what it does and does
  not do) on the same kind of TUN device, with the same client.

Scenarios (``--only``): ``bulk-recv`` (client sends to discard:9), ``bulk-send`` (client reads
``GET /bytes/N`` from http:80 and N bytes from chargen:19), ``echo`` (1-byte ping-pong over
one connection on echo:7, median and p99 round trip), ``conn-rate`` (clients open a
connection to echo:7, half-close at once, wait for the server's FIN, close; connections per
second over a fixed time). Each with offload on (the default TUN offloads: GSO super-packets,
checksums left to the kernel) and off (plain 1500-byte frames).

The daemon runs on its default settings (no busy polling) unless ``--sysctl`` says
otherwise (``--sysctl busy_poll=50 --sysctl busy_read=50``: the receive loop spins 50 µs on
the TUN device before it sleeps, and so does a reader that finds nothing); the ceiling
spins as long as busy_poll says. ``--repeat N`` runs every client N times against the same
server: the figure is the median, the spread (min–max) is printed beside it. Each result
records the load average (1 min) when it was taken: the machine may be shared.

Every load is bounded in bytes or round trips *and* in seconds, every namespace and process
is removed in ``finally``. Nothing is configured in the host's namespace.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import errno
import itertools
import json
import os
import platform
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ustcp.compiled import StaleBuild, check_build
from ustcp.config import StackConfig

ROOT = Path(__file__).resolve().parents[1]
CEILING = ROOT / "tools" / "raw_ceiling.py"
USTCP_ADDR = "10.77.0.2"
VETH_CLIENT = "10.78.0.1"
VETH_SERVER = "10.78.0.2"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
PORTS = {"echo": 7, "discard": 9, "chargen": 19, "http": 80}
CHUNK = 1 << 20
ECHO_WARMUP = 200  # round trips before the echo client starts timing
ENGINES = ("compiled", "pure")

_serial = itertools.count()

# ====================================================================== clients
# Run inside a namespace as ``bench.py _client SCENARIO HOST ...``; print one JSON object.


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def client_bulk_recv(host: str, nbytes: int, max_s: float) -> dict[str, Any]:
    """Send ``nbytes`` (or for ``max_s``) to discard, half-close, wait for its FIN."""
    data = memoryview(bytes(range(256)) * (CHUNK // 256))
    sent = 0
    with _connect(host, PORTS["discard"], timeout=max_s + 10) as sock:
        start = time.perf_counter()
        deadline = start + max_s
        while sent < nbytes and time.perf_counter() < deadline:
            sock.sendall(data[:min(CHUNK, nbytes - sent)])
            sent += min(CHUNK, nbytes - sent)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
        seconds = time.perf_counter() - start
    return {"bytes": sent, "seconds": seconds, "value": sent * 8 / seconds / 1e9}


def _read_n(sock: socket.socket, nbytes: int, deadline: float, buf: bytearray) -> int:
    view = memoryview(buf)
    got = 0
    while got < nbytes and time.perf_counter() < deadline:
        n = sock.recv_into(view, min(len(buf), nbytes - got))
        if n == 0:
            break
        got += n
    return got


def client_bulk_http(host: str, nbytes: int, max_s: float) -> dict[str, Any]:
    """``GET /bytes/N``: body bytes over the time from the request to the last byte."""
    buf = bytearray(4 * CHUNK)
    with _connect(host, PORTS["http"], timeout=max_s + 10) as sock:
        start = time.perf_counter()
        sock.sendall(f"GET /bytes/{nbytes} HTTP/1.1\r\nHost: bench\r\n"
                     "Connection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"no HTTP response: {head[:200]!r}")
            head += chunk
        body = len(head) - head.index(b"\r\n\r\n") - 4
        body += _read_n(sock, nbytes - body, start + max_s, buf)
        seconds = time.perf_counter() - start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    return {"bytes": body, "seconds": seconds, "value": body * 8 / seconds / 1e9}


def client_bulk_chargen(host: str, nbytes: int, max_s: float) -> dict[str, Any]:
    """Read ``nbytes`` from chargen, then reset (chargen never stops by itself)."""
    buf = bytearray(4 * CHUNK)
    with _connect(host, PORTS["chargen"], timeout=max_s + 10) as sock:
        start = time.perf_counter()
        got = _read_n(sock, nbytes, start + max_s, buf)
        seconds = time.perf_counter() - start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    return {"bytes": got, "seconds": seconds, "value": got * 8 / seconds / 1e9}


def client_echo(host: str, count: int, max_s: float) -> dict[str, Any]:
    """1-byte ping-pong: median and p99 round trip in µs (after 200 warm-up round trips)."""
    rtts: list[float] = []
    with _connect(host, PORTS["echo"], timeout=10) as sock:
        clock = time.perf_counter_ns
        for _ in range(ECHO_WARMUP):
            sock.sendall(b"x")
            sock.recv(1)
        deadline = time.perf_counter() + max_s
        while len(rtts) < count and time.perf_counter() < deadline:
            t0 = clock()
            sock.sendall(b"x")
            if not sock.recv(1):
                raise ConnectionError("echo closed")
            rtts.append((clock() - t0) / 1000)
    rtts.sort()
    return {"count": len(rtts), "value": statistics.median(rtts),
            "p99": rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))], "min": rtts[0]}


def client_conn_rate(host: str, seconds: float, concurrency: int) -> dict[str, Any]:
    """Open, half-close, await the server's FIN, close; ``concurrency`` at a time."""
    sel = selectors.DefaultSelector()
    done = errors = 0
    live = 0

    def start_one() -> None:
        nonlocal live, errors
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((host, PORTS["echo"]))
        if rc not in (0, errno.EINPROGRESS):
            errors += 1
            s.close()
            return
        sel.register(s, selectors.EVENT_WRITE, "connecting")
        live += 1

    start = time.perf_counter()
    deadline = start + seconds
    for _ in range(concurrency):
        start_one()
    while live:
        now = time.perf_counter()
        if now > deadline + 5:
            break
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            if key.data == "connecting":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    errors += 1
                    sel.unregister(s)
                    s.close()
                    live -= 1
                else:
                    s.shutdown(socket.SHUT_WR)
                    sel.modify(s, selectors.EVENT_READ, "closing")
                    continue
            else:
                try:
                    if s.recv(4096):
                        continue
                    done += 1
                except OSError:
                    errors += 1
                sel.unregister(s)
                s.close()
                live -= 1
            if time.perf_counter() < deadline:
                start_one()
    elapsed = time.perf_counter() - start
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    return {"connections": done, "errors": errors, "seconds": elapsed,
            "value": done / elapsed, "unfinished": live}


def client_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench.py _client")
    p.add_argument("scenario")
    p.add_argument("host")
    p.add_argument("--bytes", type=int, default=64 << 20)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--max-seconds", type=float, default=20.0)
    p.add_argument("--concurrency", type=int, default=8)
    a = p.parse_args(argv)
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "bulk-recv": lambda: client_bulk_recv(a.host, a.bytes, a.max_seconds),
        "bulk-send-http": lambda: client_bulk_http(a.host, a.bytes, a.max_seconds),
        "bulk-send-chargen": lambda: client_bulk_chargen(a.host, a.bytes, a.max_seconds),
        "echo": lambda: client_echo(a.host, a.count, a.max_seconds),
        "conn-rate": lambda: client_conn_rate(a.host, a.seconds, a.concurrency),
    }
    print(json.dumps(runners[a.scenario]()), flush=True)
    return 0


# ====================================================================== kernel server
# ``bench.py _kserver``: discard, chargen, echo and a minimal HTTP on the kernel's TCP.


@dataclass
class _KConn:
    kind: str
    out: memoryview | None = None  # bytes still to send (http) / chargen pattern
    inbuf: bytes = b""
    left: int = 0  # http body bytes still to send


def kserver_main(argv: list[str]) -> int:
    max_s = float(argv[0]) if argv else 600.0
    pattern = memoryview(bytes((33 + (i % 95)) for i in range(CHUNK)))
    sel = selectors.DefaultSelector()
    for kind, port in PORTS.items():
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("0.0.0.0", port))
        ls.listen(4096)
        ls.setblocking(False)
        sel.register(ls, selectors.EVENT_READ, kind)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    deadline = time.monotonic() + max_s
    conns: dict[socket.socket, _KConn] = {}

    def close(s: socket.socket) -> None:
        sel.unregister(s)
        conns.pop(s, None)
        s.close()

    while time.monotonic() < deadline:
        for key, events in sel.select(timeout=1.0):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            if isinstance(key.data, str):  # a listener
                while True:
                    try:
                        c, _ = s.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[c] = _KConn(key.data)
                    sel.register(c, selectors.EVENT_WRITE if key.data == "chargen"
                                 else selectors.EVENT_READ, None)
                continue
            k = conns[s]
            try:
                if events & selectors.EVENT_READ:
                    data = s.recv(CHUNK)
                    if k.kind == "echo" and data:
                        s.sendall(data)  # small: 1-byte ping-pong
                    elif k.kind == "http" and data:
                        k.inbuf += data
                        if b"\r\n\r\n" in k.inbuf:
                            path = k.inbuf.split(b" ", 2)[1].decode()
                            k.left = int(path.rsplit("/", 1)[1]) if path.startswith(
                                "/bytes/") else 5
                            head = (f"HTTP/1.1 200 OK\r\nContent-Length: {k.left}\r\n"
                                    "Connection: close\r\n\r\n").encode()
                            s.sendall(head)
                            sel.modify(s, selectors.EVENT_WRITE, None)
                    elif not data:
                        close(s)
                elif k.kind == "chargen":
                    s.send(pattern)
                elif k.kind == "http":
                    k.left -= s.send(pattern[:min(k.left, CHUNK)])
                    if k.left <= 0:
                        s.shutdown(socket.SHUT_WR)
                        sel.modify(s, selectors.EVENT_READ, None)
                        k.kind = "drain"
            except BlockingIOError:
                pass
            except OSError:
                close(s)
    return 0


# ====================================================================== orchestration


def ns_run(ns: str, *cmd: str, timeout: float = 30, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          timeout=timeout, check=check, cwd=ROOT)


@contextlib.contextmanager
def netns(tag: str) -> Iterator[str]:
    """A fresh namespace with lo up, deleted on the way out whatever happened."""
    name = f"ustcp-bench-{os.getpid()}-{next(_serial)}-{tag}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    try:
        ns_run(name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def stop_proc(proc: subprocess.Popen[Any]) -> None:
    """SIGINT, then SIGKILL if it does not leave in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def background(ns: str, cmd: list[str], log: Path, ready: Callable[[], bool]
               ) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[2:4]} exited with {proc.returncode}:\n"
                                   f"{log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[2:4]} not ready in {READY_TIMEOUT}s:\n"
                                   f"{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        stop_proc(proc)


def log_says(log: Path, word: str) -> Callable[[], bool]:
    return lambda: log.exists() and word in log.read_text(errors="replace")


def http_ready(ns: str) -> Callable[[], bool]:
    def probe() -> bool:
        r = ns_run(ns, "curl", "-s", "-o", "/dev/null", "-m", "2", f"http://{USTCP_ADDR}/",
                   timeout=10, check=False)
        return r.returncode == 0
    return probe


@dataclass
class Settings:
    recv_bytes: int
    send_bytes: int
    echo_count: int
    conn_seconds: float
    concurrency: int
    max_seconds: float
    profile_seconds: float = 5.0
    sysctls: tuple[str, ...] = ()
    repeat: int = 1

    def busy_poll(self) -> int:
        """The daemon's net.core.busy_poll, which the ceiling imitates (read by the same
        parser as ``ustcp serve --sysctl``)."""
        config = StackConfig()
        config.apply(list(self.sysctls))
        return config.busy_poll


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its live children (the workers of
    ``serve --workers``) so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return own + sum(_cpu_seconds(int(child)) for child in children)


def _operations(scenario: str, r: dict[str, Any]) -> float:
    """What the daemon's CPU time is divided by: round trips (with the warm-up ones),
    connections, or MB moved."""
    if scenario == "echo":
        return float(r["count"] + ECHO_WARMUP)
    if scenario == "conn-rate":
        return float(r["connections"])
    return float(r["bytes"]) / 1e6


def run_client(ns: str, scenario: str, host: str, s: Settings, server: int | None = None
               ) -> dict[str, Any]:
    """The client ``s.repeat`` times: the median run's figures, the spread of all runs and
    the 1-minute load average before each. With ``server`` (a pid), also that process's
    CPU time per operation (``cpu_us``: per round trip, per connection, per MB), which
    other load on the machine disturbs far less than the wall-clock figures."""
    runs = []
    for _ in range(s.repeat):
        load = os.getloadavg()[0]
        cpu = _cpu_seconds(server) if server is not None else 0.0
        r = _run_client_once(ns, scenario, host, s)
        if "error" in r:
            return r
        if server is not None:
            r["cpu_us"] = (_cpu_seconds(server) - cpu) * 1e6 / max(1.0, _operations(scenario, r))
        runs.append({**r, "load": load})
    runs.sort(key=lambda r: r["value"])
    result = dict(runs[len(runs) // 2])
    if len(runs) > 1:
        result["spread"] = [runs[0]["value"], runs[-1]["value"]]
        result["loads"] = [r["load"] for r in runs]
    return result


def _run_client_once(ns: str, scenario: str, host: str, s: Settings) -> dict[str, Any]:
    nbytes = s.recv_bytes if scenario == "bulk-recv" else s.send_bytes
    cmd = [sys.executable, str(Path(__file__).resolve()), "_client", scenario, host,
           "--bytes", str(nbytes), "--count", str(s.echo_count),
           "--seconds", str(s.conn_seconds), "--max-seconds", str(s.max_seconds),
           "--concurrency", str(s.concurrency)]
    if scenario == "conn-rate":
        # the client's namespace only: every port for connect(), TIME_WAIT ports reusable
        # after 1 s, so the run measures the server rather than ephemeral-port exhaustion
        ns_run(ns, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535",
               "net.ipv4.tcp_tw_reuse=1", check=False)
    try:
        r = ns_run(ns, *cmd, timeout=s.max_seconds + 30, check=False)
    except subprocess.TimeoutExpired:
        return {"error": "client timed out"}
    if r.returncode != 0:
        tail = r.stderr.strip().splitlines()[-1:] or ["?"]
        return {"error": tail[0][:200]}
    result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


# scenario -> (client scenarios, metric, unit, higher is better)
SCENARIOS: dict[str, list[tuple[str, str, str]]] = {
    "bulk-recv": [("bulk-recv", "bulk receive (discard)", "Gbit/s")],
    "bulk-send": [("bulk-send-http", "bulk send (GET /bytes/N)", "Gbit/s"),
                  ("bulk-send-chargen", "bulk send (chargen)", "Gbit/s")],
    "echo": [("echo", "echo RTT 1 B", "µs")],
    "conn-rate": [("conn-rate", "connection rate", "conn/s")],
}
CEILING_MODE = {"bulk-recv": "sink", "bulk-send-http": "source", "bulk-send-chargen": "source",
                "echo": "echo", "conn-rate": "echo"}


@dataclass
class Row:
    scenario: str
    label: str
    offload: str
    unit: str
    ustcp: dict[str, dict[str, Any]] = field(default_factory=dict)  # by variant
    kernel: dict[str, Any] = field(default_factory=dict)
    ceiling: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """One way of running the daemon: its engine and any sysctls beyond ``--sysctl``."""

    label: str
    engine: str
    sysctls: tuple[str, ...] = ()
    workers: int = 1


def measure_ustcp(offload: str, variant: Variant, scenarios: list[str], s: Settings,
                  logdir: Path, profile: Path | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    tag = variant.label.replace(" ", "_").replace("=", "")
    with netns("u") as ns:
        log = logdir / f"ustcp-{offload}-{tag}.log"
        sysctls = (*s.sysctls, *variant.sysctls)
        cmd = ["env", f"USTCP_ENGINE={variant.engine}", sys.executable, "-m", "ustcp.cli",
               "serve", "--log-format", "json", "--log-level", "warning", "--offload", offload,
               "--mtu", "1500", "--workers", str(variant.workers),
               *(arg for sysctl in sysctls for arg in ("--sysctl", sysctl))]
        with background(ns, cmd, log, http_ready(ns)) as daemon:
            for sc in scenarios:
                out[sc] = run_client(ns, sc, USTCP_ADDR, s, daemon.pid)
                print(f"  ustcp   {offload:3} {variant.label:12} {sc:18} {brief(out[sc])}",
                      flush=True)
            if profile is not None:
                # time-bounded loads long enough for a few thousand samples
                ps = replace(s, recv_bytes=64 << 30, send_bytes=1 << 30, echo_count=10**7,
                             conn_seconds=s.profile_seconds, max_seconds=s.profile_seconds)
                for sc in scenarios:
                    out[f"profile:{sc}"] = profile_run(ns, daemon.pid, sc,
                                                       f"{offload}-{tag}", ps, profile)
    return out


def measure_kernel(offload: str, scenarios: list[str], s: Settings, logdir: Path
                   ) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with netns("kc") as client_ns, netns("ks") as server_ns:
        tag = f"vb{os.getpid() % 10000}x{next(_serial)}"
        a, b = tag + "a", tag + "b"
        ns_run(client_ns, "ip", "link", "add", a, "type", "veth", "peer", "name", b,
               "netns", server_ns)
        for ns, dev, addr in ((client_ns, a, VETH_CLIENT), (server_ns, b, VETH_SERVER)):
            ns_run(ns, "ip", "addr", "add", f"{addr}/24", "dev", dev)
            extra = ["gso_max_segs", "1"] if offload == "off" else []
            ns_run(ns, "ip", "link", "set", dev, "mtu", "1500", *extra, "up")
        log = logdir / f"kernel-{offload}.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "_kserver",
               str(len(scenarios) * (s.max_seconds + 30) + 60)]
        with background(server_ns, cmd, log, log_says(log, "ready")) as server:
            for sc in scenarios:
                out[sc] = run_client(client_ns, sc, VETH_SERVER, s, server.pid)
                print(f"  kernel  {offload:3} {sc:18} {brief(out[sc])}", flush=True)
    return out


def measure_ceiling(offload: str, scenarios: list[str], s: Settings, logdir: Path
                    ) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for sc in scenarios:
        mode = CEILING_MODE[sc]
        with netns("c") as ns:
            log = logdir / f"ceiling-{offload}-{sc}.log"
            cmd = [sys.executable, str(CEILING), mode, "--offload", offload, "--mtu", "1500",
                   "--bytes", str(s.send_bytes + (1 << 20)),
                   "--max-seconds", str(s.max_seconds + 30),
                   "--busy-poll", str(s.busy_poll())]
            with background(ns, cmd, log, log_says(log, "ready")) as proc:
                out[sc] = run_client(ns, sc, USTCP_ADDR, s)
                stop_proc(proc)
            stats = log.read_text(errors="replace").strip().splitlines()[-1:]
            out[sc]["ceiling_stats"] = stats[0] if stats else ""
            print(f"  ceiling {offload:3} {sc:18} {brief(out[sc])}", flush=True)
    return out


def brief(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"error: {r['error']}"
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in r.items() if k != "ceiling_stats")


# ---------------------------------------------------------------------- profiling


def profile_run(ns: str, pid: int, sc: str, offload: str, s: Settings, outdir: Path
                ) -> dict[str, Any]:
    """Run scenario ``sc`` again with py-spy sampling the daemon; top functions by self time.

    Only samples where the daemon holds the GIL count (``--gil``): its CPU in Python and
    in the compiled engine. Sampled by wall clock instead, ``writev`` took 63-68 % of an
    echo profile while the daemon's system time was 15 % of its CPU: the write runs the
    client's TCP receive and wakes it, and the daemon waits off-CPU inside the call."""
    pyspy = Path(sys.executable).parent / "py-spy"
    raw = outdir / f"pyspy-{sc}-{offload}.txt"
    spy = subprocess.Popen([str(pyspy), "record", "--pid", str(pid), "--rate", "250", "--gil",
                            "--format", "raw", "--output", str(raw), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        result = run_client(ns, sc, USTCP_ADDR, s)
    finally:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(20)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)
    top = summarize_profile(raw) if raw.exists() else {}
    print(f"  profile {offload:3} {sc:18} {brief(result)} -> {raw}", flush=True)
    return {"run": result, "file": str(raw), **top}


def summarize_profile(raw: Path, n: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [_frame_name(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ")] or ["?"]
        total += count
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    if not total:
        return {}
    return {"samples": total,
            "self": [(f, round(100 * c / total, 1)) for f, c in self_c.most_common(n)],
            "inclusive": [(f, round(100 * c / total, 1)) for f, c in incl.most_common(n + 10)]}


def _frame_name(frame: str) -> str:
    """``func (path/to/mod.py:123)`` -> ``func (to/mod.py)``."""
    func, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    short = "/".join(parts[-2:]) if parts[-1] != "__init__.py" else "/".join(parts[-3:])
    return f"{func} ({short})" if where else func


# ---------------------------------------------------------------------- table


def _num(v: float, unit: str) -> str:
    if unit == "Gbit/s":
        return f"{v:.2f}"
    return f"{v:.0f}" if unit == "µs" else f"{v:,.0f}"


def fmt(r: dict[str, Any], unit: str) -> str:
    if not r:
        return "-"
    if "error" in r:
        return "n/a"
    text = _num(r["value"], unit) + (f" / {r['p99']:.0f}" if unit == "µs" else "")
    if "spread" in r:
        lo, hi = r["spread"]
        text += f" ({_num(lo, unit)}–{_num(hi, unit)})"
    return text


def ratio(a: dict[str, Any], b: dict[str, Any], unit: str) -> str:
    if not a or not b or "error" in a or "error" in b or not b.get("value"):
        return "-"
    if unit == "µs":  # latency: how many times slower
        return f"{a['value'] / b['value']:.2f}x"
    return f"{a['value'] / b['value']:.2f}"


def _loads(results: list[dict[str, Any]]) -> str:
    loads = [x for r in results for x in r.get("loads", [r["load"]] if "load" in r else [])]
    return f"{min(loads):.1f}–{max(loads):.1f}" if loads else "-"


def table(rows: list[Row], variants: list[str]) -> str:
    head = ["scenario", "offload", "unit", "kernel", "ceiling"]
    for v in variants:
        head += [f"ustcp {v}", f"{v}/kernel"]
    head.append("load")
    body = []
    for r in rows:
        line = [r.label, r.offload, r.unit + (" (median / p99)" if r.unit == "µs" else ""),
                fmt(r.kernel, r.unit), fmt(r.ceiling, r.unit)]
        for v in variants:
            res = r.ustcp.get(v, {})
            line += [fmt(res, r.unit), ratio(res, r.kernel, r.unit)]
        line.append(_loads([r.kernel, r.ceiling, *r.ustcp.values()]))
        body.append(line)
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
              for row in body]
    errors = [(r.label, r.offload, who, res["error"]) for r in rows
              for who, res in (*((f"ustcp {v}", x) for v, x in r.ustcp.items()),
                               ("kernel", r.kernel), ("ceiling", r.ceiling))
              if "error" in res]
    lines += [f"n/a: {label} offload {off} {who}: {err}" for label, off, who, err in errors]
    return "\n".join(lines)


CPU_UNIT = {"echo": "µs per round trip", "conn-rate": "µs per connection"}


def cpu_table(rows: list[Row], variants: list[str]) -> str:
    """The server process's CPU time per operation: the kernel's Python server (its share
    of the kernel's TCP work runs in softirq context, mostly not charged to it) and each
    ustcp variant."""
    head = ["scenario", "offload", "unit", "kernel server", *(f"ustcp {v}" for v in variants)]
    body = [[r.label, r.offload, CPU_UNIT.get(r.scenario, "µs per MB"),
             *(f"{res['cpu_us']:.1f}" if "cpu_us" in res else "-"
               for res in (r.kernel, *(r.ustcp.get(v, {}) for v in variants)))]
            for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    return "\n".join(["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                      + " |" for row in (head, ["-" * w for w in widths], *body)])


def git_head() -> str:
    r = subprocess.run(["git", "log", "--oneline", "-1"], capture_output=True, text=True,
                       cwd=ROOT, check=False)
    return r.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_client":
        return client_main(argv[1:])
    if argv and argv[0] == "_kserver":
        return kserver_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run under 60 s")
    p.add_argument("--json", metavar="FILE", type=Path, help="write the results as JSON")
    p.add_argument("--only", choices=list(SCENARIOS), action="append",
                   help="run only this scenario (repeatable)")
    p.add_argument("--offload", choices=("on", "off", "both"), default="both")
    p.add_argument("--recv-mb", type=int,
                   help="bulk receive size in MB (default 2048, quick 32)")
    p.add_argument("--send-mb", type=int,
                   help="bulk send size in MB (default 1024 = the most GET /bytes/N serves, "
                   "quick 32)")
    p.add_argument("--echo-count", type=int, help="echo round trips (default 20000, quick 2000)")
    p.add_argument("--conn-seconds", type=float, help="connection-rate run (default 2, quick 1)")
    p.add_argument("--concurrency", type=int, default=8,
                   help="connections in flight in the connection-rate run (default 8)")
    p.add_argument("--max-seconds", type=float, help="time bound of any one run "
                   "(default 8, quick 5): a bulk run stops at its size or this, whichever first")
    p.add_argument("--profile", metavar="DIR", type=Path,
                   help="also run every scenario under py-spy, profiles into DIR")
    p.add_argument("--sysctl", action="append", metavar="NAME=VALUE", default=[],
                   help="passed to ustcp serve (repeatable; default none: the daemon's "
                        "defaults; the ceiling imitates busy_poll)")
    p.add_argument("--engine", choices=(*ENGINES, "both"), default="both",
                   help="the engine(s) ustcp runs (default both; compiled needs `make "
                        "compiled`)")
    p.add_argument("--busy-poll", type=int, metavar="US",
                   help="also run the compiled engine with busy_poll=US and busy_read=US "
                        "(the default is off: this says whether it should be)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="also run the compiled engine with `serve --workers N`")
    p.add_argument("--repeat", type=int, default=1,
                   help="run every client N times: median and spread (default 1)")
    p.add_argument("--skip", choices=("kernel", "ceiling"), action="append", default=[],
                   help="leave out the kernel reference or the ceiling")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces, TUN devices)", file=sys.stderr)
        return 1
    q = a.quick
    s = Settings(recv_bytes=(a.recv_mb or (32 if q else 2048)) << 20,
                 send_bytes=(a.send_mb or (32 if q else 1024)) << 20,
                 echo_count=a.echo_count or (2000 if q else 20000),
                 conn_seconds=a.conn_seconds or (1.0 if q else 2.0),
                 concurrency=a.concurrency,
                 max_seconds=a.max_seconds or (5.0 if q else 8.0),
                 profile_seconds=2.0 if q else 5.0,
                 sysctls=tuple(a.sysctl), repeat=max(1, a.repeat))
    engines = list(ENGINES) if a.engine == "both" else [a.engine]
    variants = [Variant(engine, engine) for engine in engines]
    if a.busy_poll:
        variants.insert(1, Variant(f"busy {a.busy_poll}", "compiled",
                                   (f"busy_poll={a.busy_poll}", f"busy_read={a.busy_poll}")))
    if a.workers and a.workers > 1:
        variants.insert(1, Variant(f"{a.workers} workers", "compiled", (), a.workers))
    if any(v.engine == "compiled" for v in variants):
        try:
            check_build()
        except StaleBuild as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
    chosen = a.only or list(SCENARIOS)
    client_scenarios = [c for sc in chosen for c, _, _ in SCENARIOS[sc]]
    offloads = ["on", "off"] if a.offload == "both" else [a.offload]
    logdir = Path(f"/tmp/ustcp-bench-{os.getpid()}")
    logdir.mkdir(parents=True, exist_ok=True)
    if a.profile:
        if not (Path(sys.executable).parent / "py-spy").exists():
            print("bench: --profile needs py-spy: .venv/bin/pip install -e '.[bench]'",
                  file=sys.stderr)
            return 2
        a.profile.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    started = time.monotonic()
    print(f"bench: {git_head()}; ustcp --sysctl {' '.join(s.sysctls) or '(none)'}; "
          f"logs in {logdir}", flush=True)
    for off in offloads:
        u = {v.label: measure_ustcp(off, v, client_scenarios, s, logdir, a.profile)
             for v in variants}
        k = {} if "kernel" in a.skip else measure_kernel(off, client_scenarios, s, logdir)
        c = {} if "ceiling" in a.skip else measure_ceiling(off, client_scenarios, s, logdir)
        for sc in chosen:
            for cs, label, unit in SCENARIOS[sc]:
                rows.append(Row(cs, label, off, unit,
                                {v: res[cs] for v, res in u.items() if cs in res},
                                k.get(cs, {}), c.get(cs, {})))
        for v, res in u.items():
            for key, prof in res.items():
                if key.startswith("profile:"):
                    sc = key.split(":", 1)[1]
                    print_profile(sc, f"{off}, {v}", prof)
                    profiles[f"{key}:{off}:{v}"] = prof
    print()
    labels = [v.label for v in variants]
    print(table(rows, labels))
    print("\nCPU time of the server process per operation (median run):")
    print(cpu_table(rows, labels))
    print(f"\n({time.monotonic() - started:.0f} s; sizes: receive {s.recv_bytes >> 20} MB, "
          f"send {s.send_bytes >> 20} MB, echo {s.echo_count} round trips, connections "
          f"{s.conn_seconds} s x {s.concurrency} in flight; ustcp sysctls: "
          f"{' '.join(s.sysctls) or 'none'})")
    if a.json:
        doc = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "commit": git_head(), "kernel": platform.release(),
               "python": platform.python_version(), "settings": asdict(s),
               "results": [asdict(r) for r in rows], "profiles": profiles}
        a.json.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {a.json}")
    return 0


profiles: dict[str, Any] = {}


def print_profile(sc: str, off: str, prof: dict[str, Any]) -> None:
    if not prof.get("self"):
        print(f"profile {sc} offload {off}: no samples")
        return
    print(f"\nprofile {sc} offload {off}: {prof['samples']} samples, top self time")
    for func, pct in prof["self"][:12]:
        print(f"  {pct:5.1f}%  {func}")


if __name__ == "__main__":
    sys.exit(main())
