"""CPU seconds one connection spends on out-of-order one-byte segments with holes.

Run: ``.venv/bin/python tools/ofo_stall.py [N ...] [--order ascending|descending|random]
[--rmem BYTES]``. Two engines on virtual time (tests/engine/harness.py) open a connection;
then N segments of one byte each, with a one-byte hole before every one, arrive at the
server (the issue 13 attack: every segment opens a new out-of-order range). The figure is
the process CPU time of those N arrivals, ACKs with SACK blocks included: while it runs,
the daemon serves nobody else (one thread), so it is the stall every other connection sees.
Then the holes are filled and the delivered bytes checked against what was sent.

``--rmem`` sets tcp_rmem[1] and [2] (the receive buffer, hence the window and the memory
the out-of-order queue may hold); the default leaves room for 100,000 holes in the window.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the engine-test harness

from tests.engine.harness import A_IP, B_IP, Net
from tests.engine.util import one_byte, open_pair, transfer
from ustcp.config import StackConfig
from ustcp.obs.log import configure_logging


def run(holes: int, order: str, rmem: int) -> tuple[float, int, dict[str, int]]:
    config = StackConfig(tcp_rmem=(4096, rmem, rmem))
    net = Net(config_a=config, config_b=config)
    _, client, server = open_pair(net)
    data = random.Random(holes).randbytes(2 * holes)
    offsets = list(range(1, 2 * holes, 2))  # the odd bytes; the even ones are the holes
    if order == "descending":
        offsets.reverse()
    elif order == "random":
        random.Random(1).shuffle(offsets)
    segs = [one_byte(client, net.now, off, data[off:off + 1]) for off in offsets]
    start = time.process_time()
    for seg in segs:
        net.b.on_segment(net.now, A_IP, B_IP, seg)
    net.b.take_output()
    cpu = time.process_time() - start
    # Fill every hole from the client's own send path and check what the server delivers.
    received = transfer(net, client, server, data, step=0.05)
    intact = hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    wanted = ("TcpExtTCPOFOQueue", "TcpExtTCPOFODrop", "TcpExtTCPOFOMerge", "TcpExtOfoPruned")
    return cpu, int(intact), {name: net.b.counters[name] for name in wanted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("holes", nargs="*", type=int, default=[1000, 2000, 5000, 100000])
    parser.add_argument("--order", choices=("ascending", "descending", "random"),
                        default="ascending")
    parser.add_argument("--rmem", type=int, default=6291456)
    args = parser.parse_args()
    configure_logging(level="warning")  # as the daemon runs by default
    for n in args.holes:
        cpu, intact, counts = run(n, args.order, args.rmem)
        figures = " ".join(f"{k.removeprefix('TcpExt')}={v}" for k, v in counts.items())
        print(f"{n:>7} holes ({args.order}): {cpu:8.3f} s CPU  intact={bool(intact)}  {figures}",
              flush=True)


if __name__ == "__main__":
    main()
