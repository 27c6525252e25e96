"""The kernel's side of the demos: small socket programs run inside the demo's namespace.

``python -m ustcp.demo.peer ACTION ARGS...`` prints its result as one JSON line (actions that
hold sockets open print a first line when they are ready, then the result). Every action is
bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import dpkt

TCP_INFO_FORMAT = "7B"  # state, ca_state, retransmits, probes, backoff, options, wscales
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE = 1, 2, 4
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
TUN_DEVICE = "ustcp0"


def emit(obj: Any) -> None:
    print(json.dumps(obj), flush=True)


def _errname(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def tcp_info_options(sock: socket.socket) -> dict[str, Any]:
    """What the kernel negotiated, from the first bytes of its struct tcp_info."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    _, _, _, _, _, options, wscales = struct.unpack_from(TCP_INFO_FORMAT, raw)
    rto, _ato, snd_mss = struct.unpack_from("3I", raw, 8)
    return {
        "timestamps": bool(options & TCPI_OPT_TIMESTAMPS), "sack": bool(options & TCPI_OPT_SACK),
        "wscale": [wscales & 0x0F, wscales >> 4] if options & TCPI_OPT_WSCALE else None,
        "snd_mss": snd_mss, "rto_us": rto,
    }


def _recv_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def echo(host: str, port: int, text: str) -> dict[str, Any]:
    """Connect, send ``text``, read it back; then half-close first and read to EOF."""
    with socket.create_connection((host, port), timeout=5) as sock:
        info = tcp_info_options(sock)
        sock.sendall(text.encode())
        echoed = b""
        while len(echoed) < len(text):
            chunk = sock.recv(65536)
            if not chunk:
                break
            echoed += chunk
        sock.shutdown(socket.SHUT_WR)
        rest = _recv_all(sock, 5)
        return {"local_port": sock.getsockname()[1], "echo": (echoed + rest).decode(),
                "options": info}


def burst(host: str, port: int, waves: list[int], hold: float) -> None:
    """Connect in waves (``waves[i]`` connects at once, each wave given up to 2 s); report
    what the kernel thinks of each connection, hold them for ``hold`` seconds, then report
    again (a reset shows up as ECONNRESET)."""
    socks: list[socket.socket] = []
    pending: set[socket.socket] = set()
    for count in waves:
        wave = []
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex((host, port))
            wave.append(sock)
        socks += wave
        pending |= set(wave)
        deadline = time.monotonic() + 2.0
        while pending & set(wave) and time.monotonic() < deadline:
            waiting = list(pending & set(wave))
            _, writable, _ = select.select([], waiting, [], deadline - time.monotonic())
            pending -= set(writable)

    def status(sock: socket.socket) -> str:
        if sock in pending:
            return "connecting"
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            return errno.errorcode.get(err, str(err))
        try:
            data = sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK)
        except BlockingIOError:
            return "established"
        except OSError as exc:
            return _errname(exc)
        return "established" if data else "closed"

    statuses = [status(s) for s in socks]
    emit({"phase": "ready", "status": statuses,
          "ports": [s.getsockname()[1] for s in socks],
          "options": [tcp_info_options(s) if st == "established" else None
                      for s, st in zip(socks, statuses, strict=True)]})
    time.sleep(hold)
    emit({"phase": "done", "status": [status(s) for s in socks]})
    for sock in socks:
        sock.close()


def blast(host: str, port: int, hold: float) -> None:
    """Write as fast as possible until the peer's window stays closed for a second, report,
    hold the connection ``hold`` seconds, report again."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.setblocking(False)
        sent, last_progress = 0, time.monotonic()
        chunk = b"z" * 65536
        deadline = time.monotonic() + 10.0
        while time.monotonic() - last_progress < 1.0 and time.monotonic() < deadline:
            try:
                sent += sock.send(chunk)
                last_progress = time.monotonic()
            except BlockingIOError:
                select.select([], [sock], [], 0.05)
        emit({"phase": "stalled", "sent": sent})
        time.sleep(hold)
        emit({"phase": "done", "sent": sent})


def greet(port: int, count: int, timeout: float) -> None:
    """A kernel server: for each of ``count`` connections, send a line, wait for the
    client's FIN, close."""
    with socket.create_server(("0.0.0.0", port)) as server:
        server.settimeout(timeout)
        emit({"phase": "ready"})
        served = []
        try:
            for _ in range(count):
                conn, peer = server.accept()
                with conn:
                    conn.sendall(b"hello from the kernel\n")
                    with contextlib.suppress(OSError):
                        _recv_all(conn, 5)
                served.append(peer[1])
        except TimeoutError:
            pass
        emit({"phase": "done", "served": served})


def lab(host: str, port: int, hold: float, commands: Sequence[str]) -> None:
    """Send lab-app requests (``;``-separated), print the replies, hold the session."""
    with socket.create_connection((host, port), timeout=10) as sock:
        reader = sock.makefile("rb")
        replies = []
        for command in commands:
            sock.sendall(command.strip().encode() + b"\n")
            replies.append(reader.readline().decode().strip())
        emit({"phase": "ready", "replies": replies})
        time.sleep(hold)


def connect_loop(host: str, port: int, count: int, interval: float, timeout: float) -> None:
    """``count`` HTTP requests, one every ``interval`` seconds; how many got a 200."""
    ok = 0
    errors: dict[str, int] = {}
    for _ in range(count):
        started = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.sendall(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")
                if _recv_all(sock, timeout).startswith(b"HTTP/1.1 200"):
                    ok += 1
        except OSError as exc:
            name = _errname(exc) if exc.errno else type(exc).__name__
            errors[name] = errors.get(name, 0) + 1
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    emit({"ok": ok, "count": count, "errors": errors})


def request_from(host: str, port: int, local_port: int, timeout: float) -> None:
    """One HTTP/1.0 request from a fixed local port (Linux derives a connection's timestamp
    offset from its 4-tuple, so the same port gives the same clock offset every time)."""
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", local_port))
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.sendall(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")
            ok = _recv_all(sock, timeout).startswith(b"HTTP/1.1 200")
        emit({"ok": int(ok), "error": None})
    except OSError as exc:
        emit({"ok": 0, "error": _errname(exc) if exc.errno else type(exc).__name__})


class Sniffer:
    """Every IPv4/TCP packet crossing the TUN device, both ways (AF_PACKET)."""

    def __init__(self, device: str = TUN_DEVICE) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self.sock.bind((device, 0))
        self.sock.setblocking(False)
        self.packets: list[tuple[bool, dpkt.ip.IP]] = []

    def drain(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.sock], [], [], left)[0]:
                continue
            data, addr = self.sock.recvfrom(65536)
            ip = dpkt.ip.IP(data)
            if isinstance(ip.data, dpkt.tcp.TCP):
                self.packets.append((addr[2] == PACKET_OUTGOING, ip))

    def close(self) -> None:
        self.sock.close()


def _timestamps(tcp: dpkt.tcp.TCP) -> tuple[int, int] | None:
    for kind, data in dpkt.tcp.parse_opts(tcp.opts):
        if kind == dpkt.tcp.TCP_OPT_TIMESTAMP:
            val, ecr = struct.unpack("!II", data)
            return int(val), int(ecr)
    return None


def inject(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, ts: tuple[int, int],
           payload: bytes) -> None:
    """Send a crafted segment as if the kernel's socket had sent it (raw IP_HDRINCL)."""
    opts = b"\x01\x01" + struct.pack("!BBII", dpkt.tcp.TCP_OPT_TIMESTAMP, 10, *ts)
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack,
                       flags=dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, win=502, opts=opts,
                       off=(20 + len(opts)) // 4, data=payload)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst),
                    p=dpkt.ip.IP_PROTO_TCP, ttl=64, df=1, data=tcp)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        raw.sendto(bytes(ip), (dst, 0))


def paws(host: str, port: int) -> None:
    """An old duplicate: after an echo exchange, inject a segment with the right sequence
    numbers but a timestamp from the past, then send fresh data; report what came back."""
    sniffer = Sniffer()
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"hello\n")
            first = sock.recv(100)
            sniffer.drain(0.3)
            mine = [ip for out, ip in sniffer.packets if out]
            last = mine[-1].data
            ts = _timestamps(last)
            if ts is None:
                emit({"error": "no timestamps on the connection"})
                return
            seq = max((ip.data.seq + len(ip.data.data)) % 2**32 for ip in mine)
            old_ts = ((ts[0] - 100_000) % 2**32, ts[1])
            inject(sock.getsockname()[0], host, sock.getsockname()[1], port, seq,
                   last.ack, old_ts, b"STALE\n")
            sniffer.drain(0.3)
            sock.sendall(b"fresh\n")
            sock.settimeout(2)
            second = sock.recv(100)
            sniffer.drain(0.2)
            emit({"first": first.decode(), "second": second.decode(), "tsval": ts[0],
                  "injected_tsval": old_ts[0], "injected_seq": seq})
    finally:
        sniffer.close()


def sample(port: int, duration: float, interval: float) -> None:
    """Poll the daemon's ``ss`` (its control socket) for the established connection on
    ``port``: one ``[t, cwnd, ssthresh, retrans_total]`` per poll, until the connection
    has come and gone or ``duration`` seconds have passed."""
    from ustcp.obs import control
    from ustcp.obs.ss import filter_rows

    samples: list[list[float]] = []
    started = time.monotonic()
    emit({"phase": "ready"})
    while (now := time.monotonic() - started) < duration:
        rows = control.request("ss", state="established", port=port)["sockets"]
        rows = filter_rows(rows, state="established", port=port)
        if samples and not rows:
            break
        for row in rows:
            info = row["info"]
            samples.append([round(now, 4), info["cwnd"], info["ssthresh"],
                            info["retrans_total"]])
        time.sleep(interval)
    emit({"phase": "done", "samples": samples})


TCP_STATES = ["?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
              "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"]


def _kernel_state(sock: socket.socket) -> str:
    """The kernel's state of ``sock`` (tcpi_state, the first byte of struct tcp_info)."""
    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    return TCP_STATES[state] if state < len(TCP_STATES) else str(state)


def hold(port: int, count: int, limit: float) -> None:
    """A kernel server that never closes first: greet each of ``count`` connections, then
    keep every socket open, noting the client's FIN (``eof``), until SIGUSR1 or ``limit``
    seconds; report each socket's kernel state, then close them all."""
    told = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: told.append(signum))
    conns: list[socket.socket] = []
    ports: list[int] = []
    with socket.create_server(("0.0.0.0", port)) as server:
        server.settimeout(limit)
        emit({"phase": "ready"})
        deadline = time.monotonic() + limit
        with contextlib.suppress(TimeoutError):
            while len(conns) < count and not told:
                conn, peer = server.accept()
                conn.sendall(b"hello from the kernel\n")
                conns.append(conn)
                ports.append(peer[1])
        seen: dict[socket.socket, str] = {}
        while not told and time.monotonic() < deadline:
            watching = [c for c in conns if c not in seen]
            for conn in select.select(watching, [], [], 0.05)[0] if watching else []:
                try:
                    if not conn.recv(4096):
                        seen[conn] = "eof"
                except OSError as exc:
                    seen[conn] = _errname(exc)
            if not watching:
                time.sleep(0.05)
        emit({"phase": "held", "seen": [seen.get(c, "open") for c in conns],
              "states": [_kernel_state(c) for c in conns],
              "ports": ports})
        for conn in conns:
            conn.close()


def _nft(*args: str) -> str:
    return subprocess.run(["nft", *args], capture_output=True, text=True, timeout=10,
                          check=True).stdout


def lost_last_ack(host: str, port: int) -> None:
    """An HTTP/1.0 request (the server closes first); once the response and the server's
    FIN are in, an nftables rule drops the server's next pure ACK (the last ACK of the close)
    once, and we close: our FIN waits for an ACK that never comes and is retransmitted."""
    with socket.create_connection((host, port), timeout=5) as sock:
        local = sock.getsockname()[1]
        sock.sendall(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")
        response = _recv_all(sock, 5)
        _nft("add", "table", "ip", "ustcp_demo")
        _nft("add", "chain", "ip", "ustcp_demo", "in",
             "{ type filter hook input priority 0; }")
        # quota until 60 bytes: only the first matching ACK (52 bytes with timestamps).
        _nft("add", "rule", "ip", "ustcp_demo", "in", "ip", "saddr", host, "tcp", "sport",
             str(port), "tcp", "dport", str(local), "tcp", "flags", "==", "ack",
             "quota", "until", "60", "bytes", "counter", "drop")
        closed = time.monotonic()
        sock.close()
        dropped = 0
        while time.monotonic() < closed + 10:
            counted = re.search(r"packets (\d+)", _nft("list", "table", "ip", "ustcp_demo"))
            dropped = int(counted[1]) if counted else 0
            if dropped:
                break
            time.sleep(0.02)
    emit({"status": response.split(b"\r\n", 1)[0].decode(errors="replace"),
          "local_port": local, "dropped": dropped})


ACTIONS: dict[str, Callable[[list[str]], None]] = {
    "echo": lambda a: emit(echo(a[0], int(a[1]), a[2])),
    "burst": lambda a: burst(a[0], int(a[1]), [int(n) for n in a[2].split(",")], float(a[3])),
    "blast": lambda a: blast(a[0], int(a[1]), float(a[2])),
    "greet": lambda a: greet(int(a[0]), int(a[1]), float(a[2])),
    "lab": lambda a: lab(a[0], int(a[1]), float(a[2]), " ".join(a[3:]).split(";")),
    "connect-loop": lambda a: connect_loop(a[0], int(a[1]), int(a[2]), float(a[3]),
                                           float(a[4])),
    "paws": lambda a: paws(a[0], int(a[1])),
    "sample": lambda a: sample(int(a[0]), float(a[1]), float(a[2])),
    "hold": lambda a: hold(int(a[0]), int(a[1]), float(a[2])),
    "request-from": lambda a: request_from(a[0], int(a[1]), int(a[2]), float(a[3])),
    "lost-last-ack": lambda a: lost_last_ack(a[0], int(a[1])),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ustcp.demo.peer")
    parser.add_argument("action", choices=sorted(ACTIONS))
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    ACTIONS[args.action](args.args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
