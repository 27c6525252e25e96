"""The live view's app (``ustcp/obs/web.py``) over two stacks on virtual time: what a
snapshot holds, the ladder of a connection, the bound on event streams and on the ring."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from trio.testing import MockClock

from ustcp.api import TCPStream, open_tcp_listeners, open_tcp_stream, serve_listeners
from ustcp.link.ring import RingTap
from ustcp.obs import web
from ustcp.stack import Stack

from .test_api_pair import A_ADDR, B_ADDR, stacks

WEB = 8080


@asynccontextmanager
async def live_view(ring_size: int = 4096) -> AsyncIterator[tuple[Stack, Stack, RingTap]]:
    """Stack A (the browser's side) and stack B serving the live view on WEB."""
    async with stacks(wrap_b=lambda lb: RingTap(lb, size=ring_size)) as (a, b):
        ring = b.link
        assert isinstance(ring, RingTap)
        async with trio.open_nursery() as nursery:
            listeners = await open_tcp_listeners(b, WEB, host=B_ADDR)
            nursery.start_soon(serve_listeners, web.handler(b, ring), listeners)
            yield a, b, ring
            nursery.cancel_scope.cancel()


async def get(a: Stack, path: str, *, until: bytes = b"") -> tuple[TCPStream, bytes]:
    """GET ``path`` on a new connection; what arrived until EOF or ``until`` was seen."""
    stream = await open_tcp_stream(a, B_ADDR, WEB)
    await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                          .encode())
    data = b""
    while (not until or until not in data) and (chunk := await stream.receive_some()):
        data += chunk
    return stream, data


def body(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]


async def test_snapshot_lists_listeners_and_connections(autojump_clock: MockClock) -> None:
    async with live_view() as (a, _b, _ring):
        stream, response = await get(a, "/snapshot")
        assert response.startswith(b"HTTP/1.1 200")
        snap = json.loads(body(response))
        assert {"local": f"{B_ADDR}:{WEB}", "syn_queue": 0, "accept_queue": 0,
                "backlog": 4096} in snap["listeners"]
        [conn] = snap["connections"]
        assert conn["name"] == f"{B_ADDR}:{WEB}>{A_ADDR}:{stream.local_address[1]}"
        assert conn["state"] == "ESTAB" and conn["cwnd"] == 10
        assert {"ssthresh", "srtt_ms", "rto_ms", "snd_wnd", "rcv_wnd"} <= set(conn)
        assert snap["counters"]["TcpPassiveOpens"] == 1


async def test_ladder_of_a_connection_and_404_for_none(autojump_clock: MockClock) -> None:
    async with live_view() as (a, _b, _ring):
        first, _ = await get(a, "/snapshot")
        name = f"{B_ADDR}:{WEB}>{A_ADDR}:{first.local_address[1]}"
        _, response = await get(a, f"/ladder?conn={name.replace('>', '%3E')}")
        assert response.startswith(b"HTTP/1.1 200") and b"image/svg+xml" in response
        svg = body(response).decode()
        assert "SYN seq=0" in svg and svg.count('class="arrow"') >= 3
        _, missing = await get(a, "/ladder?conn=10.9.9.9:1%3E10.9.9.8:2")
        assert missing.startswith(b"HTTP/1.1 404")
        _, wrong = await get(a, "/nothing")
        assert wrong.startswith(b"HTTP/1.1 404")


async def test_event_streams_are_bounded(autojump_clock: MockClock) -> None:
    async with live_view() as (a, _b, _ring):
        streams = []
        for _ in range(web.MAX_VIEWERS):
            stream, response = await get(a, "/events", until=b"\n\n")
            assert b"text/event-stream" in response
            assert json.loads(body(response).split(b"data: ")[1].split(b"\n\n")[0])["t"] >= 0
            streams.append(stream)
        _, refused = await get(a, "/events")
        assert refused.startswith(b"HTTP/1.1 503")
        await streams[0].aclose()
        await trio.sleep(1)
        _, again = await get(a, "/events", until=b"\n\n")
        assert b"text/event-stream" in again


async def test_ring_keeps_only_the_last_frames(autojump_clock: MockClock) -> None:
    async with live_view(ring_size=8) as (a, _b, ring):
        for _ in range(3):
            await get(a, "/snapshot")
        assert len(ring.frames) == 8
        times = [t for t, _ in ring.frames]
        assert times == sorted(times)
