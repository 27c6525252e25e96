"""Demo ``pmtu``: a router with a 1280-byte onward link; the kernel's ICMP errors teach the
stack the path MTU and refuse its connections at once."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from ustcp.demo.netns import STACK_ADDR, Daemon, Namespace
from ustcp.demo.story import Story, connections

LAB = 7070
SIZE = 12_000_000
CLIENT, ROUTER = "10.88.0.2", "10.88.0.1"
NOWHERE = "10.99.0.1"  # the router has no route there
WATCH = 20.0  # s: the longest the demo waits to see the lowered MSS

STORY = f"""
Between the stack and the client sits a router: the kernel of the daemon's namespace,
forwarding from the TUN device onto a veth whose near end has MTU 1280; the client's end
keeps 1500, so its SYN announces MSS 1460. The stack's first full-sized segments carry DF
and are too big for the onward link: the router drops them and sends ICMP "fragmentation
needed" with the next-hop MTU 1280. The stack checks that the ICMP quotes a segment in its
window, lowers the path MTU for the client's address, shrinks the MSS to 1280 - 40 - 12 =
1228 and resends at once what no longer fits. The client downloads {SIZE:,} bytes. Then
the stack dials {NOWHERE} (the router has no route: ICMP network unreachable) and a port the
client rejects (ICMP port unreachable): connect() fails at once with ENETUNREACH and
ECONNREFUSED, not after two minutes of SYN retransmissions.
"""


def _link(router: Namespace, client: Namespace) -> None:
    for ns, argv in (
            (router, ["ip", "link", "add", "vr", "type", "veth", "peer", "name", "vc",
                      "netns", client.name]),
            (router, ["ip", "link", "set", "vr", "mtu", "1280", "up"]),
            (router, ["ip", "addr", "add", f"{ROUTER}/24", "dev", "vr"]),
            (router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]),
            (client, ["ip", "link", "set", "vc", "up"]),
            (client, ["ip", "addr", "add", f"{CLIENT}/24", "dev", "vc"]),
            (client, ["ip", "route", "add", "default", "via", ROUTER]),
            (client, ["nft", "add table ip t; add chain ip t in { type filter hook input "
                      "priority 0; }; add rule ip t in tcp dport 81 reject"])):
        ns.run(argv, check=True)


def _watch_mss(daemon: Daemon) -> dict[str, Any] | None:
    """The download's connection in ustcp ss once its path MTU fell."""
    deadline = time.monotonic() + WATCH
    while time.monotonic() < deadline:
        rows = [r for r in daemon.ss(state="established", port=80)
                if str(r["peer"]).startswith(CLIENT) and r["info"]["pmtu"] < 1500]
        if rows:
            return rows[0]
        time.sleep(0.05)
    return None


def run(story: Story, workdir: Path) -> None:
    story.para(STORY)
    with Namespace("pmtu") as router, Namespace("pmtuc") as client:
        _link(router, client)
        daemon = Daemon(router, workdir, "pmtu", apps=["http:80", f"lab:{LAB}"])
        try:
            daemon.nstat_reset()
            story.step(f"the client downloads {SIZE:,} bytes through the router "
                       "(curl --limit-rate 4M: the windows fill and ss can watch the connection)")
            curl = client.spawn(["curl", "-s", "-o", "/dev/null", "--limit-rate", "4M",
                                 "-m", "40", "-w", "%{http_code} %{size_download}",
                                 f"http://{STACK_ADDR}/bytes/{SIZE}"],
                                stdout=subprocess.PIPE)
            after = _watch_mss(daemon)
            if after is not None:
                story.ss([after], "ustcp ss -ti   # after the router's ICMP")
            out, _ = curl.communicate(timeout=60)
            fetched = out.decode()
            story.block(f"curl: {fetched}")
            story.step(f"the stack dials {NOWHERE}:80 and {CLIENT}:81")
            replies = router.peer("lab", STACK_ADDR, str(LAB), "0",
                                  f"dial {NOWHERE} 80 0; dial {CLIENT} 81 0",
                                  timeout=30)["replies"]
            story.block("\n".join(replies))
            deltas = daemon.nstat_deltas()
            knobs = daemon.sysctl("min_pmtu", "mtu_expires")
            events = daemon.events("mtu_reduced")
        finally:
            daemon.stop()
        if events:
            story.block(f"daemon log: mtu_reduced conn={events[0].get('conn')} "
                        f"pmtu={events[0].get('pmtu')} was={events[0].get('was')}")
        convs = connections(str(daemon.pcap), ":80")
        story.ladders(str(daemon.pcap), convs[:1], max_arrows=14)
        story.counters(deltas, ["IcmpInDestUnreachs", "TcpRetransSegs",
                                "TcpExtOutOfWindowIcmps", "TcpAttemptFails"])
        story.knobs(knobs)
    story.section("checks")
    story.check(bool(events) and events[0].get("was") == 1500 and events[0].get("pmtu") == 1280,
                "the connection started at path MTU 1500 (MSS 1448: the client's 1460 less "
                "12 bytes of timestamps); the ICMP brought it to 1280 (daemon log)")
    story.check(after is not None and after["info"]["mss"] == 1228
                and after["info"]["pmtu"] == 1280,
                "after the router's ICMP: pmtu 1280, MSS 1228 (ustcp ss)")
    story.check(fetched == f"200 {SIZE}", f"the client got all {SIZE:,} bytes")
    story.check(len(replies) == 2 and replies[0].startswith("error ENETUNREACH")
                and replies[1].startswith("error ECONNREFUSED"),
                "the dials failed at once: ENETUNREACH, ECONNREFUSED (the router's and the "
                "client's ICMP)")
    story.check(deltas.get("IcmpInDestUnreachs", 0) >= 3,
                "IcmpInDestUnreachs counted the fragmentation needed and both refusals")
