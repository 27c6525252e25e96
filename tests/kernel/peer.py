"""The kernel's side of the kernel tests: small socket programs run inside a test namespace.

Run as ``python peer.py COMMAND ...`` under ``ip netns exec``; stdlib only.

``echo HOST PORT NBYTES``   send NBYTES of random data to an echo server while reading the
                            echo, half-close, read to EOF; print "ok" if every byte matched
``refused HOST PORT``       connect to a closed port; print the error name and the seconds
                            it took
``pingpong HOST PORT SECONDS``  one-byte echo round trips until stdin closes (at most
                            SECONDS); print JSON: the
                            count, the slowest, median and 99th percentile round trip, those
                            over 10 ms with their time, start and end
                            (time.monotonic, comparable across processes)
``serve PORT``              accept one connection on [::]:PORT, IPv4 or IPv6 (printing "listening"
                            first), read to EOF, answer "<length> <sha256 hex>\\n", close
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import sys
import threading
import time


def echo(host: str, port: int, nbytes: int) -> None:
    data = os.urandom(nbytes)
    received = bytearray()
    with socket.create_connection((host, port), timeout=30) as sock:

        def send() -> None:
            view = memoryview(data)
            for i in range(0, nbytes, 65536):
                sock.sendall(view[i : i + 65536])
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        while chunk := sock.recv(1 << 20):
            received += chunk
        sender.join()
    if received == data:
        print("ok")
    else:
        pairs = enumerate(zip(received, data, strict=False))
        mismatch = next((i for i, (a, b) in pairs if a != b), None)
        print(f"mismatch: sent {nbytes}, received {len(received)}, first difference at "
              f"{mismatch}")


def refused(host: str, port: int) -> None:
    start = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=10).close()
        outcome = "connected"
    except OSError as exc:
        outcome = type(exc).__name__
    print(outcome, f"{time.monotonic() - start:.3f}")


def pingpong(host: str, port: int, seconds: float) -> None:
    rtts: list[float] = []
    slow: list[tuple[float, float]] = []  # (when, round trip) of those over 10 ms
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.monotonic()
        while (now := time.monotonic()) < start + seconds:
            if select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.read(1):
                break
            sock.sendall(b"p")
            if sock.recv(1) != b"p":
                break
            rtts.append(time.monotonic() - now)
            if rtts[-1] > 0.01:
                slow.append((now, rtts[-1]))
    rtts.sort()
    print(json.dumps({"count": len(rtts), "max": rtts[-1] if rtts else None,
                      "median": rtts[len(rtts) // 2] if rtts else None,
                      "p99": rtts[len(rtts) * 99 // 100] if rtts else None,
                      "slow": slow, "start": start, "end": time.monotonic()}))


def serve(port: int) -> None:
    with socket.create_server(("::", port), family=socket.AF_INET6,
                              dualstack_ipv6=True) as server:
        print("listening", flush=True)
        server.settimeout(30)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(30)
            digest, length = hashlib.sha256(), 0
            while chunk := conn.recv(1 << 20):
                digest.update(chunk)
                length += len(chunk)
            conn.sendall(f"{length} {digest.hexdigest()}\n".encode())
    print("served", flush=True)


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "echo":
        echo(args[0], int(args[1]), int(args[2]))
    elif command == "refused":
        refused(args[0], int(args[1]))
    elif command == "pingpong":
        pingpong(args[0], int(args[1]), float(args[2]))
    elif command == "serve":
        serve(int(args[0]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
