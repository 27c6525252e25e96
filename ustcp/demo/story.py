"""How a demo tells its story: narration, commands, diagrams, tables and checked promises.

Each promise a demo makes is a :meth:`Story.check`: it prints ``[ok]`` or ``[FAILED]`` and the
demo's exit status is 0 only when every check held.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterable
from typing import Any, TextIO

from ustcp.obs import ladder
from ustcp.obs.ss import Row, format_table
from ustcp.obs.sysctl import full_name

WIDTH = 92


def _sysctl_path(name: str) -> str:
    """Where Linux keeps a knob: ``net.ipv4.tcp_syncookies``, ``net.core.somaxconn``,
    ``net.ipv4.route.min_pmtu``."""
    return full_name(name)


def _matches(endpoint: str, wanted: str) -> bool:
    ip, _, port = endpoint.rpartition(":")
    want_ip, _, want_port = wanted.rpartition(":")
    return (not want_ip or ip == want_ip) and (not want_port or port == want_port)


def connections(path: str, endpoint: str) -> list[ladder.Conversation]:
    """The connections in the capture at ``path`` with ``endpoint`` at either end:
    ``10.77.0.2:80``, ``:80`` (any address) or ``10.77.0.1:`` (any port)."""
    return [conv for conv in ladder.conversations(ladder.read_pcap(path))
            if _matches(conv.client, endpoint) or _matches(conv.server, endpoint)]


class Story:
    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.passed: list[str] = []
        self.failed: list[str] = []
        self.drawn: list[ladder.Ladder] = []  # every ladder shown, for --keep's SVG

    def _print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def title(self, text: str) -> None:
        self._print(f"\n{'=' * WIDTH}\n{text}\n{'=' * WIDTH}")

    def section(self, text: str) -> None:
        self._print(f"\n--- {text} " + "-" * max(0, WIDTH - len(text) - 5))

    def para(self, text: str) -> None:
        self._print(textwrap.fill(" ".join(text.split()), WIDTH))

    def step(self, text: str) -> None:
        self._print(f"==> {text}")

    def block(self, text: str) -> None:
        self._print(textwrap.indent(text.rstrip("\n"), "    ", lambda line: True))

    def command(self, text: str) -> None:
        self._print(f"$ {text}")

    def knobs(self, knobs: dict[str, Any]) -> None:
        """The knobs involved, by their Linux names, as the daemon had them."""
        self.section("knobs")
        for name, value in knobs.items():
            shown = " ".join(map(str, value)) if isinstance(value, list | tuple) else value
            self._print(f"    {_sysctl_path(name)} = {shown}")

    def ss(self, rows: list[Row], caption: str) -> None:
        self.command(caption)
        self.block(format_table(rows) if rows else "(no sockets)\n")

    def counters(self, deltas: dict[str, int], names: Iterable[str],
                 when: str = "during the demo") -> None:
        """The named counters' increments (``nstat`` deltas), zero ones included."""
        self.command(f"ustcp nstat   # increments {when}")
        for name in names:
            self._print(f"    {name:<32}{deltas.get(name, 0):>10}")

    def ladders(self, path: str, convs: list[ladder.Conversation], *,
                max_arrows: int | None = 24, ts_values: bool = False,
                absolute: bool = False) -> None:
        """The ladder diagrams of ``convs`` (connections of the capture at ``path``)."""
        self.command(f"ustcp ladder {path}" + (f" --max {max_arrows}" if max_arrows else "")
                     + (" --ts" if ts_values else "") + (" -S" if absolute else ""))
        if not convs:
            self.block("(no such connection in the capture)")
        for conv in convs:
            start = conv.segments[0].t - convs[0].segments[0].t
            self._print(f"    connection {conv.client} > {conv.server}, "
                        f"{len(conv.segments)} segments"
                        + (f", {start:.3f} s after the first" if start else ""))
            self.diagram(ladder.ladder(conv, ts_values=ts_values, absolute=absolute),
                         max_arrows=max_arrows)

    def diagram(self, lad: ladder.Ladder, *, max_arrows: int | None = None) -> None:
        self.drawn.append(lad)
        self.block(ladder.render_text(lad, max_arrows=max_arrows))

    def svg(self, *, max_arrows: int | None = 24) -> str | None:
        """Every ladder shown so far as one SVG document (None when there was none)."""
        return ladder.render_svg(self.drawn, max_arrows=max_arrows) if self.drawn else None

    def check(self, ok: bool, text: str) -> bool:
        (self.passed if ok else self.failed).append(text)
        self._print(f"  [{'ok' if ok else 'FAILED'}] {text}")
        return ok

    def verdict(self, topic: str) -> int:
        total = len(self.passed) + len(self.failed)
        if self.failed:
            self._print(f"\ndemo {topic}: {len(self.failed)} of {total} checks FAILED")
            return 1
        self._print(f"\ndemo {topic}: all {total} checks passed")
        return 0
