"""Demo ``tw-recycle``: tcp_tw_recycle's per-host PAWS turning away a client behind a NAT.

Three namespaces: the router (the daemon's own, where its TUN device is, with nftables
masquerading everything that leaves towards the stack) and two clients behind it on their
own links. The stack sees both clients as 10.77.0.1; their kernels keep timestamp clocks
with different offsets (Linux's per address pair offset, RFC 7323 5.4).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ustcp.demo.netns import KERNEL_ADDR, STACK_ADDR, Daemon, Namespace
from ustcp.demo.relay import wait_for, watched
from ustcp.demo.story import Story, connections
from ustcp.obs import ladder
from ustcp.tcp.seq import seq_diff

HTTP = 80
LANS = {"A": "192.168.71", "B": "192.168.72"}  # one /24 per client: router .1, client .2
CLIENT_PORT = 40000  # each client's local port, so its timestamp offset is the same each time

STORY = """
Linux before 4.12 had tcp_tw_recycle: with timestamps, a connection closed first by this
host left TIME_WAIT after 3.5 RTO instead of 60 s, and to keep old duplicates out anyway
Linux remembered the last TSval of each peer host and checked every new SYN from that host
against it (per-host PAWS): a SYN whose TSval is behind the remembered one is taken for an
old duplicate and dropped without an answer (PAWSPassive). That assumes one host, one
clock. Behind a NAT many hosts share one address, each with its own clock, and since Linux
4.10 every connection's TSval carries a random offset (RFC 7323 5.4) even from one host.
The client whose clock is behind cannot connect for a minute after another client's
connection: its SYNs vanish. Linux removed the knob in 4.12; ustcp keeps it (off by
default, with a warning) to show this. Here two kernel clients sit behind a router that
masquerades them as 10.77.0.1; each makes an HTTP/1.0 request (the stack closes first,
entering TIME_WAIT), with tcp_tw_recycle = 0 and then 1, the client with the clock ahead
going first.
"""


def _link_client(router: Namespace, client: Namespace, name: str, net: str) -> None:
    """A veth pair: ``lanX`` (net.1) in the router, ``eth0`` (net.2) in the client."""
    router.run(["ip", "link", "add", f"lan{name}", "type", "veth", "peer", "name", "eth0",
                "netns", client.name], check=True)
    router.run(["ip", "addr", "add", f"{net}.1/24", "dev", f"lan{name}"], check=True)
    router.run(["ip", "link", "set", f"lan{name}", "up"], check=True)
    client.run(["ip", "addr", "add", f"{net}.2/24", "dev", "eth0"], check=True)
    client.run(["ip", "link", "set", "eth0", "up"], check=True)
    client.run(["ip", "route", "add", "default", "via", f"{net}.1"], check=True)


def _masquerade(router: Namespace, story: Story) -> None:
    rules = ('add table ip nat; add chain ip nat post { type nat hook postrouting '
             'priority 100; }; add rule ip nat post oifname "ustcp0" masquerade')
    story.command(f"nft '{rules}'   # in the router")
    router.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
    router.run(["nft", rules], check=True)


def _request(client: Namespace) -> dict[str, Any]:
    result: dict[str, Any] = client.peer("request-from", STACK_ADDR, str(HTTP),
                                         str(CLIENT_PORT), "1.5")
    return result


def _syn_tsvals(pcap: Path) -> list[tuple[float, int]]:
    """Time and TSval of the first SYN of each connection to the stack's HTTP port."""
    found = []
    for conv in connections(str(pcap), f":{HTTP}"):
        syn = conv.segments[0]
        text = ladder.format_options(syn.options, 0, ts_values=True)
        if "TS val " in text:
            found.append((syn.t, int(text.split("TS val ")[1].split()[0])))
    return found


def _phase(story: Story, workdir: Path, router: Namespace, clients: list[tuple[str, Namespace]],
           recycle: int) -> tuple[list[dict[str, Any]], dict[str, int], Daemon]:
    daemon = Daemon(router, workdir, f"tw-recycle-{recycle}", apps=[f"http:{HTTP}"],
                    sysctls={"tcp_tw_recycle": recycle})
    with watched(daemon) as tally:
        results = []
        for name, client in clients:
            story.step(f"client {name} ({LANS[name]}.2, seen as {KERNEL_ADDR}): one request")
            results.append(_request(client))
            story.block(json.dumps(results[-1]))
            if not results[-1]["ok"]:
                continue
            wait_for("the stack's TIME-WAIT", tally.reached("UstcpTimeWaitEntered", len(results)))
            if recycle:
                wait_for("the short TIME-WAIT to end", tally.reached("TcpExtTW", 1))
        deltas = tally.poll()
    story.counters(deltas, ["TcpPassiveOpens", "UstcpTimeWaitEntered", "TcpExtTW",
                            "TcpExtPAWSPassive"])
    return results, deltas, daemon


def run(story: Story, workdir: Path) -> None:
    story.para(STORY)
    with Namespace("twrecycle") as router, Namespace("twrA") as lan_a, \
            Namespace("twrB") as lan_b:
        _link_client(router, lan_a, "A", LANS["A"])
        _link_client(router, lan_b, "B", LANS["B"])
        _masquerade(router, story)
        story.section("tcp_tw_recycle = 0 (the default, and the only choice since Linux 4.12)")
        off, deltas_off, _ = _phase(story, workdir, router, [("A", lan_a), ("B", lan_b)], 0)
        stamps = _syn_tsvals(workdir / "tw-recycle-0.pcap")
        story.step("the SYNs' TSvals: the two clients' clocks")
        story.block("\n".join(f"client {n}: TSval {ts} at +{t - stamps[0][0]:.3f} s"
                              for n, (t, ts) in zip("AB", stamps, strict=False)))
        order = [("A", lan_a), ("B", lan_b)]
        if len(stamps) == 2:
            (t_a, ts_a), (t_b, ts_b) = stamps
            # B's clock when A sent its SYN; the one ahead goes first
            if seq_diff(ts_a, (ts_b - round((t_b - t_a) * 1000)) & 0xFFFFFFFF) < 0:
                order.reverse()
        story.section(f"tcp_tw_recycle = 1: client {order[0][0]} (clock ahead) first, then "
                      f"client {order[1][0]}")
        on, deltas_on, daemon = _phase(story, workdir, router, order, 1)
        convs = connections(str(daemon.pcap), f":{HTTP}")
        story.step("on the wire: the first client's connection, then the second's SYNs, "
                   "unanswered (TS values shown)")
        story.ladders(str(daemon.pcap), convs, ts_values=True, max_arrows=12)
        warned = [e for e in daemon.events() if e.get("event") == "tcp_tw_recycle"]
    story.knobs({"tcp_tw_recycle": "0, then 1", "tcp_timestamps": 1})
    story.section("checks")
    story.check(len(stamps) == 2 and all(r["ok"] == 1 for r in off)
                and not deltas_off.get("TcpExtPAWSPassive"),
                "with 0, both clients behind the NAT connected")
    story.check(on[0]["ok"] == 1 and deltas_on.get("TcpExtTW", 0) >= 1,
                f"with 1, client {order[0][0]} connected, and the stack's TIME-WAIT ended "
                "after 3.5 RTO, not 60 s")
    story.check(on[1]["ok"] == 0 and deltas_on.get("TcpExtPAWSPassive", 0) >= 1,
                f"with 1, client {order[1][0]}'s SYNs were dropped by per-host PAWS "
                "(TcpExtPAWSPassive)")
    second = convs[-1].segments if convs else []
    story.check(len(convs) == 2 and bool(second) and all(s.src == KERNEL_ADDR for s in second),
                "the stack never answered them: the capture has only the client's SYNs")
    story.check(bool(warned), "the daemon warned that Linux removed tcp_tw_recycle")
