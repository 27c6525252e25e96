"""Path MTU discovery (RFC 1191, RFC 8201) on virtual time: an in-window "fragmentation
needed" / "packet too big" lowers the path MTU in the host's bounded cache, the MSS follows
and what no longer fits is resent at once (tcp_v4_mtu_reduced, tcp_simple_retransmit);
min_pmtu, the IPv6 minimum, expiry after mtu_expires; and the whole path through the trio
stack over a link impaired with ``pmtu=1280``."""

from __future__ import annotations

import errno
import hashlib
import socket

import pytest
import trio
from trio.testing import MockClock

from ustcp.api import open_tcp_listeners, open_tcp_stream
from ustcp.config import StackConfig
from ustcp.link.impair import ImpairmentSpec
from ustcp.link.impaired import ImpairedLink
from ustcp.link.memory import memory_link_pair
from ustcp.mib import Counters
from ustcp.pmtu import PMTU_ENTRIES_MAX, PathMtuCache
from ustcp.stack import Stack
from ustcp.tcp.congestion.base import CA_LOSS
from ustcp.tcp.connection import Connection
from ustcp.tcp.states import State

from .harness import A_IP, A_IP6, B_IP, B_IP6, Net
from .util import drain, open_pair


def loaded(net: Net, client: Connection, size: int = 60_000) -> None:
    """Data in flight from the client, none of it acknowledged yet."""
    net.delay = 0.05
    client.send(net.now, b"x" * size)
    net.run(net.now + 0.001)
    assert client.snd.rtx.packets_out > 1


def too_big(net: Net, client: Connection, mtu: int, seq: int | None = None) -> bool:
    return net.a.on_icmp_error(net.now, *client.key, client.snd.snd_una if seq is None else seq,
                               errno.EMSGSIZE, False, mtu)


def test_in_window_packet_too_big_lowers_the_mss_and_resends_at_once(net: Net) -> None:
    _, client, server = open_pair(net)
    assert client.snd.mss == 1448 and client.tcp_info(net.now)["tcpi_pmtu"] == 1500
    loaded(net, client)
    before = net.a.counters["TcpRetransSegs"]
    sent = len(net.log)
    assert too_big(net, client, 1280)
    assert client.snd.mss == 1280 - 40 - 12 and client.snd.pmtu_cookie == 1280
    assert client.tcp_info(net.now)["tcpi_pmtu"] == 1280
    assert client.snd.ccs.ca_state == CA_LOSS
    net.flush()
    resent = [s.seg for s in net.log[sent:] if s.seg.payload]
    assert resent and all(len(s.payload) <= 1228 for s in resent)  # at once, same instant
    assert resent[0].seq == client.snd.snd_una
    assert net.a.counters["TcpRetransSegs"] > before
    net.run(net.now + 5)
    assert drain(server, net.now) == b"x" * 60_000
    assert all(len(s.seg.payload) <= 1228 for s in net.log[sent:] if s.src == A_IP)


def test_out_of_window_or_larger_changes_nothing(net: Net) -> None:
    _, client, _ = open_pair(net)
    loaded(net, client)
    assert too_big(net, client, 1280, seq=(client.snd.snd_nxt + 1000) & 0xFFFFFFFF)
    assert net.a.counters["TcpExtOutOfWindowIcmps"] == 1
    assert too_big(net, client, 9000)  # only lowers
    assert client.snd.mss == 1448 and net.a.path_mtu(client.remote_ip) == 1500


def test_min_pmtu_floor_and_soft_error(net: Net) -> None:
    _, client, _ = open_pair(net)
    loaded(net, client)
    too_big(net, client, 300)
    assert net.a.path_mtu(client.remote_ip) == 552  # net.ipv4.route.min_pmtu
    assert client.snd.mss == 552 - 40 - 12 and client.err_soft == errno.EMSGSIZE


def test_ipv6_below_1280_is_ignored_and_1280_accepted(net: Net) -> None:
    _, client, _ = open_pair(net, a_ip=A_IP6, b_ip=B_IP6)
    loaded(net, client)
    too_big(net, client, 1000)
    assert client.snd.mss == 1440 - 12
    too_big(net, client, 1280)
    assert client.snd.mss == 1280 - 60 - 12


def test_handshake_survives_packet_too_big() -> None:
    net = Net()
    net.b.listen(0.0, B_IP, 80, 4)
    client = net.a.connect(0.0, A_IP, B_IP, 80)
    assert too_big(net, client, 1280, seq=client.snd.iss)
    assert client.state == State.SYN_SENT  # frag needed never ends a handshake
    net.run(1.0)
    assert client.state == State.ESTABLISHED and client.snd.mss == 1280 - 40 - 12


def test_learned_mtu_expires_and_the_mss_comes_back() -> None:
    net = Net()
    net.config_a.mtu_expires = 600
    _, client, _ = open_pair(net)
    loaded(net, client)
    too_big(net, client, 1280)
    net.run(net.now + 599)
    assert client.snd.mss == 1228 and client.state == State.ESTABLISHED
    net.run(net.now + 2)
    assert net.a.path_mtu(client.remote_ip) == 1500 and len(net.a.pmtu) == 0
    assert client.snd.mss == 1448 and client.snd.pmtu_cookie == 1500


def test_cache_is_bounded() -> None:
    cache = PathMtuCache(StackConfig(), 1500)
    for i in range(PMTU_ENTRIES_MAX + 10):
        cache.update(float(i), i.to_bytes(4, "big"), 1400)
    assert len(cache) == PMTU_ENTRIES_MAX
    assert cache.get((0).to_bytes(4, "big")) == 1500  # the oldest forgotten
    assert cache.deadline == 10.0 + 600


# ------------------------------------------------------------------ the trio stack


@pytest.mark.parametrize("v6", [False, True])
async def test_download_over_a_1280_path(autojump_clock: MockClock, v6: bool) -> None:
    """The sender's link drops what exceeds 1280 and answers with the ICMP error, as a
    router would; the IP layer hands it to TCP, the MSS drops, every byte arrives."""
    ca, cb = Counters(), Counters()
    la, lb = memory_link_pair(counters=(ca, cb))
    la = ImpairedLink(la, None, ImpairmentSpec(pmtu=1280), counters=ca)
    a = Stack(la, StackConfig(), ca, socket.inet_aton("10.77.0.1"), seed=1,
              local_addr6=socket.inet_pton(socket.AF_INET6, "fd77::1"))
    b = Stack(lb, StackConfig(), cb, socket.inet_aton("10.77.0.2"), seed=2,
              local_addr6=socket.inet_pton(socket.AF_INET6, "fd77::2"))
    data = bytes(range(256)) * 4096  # 1 MB
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            [listener] = await open_tcp_listeners(b, 5000, host="::")
            client = await open_tcp_stream(a, "fd77::2" if v6 else "10.77.0.2", 5000)
            server = await listener.accept()

            async def send() -> None:
                await client.send_all(data)
                await client.send_eof()

            nursery.start_soon(send)
            got = bytearray()
            while chunk := await server.receive_some():
                got += chunk
            nursery.cancel_scope.cancel()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    conn = client.connection
    assert conn.snd.mss == 1280 - (60 if v6 else 40) - 12
    assert conn.tcp_info(trio.current_time())["tcpi_pmtu"] == 1280
    assert ca["UstcpImpairPmtuDrops"] >= 1
    assert ca["Icmp6InPktTooBigs" if v6 else "IcmpInDestUnreachs"] == ca["UstcpImpairPmtuDrops"]
