"""Demo ``fastopen``: TCP Fast Open (RFC 7413), the kernel's curl as the client."""

from __future__ import annotations

from pathlib import Path

from ustcp.demo.netns import KERNEL_ADDR, STACK_ADDR, Daemon, Namespace
from ustcp.demo.story import Story, connections
from ustcp.obs import ladder

PORT = 80
KEY = "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4"

STORY = """
A TCP handshake costs a round trip before the first byte of a request can travel. Fast
Open (RFC 7413) lets a returning client put its request in the SYN itself. The first time,
the client asks for a cookie (an empty Fast Open option in its SYN) and the server answers
with one on the SYN-ACK of an ordinary handshake: a keyed hash (SipHash) of the client's
address that only the server can make. The client keeps it. Next time its SYN carries the
cookie and the request; the server checks the cookie, creates the connection at once, hands
the request to the application before the handshake is over, and its SYN-ACK acknowledges
the data. A wrong or missing cookie only costs the ordinary handshake: the data is then not
acknowledged and the client sends it again. Here the stack is the server
(net.ipv4.tcp_fastopen=0x403: server, client, every listener) and the kernel's curl, with
--tcp-fastopen, the client.
"""


def run(story: Story, workdir: Path) -> None:
    story.para(STORY)
    with Namespace("fastopen") as ns:
        daemon = Daemon(ns, workdir, "fastopen", apps=[f"http:{PORT}"],
                        sysctls={"tcp_fastopen": 0x403, "tcp_fastopen_key": KEY})
        try:
            ns.run(["sysctl", "-q", "-w", "net.ipv4.tcp_fastopen=1"], check=True)
            ns.run(["ip", "tcp_metrics", "flush", "all"])
            active_before = ns.kernel_counter("TcpExtTCPFastOpenActive")
            daemon.nstat_reset()
            codes = []
            for attempt in ("asks for a cookie", "sends its request in the SYN"):
                story.step(f"curl --tcp-fastopen http://{STACK_ADDR}/ ({attempt})")
                done = ns.run(["curl", "-s", "-S", "-m", "20", "--tcp-fastopen", "-o",
                               "/dev/null", "-w", "%{http_code}",
                               f"http://{STACK_ADDR}:{PORT}/"], check=True)
                codes.append(done.stdout)
            metrics = ns.run(["ip", "tcp_metrics", "show", STACK_ADDR]).stdout
            story.command(f"ip tcp_metrics show {STACK_ADDR}   # the kernel keeps the cookie")
            story.block(metrics)
            active = ns.kernel_counter("TcpExtTCPFastOpenActive") - active_before
            deltas = daemon.nstat_deltas()
            knobs = daemon.sysctl("tcp_fastopen", "tcp_fastopen_key")
        finally:
            daemon.stop()
        story.section("the two connections on the wire")
        convs = connections(str(daemon.pcap), f":{PORT}")
        story.ladders(str(daemon.pcap), convs)
        story.section("counters")
        story.counters(deltas, ["TcpExtTCPFastOpenCookieReqd", "TcpExtTCPFastOpenPassive",
                                "TcpExtTCPFastOpenPassiveFail", "TcpPassiveOpens"])
        story.block(f"kernel ({KERNEL_ADDR}): TcpExtTCPFastOpenActive +{active}")
        story.knobs(knobs)
        story.section("checks")
        story.check(codes == ["200", "200"], "both requests got 200 OK")
        first = convs[0].segments if convs else []
        second = convs[1].segments if len(convs) > 1 else []
        story.check(bool(first) and first[0].flags & ladder.SYN != 0
                    and first[0].length == 0,
                    "the first SYN carries no data (a cookie request)")
        syn = second[0] if second else None
        synack = next((s for s in second if s.flags & ladder.SYN and s.flags & ladder.ACK),
                      None)
        story.check(syn is not None and syn.length > 0 and synack is not None
                    and synack.ack == (syn.seq + 1 + syn.length) & 0xFFFFFFFF,
                    "the second SYN carries the request and the SYN-ACK acknowledges it")
        story.check(deltas.get("TcpExtTCPFastOpenCookieReqd") == 1
                    and deltas.get("TcpExtTCPFastOpenPassive") == 1,
                    "the stack counted one cookie request and one Fast Open connection")
        story.check(active == 1, "the kernel counted one Fast Open (TcpExtTCPFastOpenActive)")
