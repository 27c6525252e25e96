"""TunLink against the Linux kernel, inside a network namespace each test creates.

The TUN device is created while this thread is switched into the namespace (setns), so the
device, its address and the kernel sockets of the test all live there; nothing is configured
in the host's namespace. Needs root, /dev/net/tun and ``ip netns``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import random
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dpkt
import pytest
import trio
import trio.testing

from ustcp.api import open_tcp_stream
from ustcp.config import StackConfig
from ustcp.link.base import ReceivedFrame
from ustcp.link.pcap import PcapTap
from ustcp.link.tun import TunLink, in_host_netns
from ustcp.mib import Counters, Mib
from ustcp.stack import Stack

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or shutil.which("ip") is None,
        reason="needs root, /dev/net/tun and ip netns"),
]

CLONE_NEWNET = 0x40000000
KERNEL_IP, STACK_IP = "10.91.0.1", "10.91.0.2"
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def netns() -> Iterator[str]:
    name = f"ustcp-test-{os.getpid()}-{random.randrange(1 << 30)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


@contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the body with this thread in ``ns``. Keep it synchronous: no other task may run
    while the thread is switched."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def tun_name() -> str:
    return f"ut{os.getpid() % 100000}{random.randrange(1000)}"


def open_tun(ns: str, offload: bool, counters: Counters | None = None) -> TunLink:
    with inside(ns):
        return TunLink(tun_name(), 1500, offload, kernel_addr=f"{KERNEL_IP}/24",
                       counters=counters)


def icmp_socket(ns: str) -> trio.socket.SocketType:
    with inside(ns):
        return trio.socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)


async def send_ping(ping: trio.socket.SocketType, data: bytes) -> None:
    """An ICMP echo request carrying ``data`` from the kernel to the stack's address."""
    request = dpkt.icmp.ICMP(type=dpkt.icmp.ICMP_ECHO,
                             data=dpkt.icmp.ICMP.Echo(id=7, seq=1, data=data))
    await ping.sendto(bytes(request), (STACK_IP, 0))


async def read_echo_request(link: TunLink) -> tuple[ReceivedFrame, dpkt.ip.IP]:
    """Skip what else the kernel sends (IPv6 router solicitations) until a ping arrives."""
    with trio.fail_after(5):
        while True:
            for frame in await link.receive_batch():
                data = bytes(frame.data)
                if data[0] >> 4 != 4:
                    continue
                ip = dpkt.ip.IP(data)
                if ip.p == dpkt.ip.IP_PROTO_ICMP and ip.data.type == dpkt.icmp.ICMP_ECHO:
                    return frame, ip


def echo_reply_for(request: dpkt.ip.IP) -> bytes:
    icmp = request.data
    icmp.type, icmp.sum = dpkt.icmp.ICMP_ECHOREPLY, 0
    reply = dpkt.ip.IP(src=request.dst, dst=request.src, p=dpkt.ip.IP_PROTO_ICMP, ttl=64,
                       id=1, data=icmp)
    return bytes(reply)


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
async def test_kernel_ping_is_read_and_answered(offload: bool) -> None:
    with netns() as ns:
        link = open_tun(ns, offload)
        ping = icmp_socket(ns)
        try:
            assert link.offload is offload  # this kernel accepts TUNSETOFFLOAD
            assert link.tx_csum_offload is offload
            assert (link.gso_max_size > 60000) is offload
            await send_ping(ping, b"ustcp")
            frame, ip = await read_echo_request(link)
            assert not isinstance(frame.data, memoryview) or offload
            assert socket.inet_ntoa(ip.src) == KERNEL_IP
            assert socket.inet_ntoa(ip.dst) == STACK_IP
            assert ip.data.data.data == b"ustcp"
            link.send_batch([(echo_reply_for(ip), 0)])
            with trio.fail_after(5):
                reply = dpkt.ip.IP(await ping.recv(2048))
            assert reply.data.type == dpkt.icmp.ICMP_ECHOREPLY
            assert reply.data.data.data == b"ustcp"
        finally:
            ping.close()
            await link.aclose()
        await link.aclose()  # idempotent


async def test_poll_batch_never_waits() -> None:
    """poll_batch: [] at once on an empty queue, the frames once the kernel sent some."""
    with netns() as ns:
        link = open_tun(ns, False)
        ping = icmp_socket(ns)
        try:
            while link.poll_batch():  # what the kernel sent on its own so far
                pass
            assert link.poll_batch() == []
            await send_ping(ping, b"poll")
            with trio.fail_after(5):
                while not (frames := link.poll_batch()):
                    await trio.sleep(0.001)
            assert any(b"poll" in bytes(f.data) for f in frames)
        finally:
            ping.close()
            await link.aclose()


def carries(batch: list[ReceivedFrame], data: bytes) -> bool:
    return any(data in bytes(f.data) for f in batch)


async def test_an_unscheduled_receive_leaves_the_scheduler_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """receive_batch(unscheduled=True), what the stack asks after a flush that woke no
    task: with a task runnable it makes a schedule point as trio's receives do (the task
    sends the frame it returns); with none, a frame already queued comes with no schedule
    point (no wait for readability), and with nothing queued it sleeps in poll(2) no longer
    than 1 ms before it waits through the scheduler (one wait) for a frame 0.2 s away."""
    waits = 0
    real_wait = trio.lowlevel.wait_readable

    async def counting_wait(fd: int) -> None:
        nonlocal waits
        waits += 1
        await real_wait(fd)

    monkeypatch.setattr(trio.lowlevel, "wait_readable", counting_wait)
    with netns() as ns:
        for scope in ("all", "default"):  # no router solicitations: the queue stays empty
            in_ns = ["ip", "netns", "exec", ns, "sysctl", "-qw"]
            subprocess.run([*in_ns, f"net.ipv6.conf.{scope}.disable_ipv6=1"], check=True)
        link = open_tun(ns, False)
        ping = icmp_socket(ns)

        async def ping_soon() -> None:
            await send_ping(ping, b"one")

        try:
            with trio.fail_after(5):
                async with trio.open_nursery() as nursery:
                    while link.poll_batch():
                        pass
                    nursery.start_soon(ping_soon)
                    assert carries(await link.receive_batch(True), b"one")
                    await trio.testing.wait_all_tasks_blocked()
                    await send_ping(ping, b"two")
                    waits = 0
                    assert carries(await link.receive_batch(True), b"two")
                    later = subprocess.Popen(
                        ["ip", "netns", "exec", ns, "sh", "-c",
                         f"sleep 0.2; ping -c 1 -W 1 -p 7468726565 {STACK_IP}"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    try:
                        assert waits == 0
                        assert carries(await link.receive_batch(True), b"three")
                        assert waits == 1
                    finally:
                        later.wait(5)
        finally:
            ping.close()
            await link.aclose()


@pytest.mark.parametrize("busy_poll", [0, 3_000_000], ids=["sleeps", "spins"])
async def test_busy_poll_answers_without_sleeping_in_epoll(
        busy_poll: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """net.core.busy_poll: a ping arriving within the receive loop's spin is read and
    answered without a wait for readability; without it, the loop sleeps in epoll until
    the ping comes. Either way the other tasks keep running while the stack waits (the
    spin yields between slices)."""
    link_waits = 0
    real_wait = trio.lowlevel.wait_readable
    with netns() as ns:
        counters = Counters()
        link = open_tun(ns, False, counters)

        async def counting_wait(fd: int) -> None:
            nonlocal link_waits
            link_waits += fd == link._fd
            await real_wait(fd)

        monkeypatch.setattr(trio.lowlevel, "wait_readable", counting_wait)
        ping = icmp_socket(ns)
        stack = Stack(link, StackConfig(busy_poll=busy_poll), counters,
                      socket.inet_aton(STACK_IP), seed=4)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stack.run)
                other_steps = 0
                quiet_until = trio.current_time() + 0.05  # the kernel's own frames go by
                while trio.current_time() < quiet_until:
                    await trio.lowlevel.checkpoint()
                    other_steps += 1
                link_waits = 0
                await send_ping(ping, b"spin")
                with trio.fail_after(5):
                    reply = dpkt.ip.IP(await ping.recv(2048))
                nursery.cancel_scope.cancel()
            assert reply.data.type == dpkt.icmp.ICMP_ECHOREPLY
            assert reply.data.data.data == b"spin"
            assert (link_waits == 0) is bool(busy_poll)
            # the ping (and the kernel's own frames) came by polling (BusyPollRxPackets)
            assert (counters[Mib.TcpExtBusyPollRxPackets] > 0) is bool(busy_poll)
            # 50 ms of 10 µs slices let this task step thousands of times; a spin that
            # never yielded would leave it stuck at its first step (generous bound)
            assert other_steps > 100
        finally:
            ping.close()
            await link.aclose()


def test_kernel_addr_refused_in_host_namespace() -> None:
    if not in_host_netns():
        pytest.skip("not running in the host's network namespace")
    with pytest.raises(PermissionError, match="network namespace"):
        TunLink(tun_name(), kernel_addr="10.91.0.1/24")


@pytest.mark.parametrize(("offload", "busy"), [(False, 0), (True, 0), (True, 50)],
                         ids=["plain", "offload", "offload-busy-polling"])
async def test_stack_talks_to_kernel_socket(offload: bool, busy: int, tmp_path: Path) -> None:
    """Our stack connects to a kernel listener, 1 MB goes each way; with offload our sends
    are GSO super-packets and the kernel's arrive as such. With busy polling (busy_poll
    and busy_read 50 µs) the bytes are the same."""
    size = 1 << 20
    data_up, data_down = random.Random(1).randbytes(size), random.Random(2).randbytes(size)
    with netns() as ns:
        counters = Counters()
        link = open_tun(ns, offload, counters)
        with inside(ns):
            server = trio.socket.socket()
        await server.bind((KERNEL_IP, 0))
        server.listen()
        port = server.getsockname()[1]
        tap = PcapTap(link, tmp_path / "tun.pcap")
        stack = Stack(tap, StackConfig(busy_poll=busy, busy_read=busy), counters,
                      socket.inet_aton(STACK_IP), seed=3)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stack.run)

                async def kernel_side() -> None:
                    sock, _addr = await server.accept()
                    async with trio.SocketStream(sock) as conn:
                        received = bytearray()
                        while len(received) < size:
                            chunk = await conn.receive_some()
                            assert chunk
                            received += chunk
                        assert hashlib.sha256(received).digest() == hashlib.sha256(
                            data_up).digest()
                        await conn.send_all(data_down)
                        await conn.send_eof()
                        assert await conn.receive_some() == b""

                with trio.fail_after(30):
                    async with trio.open_nursery() as inner:
                        inner.start_soon(kernel_side)
                        stream = await open_tcp_stream(stack, KERNEL_IP, port)
                        await stream.send_all(data_up)
                        got = bytearray()
                        while chunk := await stream.receive_some():
                            got += chunk
                        assert hashlib.sha256(got).digest() == hashlib.sha256(data_down).digest()
                        await stream.aclose()
                nursery.cancel_scope.cancel()
        finally:
            server.close()
            await tap.aclose()
        assert counters["UstcpLinkTxErrors"] == 0
        assert counters["UstcpInternalErrors"] == 0
        with (tmp_path / "tun.pcap").open("rb") as f:
            sizes = {(buf[12:16], len(buf)) for _ts, buf in dpkt.pcap.Reader(f)
                     if buf[0] >> 4 == 4}
        ours = max(n for src, n in sizes if src == socket.inet_aton(STACK_IP))
        kernels = max(n for src, n in sizes if src == socket.inet_aton(KERNEL_IP))
        # With offload both sides move GSO super-packets; without, nothing exceeds the MTU.
        assert (ours > 1500) is offload
        assert (kernels > 1500) is offload
