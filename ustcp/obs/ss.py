"""Socket snapshots for ``ustcp ss``: what Linux's ``ss -tanoi`` shows, from the engine.

:func:`snapshot` turns an engine into rows (plain dicts, JSON-ready), one per socket:
listeners, half-open SYN-queue entries (``SYN-RECV``), connections and TIME_WAIT entries.
Every row has ``state`` (ss's spelling), ``recv_q``, ``send_q``, ``local``, ``peer`` and
``timer``; a listener's Recv-Q and Send-Q are its accept queue's length and limit, and it adds
``syn_queue`` (which Linux's ss cannot show); a connection adds ``info``, its ``tcp_info``
under the names ``ss -i`` prints (times in milliseconds).

The timer is the one Linux's inet_diag reports (inet_sk_diag_fill): the retransmission timer
as ``on`` (with the count of consecutive timeouts), the zero-window probe as ``persist``,
keepalive as ``keepalive``, TIME_WAIT (and an orphan's FIN_WAIT2 lifetime, which Linux keeps
as a TIME_WAIT-table entry) as ``timewait``; the delayed-ACK timer is never shown.
:func:`format_table` prints rows as ``ss -tanoi`` does.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ustcp.obs import ctl
from ustcp.tcp.seq import seq_diff
from ustcp.tcp.states import SYNCHRONIZED, State
from ustcp.wire.addr import endpoint

if TYPE_CHECKING:
    from ustcp.tcp.connection import Connection
    from ustcp.tcp.engine import TcpEngine
    from ustcp.tcp.listener import Listener

Row = dict[str, Any]

SSTHRESH_SHOWN_BELOW = 0xFFFF  # ss prints ssthresh only below this (no "infinite" threshold)
DEFAULT_REORDERING = 3  # ss prints reordering only when it differs

# ss's state-filter names (``ss state NAME``) and groups, besides the ss spellings themselves.
_FILTER_NAMES: dict[str, frozenset[str]] = {
    "established": frozenset({"ESTAB"}),
    "syn-sent": frozenset({"SYN-SENT"}),
    "syn-recv": frozenset({"SYN-RECV"}),
    "fin-wait-1": frozenset({"FIN-WAIT-1"}),
    "fin-wait-2": frozenset({"FIN-WAIT-2"}),
    "time-wait": frozenset({"TIME-WAIT"}),
    "closed": frozenset({"UNCONN"}),
    "close-wait": frozenset({"CLOSE-WAIT"}),
    "last-ack": frozenset({"LAST-ACK"}),
    "listening": frozenset({"LISTEN"}),
    "closing": frozenset({"CLOSING"}),
    "connected": frozenset(s.ss_name for s in State if s not in (State.LISTEN, State.CLOSE)),
    "synchronized": frozenset(s.ss_name for s in SYNCHRONIZED),
}


def state_names(name: str) -> frozenset[str]:
    """The ss spellings a ``--state`` argument selects: an ss spelling (``ESTAB``,
    ``time-wait``), one of ss's filter names or groups (``established``, ``connected``), or
    the engine's enum name (``TIME_WAIT``). ``ValueError`` for anything else."""
    key = name.strip().lower().replace("_", "-")
    if key in _FILTER_NAMES:
        return _FILTER_NAMES[key]
    for state in State:
        if key in (state.ss_name.lower(), state.name.lower().replace("_", "-")):
            return frozenset({state.ss_name})
    known = sorted({s.ss_name for s in State} | set(_FILTER_NAMES))
    raise ValueError(f"unknown state {name!r}; known: {', '.join(known)}")





def _port_of(endpoint: str) -> str:
    return endpoint.rpartition(":")[2]


def _timer(name: str, deadline: float, now: float, count: int) -> dict[str, Any]:
    return {"name": name, "expires_ms": max(0, round((deadline - now) * 1000)), "count": count}


def _conn_timer(conn: Connection, now: float) -> dict[str, Any] | None:
    if conn.snd.t_rto is not None:
        return _timer("on", conn.snd.t_rto, now, conn.snd.retransmits)
    if conn.snd.t_probe0 is not None:
        return _timer("persist", conn.snd.t_probe0, now, conn.snd.probes_out)
    if conn.t_linger is not None:
        return _timer("timewait", conn.t_linger, now, 0)
    if conn.t_keepalive is not None:
        return _timer("keepalive", conn.t_keepalive, now, conn.snd.probes_out)
    return None


def _ms(us: int) -> float:
    return round(us / 1000, 3)


def _info(conn: Connection, now: float) -> dict[str, Any]:
    """``tcp_info`` under the names ``ss -i`` prints, in its order (ss.c tcp_stats_print)."""
    ti = conn.tcp_info(now)
    options = ti["tcpi_options"]
    return {
        "ts": bool(options & 1), "sack": bool(options & 2), "cong": conn.snd.cc.name,
        "wscale": [ti["tcpi_snd_wscale"], ti["tcpi_rcv_wscale"]] if options & 4 else None,
        "rto": _ms(ti["tcpi_rto"]), "backoff": ti["tcpi_backoff"],
        "rtt": _ms(ti["tcpi_rtt"]), "rttvar": _ms(ti["tcpi_rttvar"]), "ato": _ms(ti["tcpi_ato"]),
        "mss": ti["tcpi_snd_mss"], "pmtu": ti["tcpi_pmtu"], "rcvmss": ti["tcpi_rcv_mss"],
        "advmss": ti["tcpi_advmss"], "cwnd": ti["tcpi_snd_cwnd"],
        "ssthresh": ti["tcpi_snd_ssthresh"],
        "bytes_sent": ti["tcpi_bytes_sent"], "bytes_retrans": ti["tcpi_bytes_retrans"],
        "bytes_acked": ti["tcpi_bytes_acked"], "bytes_received": ti["tcpi_bytes_received"],
        "segs_out": ti["tcpi_segs_out"], "segs_in": ti["tcpi_segs_in"],
        "data_segs_out": ti["tcpi_data_segs_out"], "data_segs_in": ti["tcpi_data_segs_in"],
        "lastrcv": ti["tcpi_last_data_recv"], "lastack": ti["tcpi_last_ack_recv"],
        "delivered": ti["tcpi_delivered"], "unacked": ti["tcpi_unacked"],
        "retrans": ti["tcpi_retrans"], "retrans_total": ti["tcpi_total_retrans"],
        "lost": ti["tcpi_lost"], "sacked": ti["tcpi_sacked"],
        "reordering": ti["tcpi_reordering"], "rcv_space": ti["tcpi_rcv_space"],
        "rcv_ssthresh": ti["tcpi_rcv_ssthresh"], "notsent": ti["tcpi_notsent_bytes"],
        "minrtt": _ms(ti["tcpi_min_rtt"]), "snd_wnd": ti["tcpi_snd_wnd"],
    }


def _skmem(conn: Connection) -> dict[str, int]:
    """``ss -m``'s skmem (inet_sk_diag_fill's SK_MEMINFO): what ustcp has of it. r is the
    data waiting to be read, w the data not yet acknowledged; t (bytes in the device's
    queue), f (forward allocation), o (option memory), bl (backlog) and d (drops) have no
    counterpart here and stay 0."""
    return {"r": len(conn.rcv.rcv_buf), "rb": conn.rcv.rcvbuf, "t": 0,
            "tb": conn.snd.sndbuf(), "f": 0,
            "w": max(0, seq_diff(conn.snd.write_seq, conn.snd.snd_una)), "o": 0, "bl": 0, "d": 0}


def _listener_rows(listener: Listener, now: float) -> list[Row]:
    any_peer = "[::]:*" if len(listener.local_ip) == 16 else "0.0.0.0:*"
    rows: list[Row] = [{
        "state": State.LISTEN.ss_name, "recv_q": listener.accept_queue_len,
        "send_q": listener.backlog, "local": endpoint(listener.local_ip, listener.port),
        "peer": any_peer,
        "timer": None, "syn_queue": listener.syn_queue_len,
    }]
    for key in sorted(listener.syn_queue):
        req = listener.syn_queue[key]
        rows.append({
            "state": State.SYN_RECV.ss_name, "recv_q": 0, "send_q": 0,
            "local": endpoint(req.local_ip, req.local_port),
            "peer": endpoint(req.remote_ip, req.remote_port),
            "timer": _timer("on", req.expires, now, req.num_timeout),
        })
    return rows


def _connection_row(conn: Connection, now: float) -> Row:
    return {
        "state": conn.state.ss_name, "recv_q": len(conn.rcv.rcv_buf),
        "send_q": max(0, seq_diff(conn.snd.write_seq, conn.snd.snd_una)),
        "local": endpoint(conn.local_ip, conn.local_port),
        "peer": endpoint(conn.remote_ip, conn.remote_port),
        "timer": _conn_timer(conn, now), "info": _info(conn, now),
        "skmem": _skmem(conn), "sk": f"{id(conn):x}",
    }


def filter_rows(rows: Iterable[Row], *, state: str | None = None,
                port: int | None = None) -> list[Row]:
    """The rows in the states ``state`` names (see :func:`state_names`) with ``port`` as
    their local or peer port."""
    wanted = state_names(state) if state else None
    return [
        row for row in rows
        if (wanted is None or row["state"] in wanted)
        and (port is None or str(port) in (_port_of(row["local"]), _port_of(row["peer"])))
    ]


def snapshot(engine: TcpEngine, now: float, *, state: str | None = None,
             port: int | None = None) -> list[Row]:
    """Every socket of ``engine`` at ``now``: listeners (each followed by its SYN-queue
    entries), connections, then TIME_WAIT entries, each group in address order."""
    rows: list[Row] = []
    for address in sorted(engine.listeners):
        rows += _listener_rows(engine.listeners[address], now)
    rows += [_connection_row(engine.connections[key], now) for key in sorted(engine.connections)]
    for key in sorted(engine.time_wait.entries):
        local_ip, local_port, remote_ip, remote_port = key
        rows.append({
            "state": State.TIME_WAIT.ss_name, "recv_q": 0, "send_q": 0,
            "local": endpoint(local_ip, local_port),
            "peer": endpoint(remote_ip, remote_port),
            "timer": _timer("timewait", engine.time_wait.entries[key].expires, now, 0),
        })
    return filter_rows(rows, state=state, port=port)


def format_ms_timer(ms: int) -> str:
    """A timeout as ss prints it (ss.c print_ms_timer): ``200ms``, ``040ms``, ``1.500ms``,
    ``52sec``, ``1min5sec``; minutes drop the milliseconds, ten minutes or more the seconds,
    ten seconds or more the milliseconds."""
    minutes, rest = divmod(ms, 60_000)
    secs, msecs = divmod(rest, 1000)
    out = ""
    if minutes:
        msecs = 0
        out = f"{minutes}min"
        if minutes > 9:
            secs = 0
    if secs:
        if secs > 9:
            msecs = 0
        out += f"{secs}{'.' if msecs else 'sec'}"
    if msecs:
        out += f"{msecs:03d}ms"
    return out


def format_timer(timer: dict[str, Any]) -> str:
    return f"timer:({timer['name']},{format_ms_timer(timer['expires_ms'])},{timer['count']})"


def format_info(info: dict[str, Any]) -> str:
    """The ``ss -i`` detail line (without its leading tab): zero fields are left out."""
    parts: list[str] = [name for name in ("ts", "sack") if info[name]]
    parts.append(info["cong"])
    if info["wscale"] is not None:
        parts.append(f"wscale:{info['wscale'][0]},{info['wscale'][1]}")
    if info["rto"]:
        parts.append(f"rto:{info['rto']:g}")
    if info["backoff"]:
        parts.append(f"backoff:{info['backoff']}")
    if info["rtt"]:
        parts.append(f"rtt:{info['rtt']:g}/{info['rttvar']:g}")
    if info["ato"]:
        parts.append(f"ato:{info['ato']:g}")
    parts += [f"{name}:{info[name]}" for name in ("mss", "pmtu", "rcvmss", "advmss", "cwnd")
              if info[name]]
    if info["ssthresh"] < SSTHRESH_SHOWN_BELOW:
        parts.append(f"ssthresh:{info['ssthresh']}")
    parts += [f"{name}:{info[name]}" for name in (
        "bytes_sent", "bytes_retrans", "bytes_acked", "bytes_received", "segs_out", "segs_in",
        "data_segs_out", "data_segs_in", "lastrcv", "lastack", "delivered", "unacked",
    ) if info[name]]
    if info["retrans"] or info["retrans_total"]:
        parts.append(f"retrans:{info['retrans']}/{info['retrans_total']}")
    parts += [f"{name}:{info[name]}" for name in ("lost", "sacked") if info[name]]
    if info["reordering"] != DEFAULT_REORDERING:
        parts.append(f"reordering:{info['reordering']}")
    parts += [f"{name}:{info[name]}" for name in ("rcv_space", "rcv_ssthresh", "notsent")
              if info[name]]
    if info["minrtt"]:
        parts.append(f"minrtt:{info['minrtt']:g}")
    if info["snd_wnd"]:
        parts.append(f"snd_wnd:{info['snd_wnd']}")
    return " ".join(parts)


HEADER = ("State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port")


def format_skmem(m: dict[str, int]) -> str:
    return "skmem:(" + ",".join(f"{k}{m[k]}" for k in ("r", "rb", "t", "tb", "f", "w", "o",
                                                       "bl", "d")) + ")"


def format_table(rows: list[Row], *, timers: bool = True, info: bool = True,
                 memory: bool = False, extended: bool = False, header: bool = True,
                 state: bool = True) -> str:
    """Rows as ``ss -tan`` prints them, with ``-o`` (``timers``) the timer, with ``-e`` the
    socket's identity, with ``-m`` and ``-i`` a second line, indented by a tab: skmem, then
    the ``tcp_info`` (for a listener with ``-i``, the SYN-queue length)."""
    cells = [HEADER] + [
        (row["state"], str(row["recv_q"]), str(row["send_q"]), row["local"], row["peer"])
        for row in rows
    ]
    widths = [max(len(cell[i]) for cell in cells) for i in range(len(HEADER))]

    def line(cell: tuple[str, ...], tail: str) -> str:
        name, recv_q, send_q, local, peer = cell
        text = (f"{name:<{widths[0]}} " if state else "") + (
            f"{recv_q:>{widths[1]}} {send_q:>{widths[2]}} "
            f"{local:<{widths[3]}} {peer:<{widths[4]}} {tail}")
        return text.rstrip()

    lines = [line(cells[0], "")] if header else []
    for row, cell in zip(rows, cells[1:], strict=True):
        tail = [format_timer(row["timer"])] if timers and row["timer"] else []
        if extended and "sk" in row:
            tail.append(f"sk:{row['sk']}")
        lines.append(line(cell, " ".join(tail)))
        detail = [format_skmem(row["skmem"])] if memory and "skmem" in row else []
        if info and "info" in row:
            detail.append(format_info(row["info"]))
        elif info and "syn_queue" in row:
            detail.append(f"synq:{row['syn_queue']}")
        if detail:
            lines.append("\t " + " ".join(detail))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- ss's filter expressions

# ss's default without -a or -l: every state but LISTEN, TIME-WAIT, SYN-RECV and CLOSE
# (iproute2 misc/ss.c SS_CONN).
DEFAULT_STATES = frozenset(s.ss_name for s in State) - {
    "LISTEN", "TIME-WAIT", "SYN-RECV", "UNCONN"}
_OPS: dict[str, Callable[[int, int], bool]] = {
    "=": int.__eq__, "==": int.__eq__, "eq": int.__eq__,
    "!=": int.__ne__, "ne": int.__ne__, "neq": int.__ne__,
    "<": int.__lt__, "lt": int.__lt__, ">": int.__gt__, "gt": int.__gt__,
    "<=": int.__le__, "le": int.__le__, ">=": int.__ge__, "ge": int.__ge__,
}
RowTest = Callable[[Row], bool]


class FilterError(ValueError):
    """A filter expression this ss does not understand."""


def _port_test(column: str, op: str, text: str) -> RowTest:
    port_text = text.removeprefix(":")
    if not port_text.isdigit():
        raise FilterError(f"expected :PORT after {op!r}, got {text!r}")
    compare, port = _OPS[op], int(port_text)
    return lambda row: compare(int(_port_of(row[column]).replace("*", "0")), port)


def _split_endpoint(text: str) -> tuple[str, str]:
    """``10.0.0.1:80``, ``[fd77::1]:80``, ``fd77::1/64`` or ``10.0.0.0/8``: address, port."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest.removeprefix(":")
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, ""


def _address_test(column: str, text: str) -> RowTest:
    host, port_text = _split_endpoint(text)
    try:
        network = ipaddress.ip_network(host, strict=False) if host else None
    except ValueError as exc:
        raise FilterError(f"bad address {text!r}") from exc
    if port_text and not port_text.isdigit():
        raise FilterError(f"bad port in {text!r}")

    def test(row: Row) -> bool:
        address, port = _split_endpoint(row[column])
        if network is not None:
            ip = ipaddress.ip_address(address)
            if ip.version != network.version or ip not in network:
                return False
        return not port_text or port == port_text

    return test


def parse_filter(tokens: list[str]) -> tuple[frozenset[str] | None, list[RowTest]]:
    """ss's ``[ state STATE ... ] [ EXPRESSION ]`` as far as ustcp goes: ``state`` and
    ``exclude`` (repeatable; ss's names and groups), ``sport``/``dport`` with a comparison
    (``= != < > <= >=`` or ``eq ne lt gt le ge``) and ``:PORT``, ``src``/``dst`` with
    ``ADDR[/PREFIX][:PORT]``; terms are joined by ``and`` (or nothing). Returns the states
    chosen (None: none named) and the tests every shown row passes."""
    states: set[str] | None = None
    excluded: set[str] = set()
    tests: list[RowTest] = []
    rest = list(tokens)
    while rest:
        word = rest.pop(0)
        if word in ("and", "&&", "&"):
            continue
        if word in ("state", "exclude"):
            if not rest:
                raise FilterError(f"{word} needs a state name")
            names = state_names(rest.pop(0))
            if word == "state":
                states = (states or set()) | names
            else:
                excluded |= names
        elif word in ("sport", "dport"):
            column = "local" if word == "sport" else "peer"
            op = rest.pop(0) if rest and rest[0] in _OPS else "="
            if not rest:
                raise FilterError(f"{word} needs :PORT")
            tests.append(_port_test(column, op, rest.pop(0)))
        elif word in ("src", "dst"):
            if not rest:
                raise FilterError(f"{word} needs an address")
            tests.append(_address_test("local" if word == "src" else "peer", rest.pop(0)))
        else:
            raise FilterError(f"{word!r} is not supported here (state, exclude, sport, dport, "
                              "src, dst, and)")
    if excluded:
        states = (states if states is not None else
                  {s.ss_name for s in State}) - excluded
    return (frozenset(states) if states is not None else None), tests


def control_command(engine: TcpEngine) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The daemon's ``ss`` control command: ``{"cmd": "ss", "state": S, "port": P}`` answers
    ``{"sockets": rows}`` (both filters optional)."""

    import trio  # the daemon's side only: the ss command itself starts without trio

    def ss(request: dict[str, Any]) -> dict[str, Any]:
        port = request.get("port")
        rows = snapshot(engine, trio.current_time(), state=request.get("state") or None,
                        port=int(port) if port is not None else None)
        return {"sockets": rows}

    return ss


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """ss's options (the caller adds ``--control``); all TCP, all numeric."""
    flag = parser.add_argument
    flag("-t", "--tcp", action="store_true", help="TCP sockets (the only kind here)")
    flag("-a", "--all", action="store_true", help="listening and non-listening sockets")
    flag("-l", "--listening", action="store_true", help="listening sockets only")
    flag("-n", "--numeric", action="store_true", help="numeric addresses (always)")
    flag("-o", "--options", action="store_true", help="timer information")
    flag("-i", "--info", action="store_true", help="tcp_info (and a listener's SYN queue)")
    flag("-m", "--memory", action="store_true", help="socket memory (skmem)")
    flag("-e", "--extended", action="store_true", help="socket identity (sk)")
    flag("-H", "--no-header", action="store_true", help="no header line")
    flag("-j", "--json", action="store_true", help="every field of every row as JSON")
    flag("--state", metavar="S", help="the same as the filter `state S`")
    flag("--port", type=int, metavar="P", help="only sockets with this local or peer port")
    flag("filter", nargs="*", metavar="FILTER",
         help="state NAME | exclude NAME | sport = :P | dport != :P | src A[/N][:P] | "
              "dst A[:P], joined by and")


def _chosen(args: argparse.Namespace) -> tuple[frozenset[str] | None, list[RowTest], bool]:
    """The states (None: all) and tests these options choose, and whether a filter named
    exactly one state; ``FilterError`` if bad."""
    tokens = list(args.filter) + (["state", args.state] if args.state else [])
    try:
        states, tests = parse_filter(tokens)
    except ValueError as exc:  # state_names' unknown state too
        raise FilterError(str(exc)) from exc
    one = states is not None and len(states) == 1
    if states is None:
        states = (frozenset({"LISTEN"}) if args.listening and not args.all
                  else None if args.all else DEFAULT_STATES)
    return states, tests, one


def select(rows: list[Row], args: argparse.Namespace) -> list[Row]:
    """The rows ss shows for these options: ``FilterError`` for a bad filter."""
    states, tests, _ = _chosen(args)
    rows = filter_rows(rows, port=args.port)
    return [row for row in rows if (states is None or row["state"] in states)
            and all(test(row) for test in tests)]


def main(args: argparse.Namespace) -> int:
    """``ustcp ss``: ask the daemon at ``@args.control`` and print its sockets."""
    try:
        _, _, one_state = _chosen(args)
    except FilterError as exc:
        sys.stderr.write(args.usage())
        print(f"ustcp ss: {exc}", file=sys.stderr)
        return 2
    rows = select([row for reply in ctl.request_all("ss", name=args.control)  # every worker
                   for row in reply["sockets"]], args)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        # As ss: a filter that names one state leaves the State column out.
        sys.stdout.write(format_table(rows, timers=args.options, info=args.info,
                                      memory=args.memory, extended=args.extended,
                                      header=not args.no_header,
                                      state=not one_state))
    return 0
