"""``--pcap FILE`` is readable by tcpdump while the daemon runs; ``--pcap -`` streams to
stdout for ``| tcpdump -r -`` (the banner goes to stderr), and the daemon outlives a reader
that leaves."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.kernel.nsutil import ADDR, ROOT, daemon, in_ns, interrupt, netns, ustcp_cmd

pytestmark = pytest.mark.kernel

READY_TIMEOUT = 20.0


@pytest.fixture(autouse=True)
def _needs_tcpdump() -> None:
    if shutil.which("tcpdump") is None:
        pytest.skip("needs tcpdump")


def _curl_ok(ns: str) -> bool:
    done = in_ns(ns, "curl", "-s", "-o", "/dev/null", "-m", "5", f"http://{ADDR}/", timeout=15)
    return done.returncode == 0


def test_tcpdump_reads_the_capture_while_the_daemon_runs(tmp_path: Path) -> None:
    pcap = tmp_path / "live.pcap"
    with netns() as ns, daemon(ns, tmp_path / "serve.log", "--pcap", str(pcap)) as d:
        assert _curl_ok(ns)
        read = subprocess.run(["tcpdump", "-r", str(pcap), "-nn", "tcp port 80"],
                              capture_output=True, timeout=30)
        assert d.proc.poll() is None  # still running: the capture was read live
    text = read.stdout.decode()
    assert f"> {ADDR}.80: Flags [S]" in text and f"{ADDR}.80 > " in text, read.stderr


def test_pcap_to_stdout_streams_into_tcpdump(tmp_path: Path) -> None:
    with netns() as ns, (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen(["ip", "netns", "exec", ns,
                                  *ustcp_cmd("serve", "--pcap", "-")],
                                 stdout=subprocess.PIPE, stderr=log, cwd=ROOT)
        assert serve.stdout is not None
        tcpdump = subprocess.Popen(["tcpdump", "-r", "-", "-nn", "-c", "2", "tcp port 80"],
                                   stdin=serve.stdout, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        serve.stdout.close()  # tcpdump holds the pipe now
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while not _curl_ok(ns):
                assert time.monotonic() < deadline and serve.poll() is None
                time.sleep(0.2)
            out, err = tcpdump.communicate(timeout=30)
            assert _curl_ok(ns) and serve.poll() is None  # the reader left; serving goes on
        finally:
            tcpdump.kill()
            status = interrupt(serve)
    lines = out.decode().splitlines()
    assert len(lines) == 2 and all(f"{ADDR}.80" in line for line in lines), err
    banner = (tmp_path / "serve.log").read_text()
    assert "serving on 10.77.0.2" in banner and "pcap_stopped" in banner
    assert status == 0
