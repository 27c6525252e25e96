"""The kernel's ``struct tcp_info`` (include/uapi/linux/tcp.h) as a dict of ``tcpi_*``.

Fields up to ``tcpi_total_rto_time`` (Linux 6.7); the kernel copies min(optlen, its size),
so a shorter struct on an older kernel leaves the missing fields out of the dict.
"""

from __future__ import annotations

import ctypes
import socket as pysocket

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64


class TcpInfo(ctypes.Structure):
    _fields_ = [
        ("tcpi_state", u8), ("tcpi_ca_state", u8), ("tcpi_retransmits", u8),
        ("tcpi_probes", u8), ("tcpi_backoff", u8), ("tcpi_options", u8),
        ("tcpi_snd_wscale", u8, 4), ("tcpi_rcv_wscale", u8, 4),
        ("tcpi_delivery_rate_app_limited", u8, 1), ("tcpi_fastopen_client_fail", u8, 2),
        ("tcpi_rto", u32), ("tcpi_ato", u32), ("tcpi_snd_mss", u32), ("tcpi_rcv_mss", u32),
        ("tcpi_unacked", u32), ("tcpi_sacked", u32), ("tcpi_lost", u32),
        ("tcpi_retrans", u32), ("tcpi_fackets", u32),
        ("tcpi_last_data_sent", u32), ("tcpi_last_ack_sent", u32),
        ("tcpi_last_data_recv", u32), ("tcpi_last_ack_recv", u32),
        ("tcpi_pmtu", u32), ("tcpi_rcv_ssthresh", u32), ("tcpi_rtt", u32),
        ("tcpi_rttvar", u32), ("tcpi_snd_ssthresh", u32), ("tcpi_snd_cwnd", u32),
        ("tcpi_advmss", u32), ("tcpi_reordering", u32),
        ("tcpi_rcv_rtt", u32), ("tcpi_rcv_space", u32), ("tcpi_total_retrans", u32),
        ("tcpi_pacing_rate", u64), ("tcpi_max_pacing_rate", u64),
        ("tcpi_bytes_acked", u64), ("tcpi_bytes_received", u64),
        ("tcpi_segs_out", u32), ("tcpi_segs_in", u32),
        ("tcpi_notsent_bytes", u32), ("tcpi_min_rtt", u32),
        ("tcpi_data_segs_in", u32), ("tcpi_data_segs_out", u32),
        ("tcpi_delivery_rate", u64),
        ("tcpi_busy_time", u64), ("tcpi_rwnd_limited", u64), ("tcpi_sndbuf_limited", u64),
        ("tcpi_delivered", u32), ("tcpi_delivered_ce", u32),
        ("tcpi_bytes_sent", u64), ("tcpi_bytes_retrans", u64),
        ("tcpi_dsack_dups", u32), ("tcpi_reord_seen", u32),
        ("tcpi_rcv_ooopack", u32), ("tcpi_snd_wnd", u32), ("tcpi_rcv_wnd", u32),
        ("tcpi_rehash", u32), ("tcpi_total_rto", u16), ("tcpi_total_rto_recoveries", u16),
        ("tcpi_total_rto_time", u32),
    ]


def parse_tcp_info(raw: bytes) -> dict[str, int]:
    """The fields ``raw`` (what getsockopt returned) covers."""
    info = TcpInfo.from_buffer_copy(raw.ljust(ctypes.sizeof(TcpInfo), b"\0"))
    out: dict[str, int] = {}
    for spec in TcpInfo._fields_:
        name = spec[0]
        descriptor = getattr(TcpInfo, name)
        if descriptor.offset < len(raw):
            out[name] = int(getattr(info, name))
    return out


def read_tcp_info(sock: pysocket.socket) -> dict[str, int]:
    return parse_tcp_info(sock.getsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_INFO,
                                          ctypes.sizeof(TcpInfo)))
