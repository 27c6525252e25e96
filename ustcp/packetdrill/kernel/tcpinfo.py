"""TCP_INFO of a kernel socket, as a dict of ``tcpi_*`` (the layout: ``ustcp.tcp.tcpinfo``)."""

from __future__ import annotations

import socket as pysocket

from ...tcp.tcpinfo import TCP_INFO_SIZE, parse_tcp_info


def read_tcp_info(sock: pysocket.socket) -> dict[str, int]:
    return parse_tcp_info(sock.getsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_INFO,
                                          TCP_INFO_SIZE))
