"""Every knob of the stack, under the name Linux gives it.

Defaults are Linux's (Documentation/networking/ip-sysctl.rst, kernel 6.x). The CLI sets them
with ``--sysctl name=value`` exactly as ``sysctl -w net.ipv4.name=value`` would; a packetdrill
script's backtick ``sysctl -q net.ipv4.name=value`` lines go through the same parser.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any


class SysctlError(ValueError):
    """An unknown sysctl name or a value it does not accept."""


INT_MAX = 2**31 - 1
UINT_MAX = 2**32 - 1
U8_MAX = 255
JIFFIES_SEC_MAX = INT_MAX // 1000  # proc_dointvec_jiffies with HZ=1000: 2147483 s

# The range each integer sysctl accepts, as Linux 6.18 checks it when written (net/ipv4/
# sysctl_net_ipv4.c, net/core/sysctl_net_core.c; probed by writing to a fresh netns):
# proc_dou8vec_minmax fields take 0..255, proc_dointvec_minmax ones their extra1..extra2.
# Where Linux sets no bound at all (plain proc_dointvec, the jiffies handlers) ustcp still
# refuses negative values, which would only turn a table or a timer off by accident.
RANGES: dict[str, tuple[int, int]] = {
    "tcp_syncookies": (0, U8_MAX),
    "tcp_max_syn_backlog": (0, INT_MAX),
    "somaxconn": (0, INT_MAX),  # extra1 = SYSCTL_ZERO
    "tcp_synack_retries": (0, U8_MAX),
    "tcp_abort_on_overflow": (0, U8_MAX),
    "tcp_syn_retries": (1, 127),  # tcp_syn_retries_min, tcp_syn_retries_max (MAX_TCP_SYNCNT)
    "tcp_syn_linear_timeouts": (0, 127),  # SYSCTL_ZERO, tcp_syn_linear_timeouts_max
    "tcp_retries2": (0, U8_MAX),
    "tcp_timestamps": (0, U8_MAX),
    "tcp_window_scaling": (0, U8_MAX),
    "tcp_sack": (0, U8_MAX),
    "tcp_dsack": (0, U8_MAX),
    "tcp_frto": (0, U8_MAX),
    "tcp_fin_timeout": (0, JIFFIES_SEC_MAX),
    "tcp_orphan_retries": (0, U8_MAX),
    "tcp_max_orphans": (0, INT_MAX),
    "tcp_max_tw_buckets": (0, INT_MAX),
    "tcp_tw_reuse": (0, 2),  # SYSCTL_ZERO, SYSCTL_TWO
    "tcp_tw_recycle": (0, INT_MAX),  # removed in 4.12; 4.11 had plain proc_dointvec
    "tcp_rfc1337": (0, U8_MAX),
    "tcp_moderate_rcvbuf": (0, U8_MAX),
    "tcp_slow_start_after_idle": (0, U8_MAX),
    "tcp_min_tso_segs": (1, INT_MAX),  # SYSCTL_ONE
    "tcp_notsent_lowat": (0, UINT_MAX),  # proc_douintvec
    "tcp_tso_rtt_log": (0, U8_MAX),
    "tcp_pacing_ss_ratio": (0, 1000),  # SYSCTL_ZERO, SYSCTL_ONE_THOUSAND
    "tcp_pacing_ca_ratio": (0, 1000),
    "tcp_limit_output_bytes": (0, INT_MAX),  # proc_dointvec
    # extra2 = &sysctl_tcp_max_reordering: checked against the current value in set()
    "tcp_reordering": (1, INT_MAX),
    "tcp_max_reordering": (1, INT_MAX),  # extra1 = SYSCTL_ONE
    "tcp_early_retrans": (0, 4),  # SYSCTL_ZERO, SYSCTL_FOUR
    "tcp_recovery": (0, U8_MAX),
    "tcp_min_rtt_wlen": (0, 86400),  # SYSCTL_ZERO, one_day_secs
    "tcp_keepalive_time": (0, JIFFIES_SEC_MAX),
    "tcp_keepalive_intvl": (0, JIFFIES_SEC_MAX),
    "tcp_keepalive_probes": (0, U8_MAX),
    "tcp_challenge_ack_limit": (0, INT_MAX),
    "tcp_invalid_ratelimit": (0, INT_MAX),  # proc_dointvec_ms_jiffies
    "tcp_ecn": (0, 5),  # SYSCTL_ZERO, SYSCTL_FIVE (3 to 5: AccECN, Linux 6.18)
    "tcp_ecn_fallback": (0, 1),
    "tcp_fastopen": (0, INT_MAX),  # proc_dointvec: the bit flags of tcp/fastopen.py
    "tcp_fastopen_blackhole_timeout_sec": (0, INT_MAX),  # SYSCTL_ZERO, no upper bound
    "ip_default_ttl": (1, 255),  # ip_ttl_min, ip_ttl_max
    "icmp_ratelimit": (0, INT_MAX),  # proc_dointvec_ms_jiffies, ms
    "ipfrag_high_thresh": (0, INT_MAX),  # extra1 = &ipfrag_low_thresh in Linux
    "ipfrag_time": (0, JIFFIES_SEC_MAX),
    "tcp_mtu_probing": (0, 2),  # SYSCTL_ZERO, SYSCTL_TWO
    "tcp_base_mss": (1, INT_MAX),
    "tcp_mtu_probe_floor": (48, 65535),  # tcp_min_snd_mss_min, tcp_min_snd_mss_max
    "tcp_min_snd_mss": (48, 65535),
    "tcp_probe_threshold": (1, INT_MAX),
    "tcp_probe_interval": (0, 2**32 - 1),  # proc_douintvec_minmax, seconds
    "tcp_retries1": (0, U8_MAX),
    "min_pmtu": (68, INT_MAX),  # net.ipv4.route.min_pmtu: extra1 = ip_min_valid_pmtu
    "mtu_expires": (0, JIFFIES_SEC_MAX),  # net.ipv4.route.mtu_expires
    "icmp_ratemask": (0, INT_MAX),
    "busy_poll": (0, INT_MAX),  # extra1 = SYSCTL_ZERO
    "busy_read": (0, INT_MAX),
}
# tcp_rmem and tcp_wmem: three integers, each at least this (Linux 6.18 refuses a tcp_rmem
# element below 4096 and a tcp_wmem one below 1); ustcp also needs min <= default <= max.
TRIPLE_MIN = {"tcp_rmem": 4096, "tcp_wmem": 1}


# Sysctls StackConfig accepts (so that Linux's set-up scripts run unchanged) that change
# nothing in ustcp, with the reason. Every other knob changes behaviour and has a test.
IGNORED: dict[str, str] = {
    "tcp_min_rtt_wlen": "min_rtt is the minimum over the connection's life, not a window",
}


_FASTOPEN_KEY = re.compile(r"([0-9a-fA-F]{1,8})-([0-9a-fA-F]{1,8})-([0-9a-fA-F]{1,8})-"
                           r"([0-9a-fA-F]{1,8})")


def parse_fastopen_keys(text: str) -> tuple[bytes, ...]:
    """``tcp_fastopen_key``: a primary and an optional backup key, each four 32-bit hex words
    stored little-endian (proc_tcp_fastopen_key, sscanf_key); raises ValueError."""
    parts = text.split(",")
    if len(parts) > 2:
        raise ValueError("at most a primary and a backup Fast Open key")
    keys = []
    for part in parts:
        m = _FASTOPEN_KEY.fullmatch(part.strip())
        if not m:
            raise ValueError(f"bad Fast Open key {part!r} (xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxxxxxx)")
        keys.append(b"".join(int(word, 16).to_bytes(4, "little") for word in m.groups()))
    return tuple(keys)


def _triple(name: str, value: str) -> tuple[int, int, int]:
    parts = value.split()
    if len(parts) != 3:
        raise SysctlError(f"{name}: expected three integers 'min default max', got {value!r}")
    lo, default, hi = (int(p) for p in parts)
    least = TRIPLE_MIN[name]
    if not least <= lo <= default <= hi <= INT_MAX:
        raise SysctlError(f"{name}: need {least} <= min <= default <= max <= {INT_MAX}, "
                          f"got {value!r}")
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
    # the first SYN retransmissions of a connect that keep the initial RTO (1 s) instead of
    # doubling it, and count on top of tcp_syn_retries (Linux 6.5+)
    tcp_syn_linear_timeouts: int = 4
    tcp_retries2: int = 15
    # --- options (tcp_output.c tcp_syn_options) ---
    tcp_timestamps: int = 1
    tcp_window_scaling: int = 1
    tcp_sack: int = 1
    tcp_dsack: int = 1
    tcp_frto: int = 2  # F-RTO after an RTO (RFC 5682), any non-zero value: undo.py
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
    # A writer (and POLLOUT) waits while more than this many bytes are written and unsent
    # (tcp_stream_memory_free); TCP_NOTSENT_LOWAT sets it per socket.
    tcp_notsent_lowat: int = UINT_MAX
    # --- loss recovery and congestion control ---
    tcp_congestion_control: str = "cubic"
    tcp_slow_start_after_idle: int = 1
    # --- packet sizing and pacing rate (tcp_output.c tcp_tso_autosize, tcp_input.c
    # tcp_update_pacing_rate; tcp/tso.py) ---
    tcp_min_tso_segs: int = 2
    tcp_tso_rtt_log: int = 9
    tcp_pacing_ss_ratio: int = 200
    tcp_pacing_ca_ratio: int = 120
    # TCP Small Queues: bytes one socket may have in the qdisc and device (tcp/pacing.py)
    tcp_limit_output_bytes: int = 4194304
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
    # --- TCP Fast Open (RFC 7413; tcp/fastopen.py): 0x1 client, 0x2 server, 0x4 client
    # without cookie, 0x200 server without cookie, 0x400 every listener; the key is
    # "xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxxxxxx[,backup]", "" for a random one ---
    tcp_fastopen: int = 1
    tcp_fastopen_key: str = ""
    # active Fast Open paused host-wide for this long (s), doubling per pause up to 64
    # times, after a Fast Open connection timed out; 0 (Linux's default) never pauses
    tcp_fastopen_blackhole_timeout_sec: int = 0
    # --- ECN (RFC 3168; tcp/ecn.py): 0 off, 1 ask and accept, 2 accept when asked ---
    tcp_ecn: int = 2
    tcp_ecn_fallback: int = 1
    # --- misc ---
    ip_default_ttl: int = 64
    # --- ICMP errors the stack sends (net/ipv4/icmp.c icmpv4_xrlim_allow): per destination
    # one every icmp_ratelimit ms after a burst of 6, for the types whose bit is set in
    # icmp_ratemask (0x1818: destination unreachable, source quench, time exceeded,
    # parameter problem). ICMPv6 errors take the same interval with Linux's default v6 mask
    # (every error but packet too big) ---
    icmp_ratelimit: int = 1000
    icmp_ratemask: int = 0x1818
    # --- path MTU discovery (net.ipv4.route.*, RFC 1191; docs/icmp-pmtu.md): the lowest
    # path MTU an ICMP may teach, and how long a learned one lasts (s) ---
    # --- packetization-layer path MTU discovery (RFC 4821, tcp_mtu_probing; tcp/mtu_probe.py):
    # 0 off, 1 after a black hole is suspected (tcp_retries1's worth of retransmitting),
    # 2 always; where the search starts and its floor (MSS bytes), the narrowest range
    # still probed (bytes), and how often to search again (s) ---
    tcp_mtu_probing: int = 0
    tcp_base_mss: int = 1024
    tcp_mtu_probe_floor: int = 48
    tcp_min_snd_mss: int = 48
    tcp_probe_threshold: int = 8
    tcp_probe_interval: int = 600
    tcp_retries1: int = 3
    min_pmtu: int = 552
    mtu_expires: int = 600
    # --- reassembly (net.ipv4.ipfrag_*; IPv6 takes the same values): the memory queued
    # fragments may hold (bytes), and how long a datagram may take to complete (s) ---
    ipfrag_high_thresh: int = 4 * 1024 * 1024
    ipfrag_time: int = 30
    # --- busy polling (µs): net.core.busy_poll, the receive loop spins on the link before
    # it sleeps; net.core.busy_read, a reader that finds nothing polls the link itself ---
    busy_poll: int = 0
    busy_read: int = 0

    def set(self, name: str, value: str) -> None:
        """Set one sysctl from its textual form, as ``sysctl -w`` would."""
        name = name.removeprefix("net.ipv4.").removeprefix("net.core.").removeprefix("route.")
        fields = {f.name: f for f in dataclasses.fields(self)}
        if name not in fields:
            raise SysctlError(f"unknown sysctl {name!r}")
        current = getattr(self, name)
        try:
            parsed: Any
            if isinstance(current, tuple):
                parsed = _triple(name, value)
            elif isinstance(current, int):
                parsed = int(value, 0)
                lo, hi = RANGES[name]
                if name == "tcp_reordering":
                    hi = self.tcp_max_reordering
                if not lo <= parsed <= hi:
                    raise SysctlError(f"{name}: {parsed} is outside {lo}..{hi}")
            else:
                parsed = value.strip()
                if name == "tcp_congestion_control" and parsed not in ("reno", "cubic"):
                    raise SysctlError(f"tcp_congestion_control: reno or cubic, got {value!r}")
                if name == "tcp_fastopen_key":
                    parse_fastopen_keys(parsed)  # ValueError: EINVAL (proc_tcp_fastopen_key)
        except ValueError as exc:
            if isinstance(exc, SysctlError):
                raise
            raise SysctlError(f"bad value for {name}: {value!r}") from exc
        setattr(self, name, parsed)

    def apply(self, assignments: list[str]) -> list[str]:
        """Apply ``name=value`` strings (the ``--sysctl`` arguments); returns a warning line
        for each one that is accepted but changes nothing (:data:`IGNORED`)."""
        warnings = []
        for item in assignments:
            name, sep, value = item.partition("=")
            if not sep:
                raise SysctlError(f"expected NAME=VALUE, got {item!r}")
            self.set(name.strip(), value)
            short = name.strip().removeprefix("net.ipv4.").removeprefix("net.core.") \
                .removeprefix("route.")
            if short in IGNORED:
                warnings.append(f"warning: sysctl {short} is accepted but ignored: "
                                f"{IGNORED[short]}")
        return warnings

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
