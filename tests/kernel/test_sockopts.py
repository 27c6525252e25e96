"""Socket options through a TCPStream against a kernel peer: the program of
docs/socket-options.md, run in a namespace of its own, and the lines it prints checked."""

from __future__ import annotations

import re
import sys

import pytest

from .nsutil import ROOT, in_ns, kernel_unavailable, netns

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(kernel_unavailable() is not None,
                                 reason=kernel_unavailable() or "")]


def docs_program() -> str:
    text = (ROOT / "docs" / "socket-options.md").read_text()
    match = re.search(r"^```python\n(.*?)^```$", text, re.S | re.M)
    assert match is not None
    return match.group(1)


def test_stream_options_against_a_kernel_peer() -> None:
    with netns() as ns:
        proc = in_ns(ns, sys.executable, "-c", docs_program(), timeout=90)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()[-3000:]
    probes = re.search(r"keepalive probes (\d+) answered (\d+)", out)
    assert probes is not None and int(probes[1]) >= 2 and int(probes[2]) >= 2, out
    info = re.search(r"tcp_info (\d+) bytes: state (\d+) snd_mss (\d+) rtt (\d+) us "
                     r"rto (\d+) us", out)
    assert info is not None, out
    size, state, mss, rtt, rto = map(int, info.groups())
    assert (size, state, mss) == (280, 1, 1448)  # ESTABLISHED; 1460 less the timestamps
    assert 0 < rtt < 1_000_000 and 200_000 <= rto <= 1_000_000
    assert "nodelay 1 keepidle 1" in out
    assert "kernel peer: connection reset by the linger-0 close" in out
