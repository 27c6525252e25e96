"""Demo ``ipv6``: the same stack over IPv6: ping -6, curl -6, the MSS 20 bytes smaller."""

from __future__ import annotations

from pathlib import Path

from ustcp.defaults import DEFAULT_ADDR6
from ustcp.demo.netns import Daemon, Namespace
from ustcp.demo.story import Story, connections

SIZE = 200_000
MSS_1440 = bytes((2, 4)) + (1500 - 60).to_bytes(2, "big")  # kind 2, length 4 (RFC 9293)

STORY = f"""
The daemon is dual-stack by default: besides 10.77.0.2 it answers on {DEFAULT_ADDR6}, with
the kernel's side of the TUN device at fd77::1/64. IPv6 changes the network layer only: a
40-byte header without a checksum (TCP's checksum covers a pseudo-header of the 128-bit
addresses), extension headers walked before the upper layer, ICMPv6 for echo and errors.
TCP itself is the same engine; it learns from its host what the path allows, and over IPv6
that is 20 bytes less: MSS 1500 - 40 - 20 = 1440 instead of 1460. Whatever the kernel says to
a new IPv6 link on its own (router solicitations, MLD reports, duplicate address detection)
the stack counts and drops. Here the kernel pings the stack over IPv6 and downloads
{SIZE:,} bytes with curl -6.
"""


def run(story: Story, workdir: Path) -> None:
    story.para(STORY)
    with Namespace("ipv6") as ns:
        daemon = Daemon(ns, workdir, "ipv6", apps=["http:80"])
        try:
            daemon.nstat_reset()
            story.command(f"ping -6 -c 2 {DEFAULT_ADDR6}")
            ping = ns.run(["ping", "-6", "-c", "2", "-W", "2", DEFAULT_ADDR6], check=False)
            story.block(ping.stdout.strip())
            url = f"http://[{DEFAULT_ADDR6}]/bytes/{SIZE}"
            story.command(f"curl -6 -o /dev/null {url}")
            curl = ns.run(["curl", "-6", "-s", "-o", "/dev/null", "-w",
                           "%{http_code} %{size_download} bytes from %{remote_ip}", url],
                          check=False)
            story.block(curl.stdout)
            rows = daemon.ss(state="listening", port=80)
            story.ss(rows, "ustcp ss --state listening --port 80   # one listener per family")
            deltas = daemon.nstat_deltas()
        finally:
            daemon.stop()
        convs = connections(str(daemon.pcap), ":80")
        story.ladders(str(daemon.pcap), convs[:1], max_arrows=8)
        story.counters(deltas, ["Ip6InReceives", "Ip6OutRequests", "Icmp6InEchos",
                                "Icmp6OutEchoReplies", "Icmp6InRouterSolicits",
                                "Icmp6InMLDv2Reports", "TcpPassiveOpens"])
    story.section("checks")
    story.check(" 0% packet loss" in ping.stdout and deltas.get("Icmp6InEchos") == 2
                and deltas.get("Icmp6OutEchoReplies") == 2,
                "ping -6: two echo requests, two replies (Icmp6InEchos, Icmp6OutEchoReplies)")
    story.check(curl.stdout == f"200 {SIZE} bytes from {DEFAULT_ADDR6}",
                f"curl -6 downloaded {SIZE:,} bytes from {DEFAULT_ADDR6}")
    listening = {row["local"] for row in rows}
    story.check({"10.77.0.2:80", f"[{DEFAULT_ADDR6}]:80"} <= listening,
                "ustcp ss shows a listener on each family")
    synack = next((s for s in convs[0].segments if s.flags & 0x12 == 0x12), None) \
        if convs else None
    story.check(synack is not None and MSS_1440 in synack.options,
                "the stack's SYN-ACK announced MSS 1440 (1500 less 40 + 20 bytes)")
