"""Scripts of the shared set whose result on this kernel depends on its version, with why.

Keyed by the script's path ending; shown next to the script's row and explained in
docs/packetdrill.md ("The kernel target's failures").
"""

from __future__ import annotations

KNOWN: dict[str, str] = {}


def known_difference(name: str) -> str:
    for suffix, reason in KNOWN.items():
        if name.endswith(suffix):
            return reason
    return ""
