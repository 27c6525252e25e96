"""Harness settings of the script collections, which their own runners pass on the command
line rather than in the scripts.

gVisor runs its stack-neutral scripts with ``--tolerance_usecs=100000`` and an init script
that sets tcp_sack and 2 MB / 8 MB buffers (gvisor test/packetdrill/packetdrill_test.sh and
packetdrill_setup.sh). google/packetdrill's scripts carry their profile in
``common/defaults.sh`` and need nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Suite:
    options: tuple[tuple[str, str], ...] = ()
    init_command: str = ""


SUITES: dict[str, Suite] = {
    "gvisor": Suite(
        options=(("tolerance_usecs", "100000"),),
        init_command="sysctl -q net.ipv4.tcp_sack=1\n"
                     'sysctl -q net.ipv4.tcp_rmem="4096 2097152 $((8*1024*1024))"\n'
                     'sysctl -q net.ipv4.tcp_wmem="4096 2097152 $((8*1024*1024))"\n',
    ),
}


def suite_for(path: Path) -> Suite:
    """The settings of the nearest enclosing folder that names a suite."""
    for folder in path.resolve().parents:
        suite = SUITES.get(folder.name)
        if suite is not None:
            return suite
    return Suite()
