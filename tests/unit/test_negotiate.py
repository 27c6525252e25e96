"""The one handshake negotiation rule (options.negotiate) on its own."""

from __future__ import annotations

from ustcp.config import StackConfig
from ustcp.tcp.options import TS_OPTION_LEN, SockOpts, negotiate, peer_offer
from ustcp.wire.tcp import TcpOptions


def test_each_option_needs_both_sides() -> None:
    cfg = StackConfig()
    both = negotiate(cfg, SockOpts(), 1460, ts=True, sack=True, wscale=7, mss=1400)
    assert (both.ts_ok, both.sack_ok, both.snd_wscale, both.snd_mss) == (True, True, 7, 1400)
    assert both.rcv_wscale > 0
    assert both.rcv_wnd % (1460 - TS_OPTION_LEN) == 0  # whole payload MSSes
    off = StackConfig(tcp_timestamps=0, tcp_sack=0, tcp_window_scaling=0)
    none = negotiate(off, SockOpts(), 1460, ts=True, sack=True, wscale=7, mss=1400)
    assert (none.ts_ok, none.sack_ok, none.snd_wscale, none.rcv_wscale) == (
        False, False, None, 0)
    assert none.rcv_wnd % 1460 == 0
    peer_none = negotiate(cfg, SockOpts(), 1460, ts=False, sack=False, wscale=None, mss=536)
    assert (peer_none.ts_ok, peer_none.sack_ok, peer_none.snd_wscale,
            peer_none.rcv_wscale) == (False, False, None, 0)


def test_the_peer_shift_is_clamped_and_tcp_maxseg_clamps_what_we_announce() -> None:
    neg = peer_offer(StackConfig(), SockOpts(maxseg=1000), 1460,
                     TcpOptions(mss=20, wscale=15, sack_permitted=True, ts_val=5))
    assert neg.snd_wscale == 14  # RFC 7323 2.3, tcp_parse_options
    assert neg.snd_mss == 88  # TCP_MIN_MSS floor
    assert neg.advmss == 1000
    assert neg.rcv_wnd % (1000 - TS_OPTION_LEN) == 0
