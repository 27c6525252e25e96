"""Every knob of the stack, under the name Linux gives it.

Defaults are Linux's (Documentation/networking/ip-sysctl.rst, kernel 6.x). The CLI sets them
with ``--sysctl name=value`` exactly as ``sysctl -w net.ipv4.name=value`` would; a packetdrill
script's backtick ``sysctl -q net.ipv4.name=value`` lines go through the same parser.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class SysctlError(ValueError):
    """An unknown sysctl name or a value it does not accept."""


def _triple(value: str) -> tuple[int, int, int]:
    parts = value.split()
    if len(parts) != 3:
        raise SysctlError(f"expected three integers 'min default max', got {value!r}")
    lo, default, hi = (int(p) for p in parts)
    if not 0 < lo <= default <= hi:
        raise SysctlError(f"need 0 < min <= default <= max, got {value!r}")
    return lo, default, hi


@dataclass
class StackConfig:
    """The sysctls ustcp honours. Field names are the Linux names without ``net.ipv4.``."""

    # --- listen path (net/ipv4/tcp_input.c tcp_conn_request, syncookies.c) ---
    tcp_syncookies: int = 1
    tcp_max_syn_backlog: int = 4096
    somaxconn: int = 4096
    tcp_synack_retries: int = 5
    tcp_abort_on_overflow: int = 0
    # --- active open and retransmission (tcp_timer.c) ---
    tcp_syn_retries: int = 6
    tcp_retries2: int = 15
    # --- options (tcp_output.c tcp_syn_options) ---
    tcp_timestamps: int = 1
    tcp_window_scaling: int = 1
    tcp_sack: int = 1
    tcp_dsack: int = 1
    # --- close path and TIME_WAIT (tcp_minisocks.c, tcp.c) ---
    tcp_fin_timeout: int = 60
    tcp_orphan_retries: int = 0
    tcp_max_orphans: int = 65536
    tcp_max_tw_buckets: int = 65536
    tcp_tw_reuse: int = 2
    # Linux < 4.12 only (removed: it drops SYNs from clients behind a NAT); kept to teach
    # why. 1: TIME_WAIT lasts 3.5 RTO and SYNs get a per-host PAWS check.
    tcp_tw_recycle: int = 0
    tcp_rfc1337: int = 0
    # --- buffers and windows (tcp_rmem/tcp_wmem are min, default, max in bytes) ---
    tcp_rmem: tuple[int, int, int] = (4096, 131072, 6291456)
    tcp_wmem: tuple[int, int, int] = (4096, 16384, 4194304)
    tcp_moderate_rcvbuf: int = 1
    # --- loss recovery and congestion control ---
    tcp_congestion_control: str = "cubic"
    tcp_slow_start_after_idle: int = 1
    tcp_reordering: int = 3
    tcp_max_reordering: int = 300
    tcp_early_retrans: int = 3
    tcp_recovery: int = 1
    tcp_min_rtt_wlen: int = 300
    # --- keepalive ---
    tcp_keepalive_time: int = 7200
    tcp_keepalive_intvl: int = 75
    tcp_keepalive_probes: int = 9
    # --- RFC 5961 and rate limits ---
    tcp_challenge_ack_limit: int = 2147483647
    tcp_invalid_ratelimit: int = 500
    # --- misc ---
    tcp_ecn: int = 0
    ip_default_ttl: int = 64
    # --- busy polling (µs): net.core.busy_poll, the receive loop spins on the link before
    # it sleeps; net.core.busy_read, a reader that finds nothing polls the link itself ---
    busy_poll: int = 0
    busy_read: int = 0

    def set(self, name: str, value: str) -> None:
        """Set one sysctl from its textual form, as ``sysctl -w`` would."""
        name = name.removeprefix("net.ipv4.").removeprefix("net.core.")
        fields = {f.name: f for f in dataclasses.fields(self)}
        if name not in fields:
            raise SysctlError(f"unknown sysctl {name!r}")
        current = getattr(self, name)
        try:
            parsed: Any
            if isinstance(current, tuple):
                parsed = _triple(value)
            elif isinstance(current, int):
                parsed = int(value, 0)
                if parsed < 0:
                    raise SysctlError(f"{name} must not be negative, got {value!r}")
            else:
                parsed = value.strip()
                if name == "tcp_congestion_control" and parsed not in ("reno", "cubic"):
                    raise SysctlError(f"tcp_congestion_control: reno or cubic, got {value!r}")
        except ValueError as exc:
            if isinstance(exc, SysctlError):
                raise
            raise SysctlError(f"bad value for {name}: {value!r}") from exc
        setattr(self, name, parsed)

    def apply(self, assignments: list[str]) -> None:
        """Apply ``name=value`` strings (the ``--sysctl`` arguments)."""
        for item in assignments:
            name, sep, value = item.partition("=")
            if not sep:
                raise SysctlError(f"expected NAME=VALUE, got {item!r}")
            self.set(name.strip(), value)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
