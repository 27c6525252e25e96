"""Microseconds of engine work per step, without trio, syscalls or a kernel.

Run: ``.venv/bin/python tools/bench_engine.py [--profile]``. Two hosts (IP layer + TCP
engine each) exchange real IPv4 frames in memory on a fake clock; the figures are the
server's side only:

- ``echo``: one 1-byte request/response round trip on an established connection, split into
  the steps the daemon runs: the request frame through ``IpLayer.on_frame`` (parse, engine),
  the application's ``recv`` and ``send``, and ``take_frames`` (the reply built);
- ``connection``: one whole passive connection as ``tools/bench.py conn-rate`` makes it
  (SYN, ACK, the client's FIN, accept, close, the last ACK), both sides;
- ``bulk-ack``: one 64 KB super-packet received and its ACK built (offload mode: the link
  vouches for checksums, ACKs are built with partial checksums);
- ``driver``: the same echo round trip and connection through everything above the engine
  too, two stacks over an in-memory link in one trio run: both sides, no syscalls. The
  client is a trio stream; the server is the daemon's echo on socket callbacks
  (``ustcp.callbacks``), then the same echo as a trio stream handler in a task of its own
  per connection (``serve_listeners``). What the engine figures leave out: task switches,
  wake-ups, nurseries, cancel scopes, logging.

``USTCP_ENGINE=pure`` or ``compiled`` picks the engine (``make compiled``); the first line
says which ran.

Prints the best of several repeats (what the code costs on an idle core). ``--profile``
prints the top functions of a cProfile run of each scenario instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import socket
import time
from collections.abc import Awaitable, Callable

import trio

import ustcp
from ustcp.apps.echo import Echo
from ustcp.callbacks import CallbackApp
from ustcp.config import StackConfig
from ustcp.host import open_memory_pair
from ustcp.ip import IpLayer
from ustcp.mib import Counters
from ustcp.obs.log import configure_logging
from ustcp.tcp.connection import Connection
from ustcp.tcp.engine import TcpEngine

Handler = CallbackApp | Callable[[ustcp.TCPStream], Awaitable[None]]
ECHO_ON_CALLBACKS = CallbackApp(Echo)

CLIENT_IP = socket.inet_aton("10.77.0.1")
SERVER_IP = socket.inet_aton("10.77.0.2")
PORT = 7
REPEATS = 5


class Host:
    def __init__(self, addr: bytes, seed: int, offload: bool) -> None:
        self.counters = Counters()
        self.engine = TcpEngine(StackConfig(), self.counters, seed=seed,
                                gso_max_size=65000 if offload else 0)
        self.ip = IpLayer(self.engine, self.counters, {addr}, StackConfig(),
                          tx_csum_offload=offload)
        self.offload = offload

    def deliver(self, now: float, frames: list[tuple[bytes, int]]) -> None:
        for frame, _ in frames:
            self.ip.on_frame(now, frame, self.offload)


class Pair:
    """A client and a server host; ``clock`` advances 50 µs per exchange."""

    def __init__(self, offload: bool = True) -> None:
        self.client = Host(CLIENT_IP, 1, offload)
        self.server = Host(SERVER_IP, 2, offload)
        self.now = 1.0
        self.listener = self.server.engine.listen(self.now, SERVER_IP, PORT, 1024)

    def tick(self) -> float:
        self.now += 50e-6
        return self.now

    def settle(self) -> None:
        """Deliver frames both ways until neither side has anything to send."""
        while True:
            to_server = self.client.ip.take_frames()
            to_client = self.server.ip.take_frames()
            if not to_server and not to_client:
                return
            now = self.tick()
            self.server.deliver(now, to_server)
            self.client.deliver(now, to_client)

    def connect(self) -> tuple[Connection, Connection]:
        c = self.client.engine.connect(self.now, CLIENT_IP, SERVER_IP, PORT)
        self.settle()
        s = self.listener.accept()
        assert s is not None
        return c, s


def best_us(fn: Callable[[], None], number: int) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / number * 1e6


def echo_steps(number: int = 5000) -> dict[str, float]:
    pair = Pair()
    c, s = pair.connect()
    srv = pair.server
    times = {"on_frame": 0.0, "recv": 0.0, "send": 0.0, "take_frames": 0.0}
    clock = time.perf_counter

    def one() -> None:
        now = pair.tick()
        c.send(now, b"x")
        request = pair.client.ip.take_frames()
        t0 = clock()
        srv.deliver(now, request)
        t1 = clock()
        data = s.recv(now, 65536)
        t2 = clock()
        s.send(now, data)
        t3 = clock()
        reply = srv.ip.take_frames()
        t4 = clock()
        times["on_frame"] += t1 - t0
        times["recv"] += t2 - t1
        times["send"] += t3 - t2
        times["take_frames"] += t4 - t3
        pair.client.deliver(pair.tick(), reply)
        c.recv(now, 65536)
        pair.client.ip.take_frames()

    for _ in range(200):
        one()
    best: dict[str, float] = {}
    for _ in range(REPEATS):
        for k in times:
            times[k] = 0.0
        for _ in range(number):
            one()
        for k, v in times.items():
            best[k] = min(best.get(k, float("inf")), v / number * 1e6)
    best["total"] = sum(best.values())
    return best


def connection_once(pair: Pair) -> None:
    """One connection as the conn-rate client makes it: connect, half-close, wait for the
    server's FIN, close; the server accepts and closes at once."""
    c, s = pair.connect()
    now = pair.tick()
    c.shutdown(now, socket.SHUT_WR)
    pair.settle()
    s.close(pair.tick())
    pair.settle()
    c.close(pair.tick())
    pair.settle()


def connection_us(number: int = 3000) -> float:
    pair = Pair()
    return best_us(lambda: connection_once(pair), number)


def bulk_ack_us(number: int = 2000) -> float:
    pair = Pair()
    c, s = pair.connect()
    chunk = bytes(64 * 1024)
    srv = pair.server

    def one() -> None:
        now = pair.tick()
        c.send(now, chunk)
        frames = pair.client.ip.take_frames()
        srv.deliver(now, frames)
        s.recv(now, 1 << 20)
        pair.client.deliver(now, srv.ip.take_frames())

    for _ in range(50):
        one()
    return best_us(one, number)


async def trio_echo(stream: ustcp.TCPStream) -> None:
    """The echo app as a trio stream handler: what the API costs a task-per-connection app."""
    while data := await stream.receive_some(65536):
        await stream.send_all(data)
    await stream.send_eof()
    await stream.aclose()


async def _driver(rounds: int, conns: int, server: Handler) -> tuple[float, float]:
    async with open_memory_pair() as (a, b), trio.open_nursery() as nursery:
        await nursery.start(ustcp.serve_tcp, b, server, PORT)
        stream = await ustcp.open_tcp_stream(a, "10.0.0.2", PORT)
        for _ in range(200):
            await stream.send_all(b"x")
            await stream.receive_some(1)
        echo = float("inf")
        for _ in range(REPEATS):
            start = time.perf_counter()
            for _ in range(rounds):
                await stream.send_all(b"x")
                await stream.receive_some(1)
            echo = min(echo, (time.perf_counter() - start) / rounds * 1e6)
        await stream.aclose()
        conn = float("inf")
        for _ in range(REPEATS):
            start = time.perf_counter()
            for _ in range(conns):
                s = await ustcp.open_tcp_stream(a, "10.0.0.2", PORT)
                await s.send_eof()
                while await s.receive_some():
                    pass
                await s.aclose()
            conn = min(conn, (time.perf_counter() - start) / conns * 1e6)
        nursery.cancel_scope.cancel()
    return echo, conn


def driver_us(rounds: int = 3000, conns: int = 600,
              server: Handler = ECHO_ON_CALLBACKS) -> tuple[float, float]:
    return trio.run(_driver, rounds, conns, server)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", action="store_true", help="cProfile top functions instead")
    a = p.parse_args()
    configure_logging(level="warning")  # as the daemon runs by default
    scenarios: dict[str, Callable[[], object]] = {
        "echo": echo_steps, "connection": connection_us, "bulk-ack": bulk_ack_us,
        "driver": driver_us}
    if a.profile:
        for name, fn in scenarios.items():
            prof = cProfile.Profile()
            prof.runcall(fn)
            print(f"== {name}")
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return 0
    print(f"engine: {ustcp.ENGINE}")
    steps = echo_steps()
    print("echo, server side, µs per round trip: "
          + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))
    print(f"connection, both sides, µs per connection: {connection_us():.1f}")
    print(f"bulk 64 KB super-packet + its ACK, both sides, µs: {bulk_ack_us():.1f}")
    for label, server in (("on callbacks", ECHO_ON_CALLBACKS), ("in a task", trio_echo)):
        echo, conn = driver_us(server=server)
        print(f"driver + API + echo app {label}, both sides, in memory, µs: echo round trip "
              f"{echo:.1f}, connection {conn:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
