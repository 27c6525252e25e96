"""Linux constants a script may name, and evaluation of system call arguments."""

from __future__ import annotations

from .ast import (
    BinaryExpr,
    BraceExpr,
    CallExpr,
    EllipsisExpr,
    Expr,
    IntExpr,
    ListExpr,
    StringExpr,
    WordExpr,
)


class Unsupported(Exception):
    """The script needs something the stack or the runner lacks; the script is skipped."""


SYMBOLS: dict[str, int] = {
    "NULL": 0,
    "AF_UNSPEC": 0, "AF_INET": 2, "AF_INET6": 10, "PF_INET": 2, "PF_INET6": 10,
    "SOCK_STREAM": 1, "IPPROTO_TCP": 6, "IPPROTO_IP": 0,
    "SOL_SOCKET": 1, "SOL_TCP": 6, "SOL_IP": 0,
    "SO_REUSEADDR": 2, "SO_ERROR": 4, "SO_SNDBUF": 7, "SO_RCVBUF": 8, "SO_KEEPALIVE": 9,
    "SO_LINGER": 13, "SO_ZEROCOPY": 60, "SO_MAX_PACING_RATE": 47,
    "TCP_NODELAY": 1, "TCP_MAXSEG": 2, "TCP_CORK": 3, "TCP_KEEPIDLE": 4,
    "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 6, "TCP_SYNCNT": 7, "TCP_LINGER2": 8,
    "TCP_DEFER_ACCEPT": 9,
    "TCP_INFO": 11, "TCP_QUICKACK": 12, "TCP_CONGESTION": 13, "TCP_USER_TIMEOUT": 18,
    "TCP_NOTSENT_LOWAT": 25, "TCP_INQ": 36, "TCP_CM_INQ": 36,
    "TCP_FASTOPEN": 23,
    "TCP_FASTOPEN_CONNECT": 30,
    "IP_TOS": 1, "IP_MTU_DISCOVER": 10, "IP_PMTUDISC_DONT": 0, "IP_PMTUDISC_WANT": 1,
    "IP_PMTUDISC_DO": 2,
    "F_GETFL": 3, "F_SETFL": 4, "O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2,
    "O_NONBLOCK": 0o4000,
    "MSG_OOB": 0x1, "MSG_PEEK": 0x2, "MSG_DONTWAIT": 0x40, "MSG_EOR": 0x80,
    "MSG_NOSIGNAL": 0x4000, "MSG_MORE": 0x8000,
    "MSG_FASTOPEN": 0x20000000, "MSG_ZEROCOPY": 0x4000000,
    "SHUT_RD": 0, "SHUT_WR": 1, "SHUT_RDWR": 2,
    "SIOCINQ": 0x541B, "FIONREAD": 0x541B, "SIOCOUTQ": 0x5411, "TIOCOUTQ": 0x5411,
    "POLLIN": 0x1, "POLLPRI": 0x2, "POLLOUT": 0x4, "POLLERR": 0x8, "POLLHUP": 0x10,
    "POLLNVAL": 0x20, "POLLRDNORM": 0x40, "POLLWRNORM": 0x100, "POLLRDHUP": 0x2000,
    "EPOLL_CTL_ADD": 1, "EPOLL_CTL_DEL": 2, "EPOLL_CTL_MOD": 3,
    "EPOLLIN": 0x1, "EPOLLPRI": 0x2, "EPOLLOUT": 0x4, "EPOLLERR": 0x8, "EPOLLHUP": 0x10,
    "EPOLLRDNORM": 0x40, "EPOLLRDBAND": 0x80, "EPOLLWRNORM": 0x100, "EPOLLWRBAND": 0x200,
    "EPOLLRDHUP": 0x2000, "EPOLLEXCLUSIVE": 1 << 28, "EPOLLONESHOT": 1 << 30,
    "EPOLLET": 1 << 31,
}


def evaluate(expr: Expr) -> int | None:
    """The integer an argument stands for; ``None`` for ``...``. ``[x]`` is a pointer to x."""
    if isinstance(expr, EllipsisExpr):
        return None
    if isinstance(expr, IntExpr):
        return expr.value
    if isinstance(expr, WordExpr):
        if expr.name not in SYMBOLS:
            raise Unsupported(f"symbol {expr.name}")
        return SYMBOLS[expr.name]
    if isinstance(expr, BinaryExpr) and expr.op == "|":
        lhs, rhs = evaluate(expr.lhs), evaluate(expr.rhs)
        if lhs is None or rhs is None:
            raise Unsupported("'...' inside an expression")
        return lhs | rhs
    if isinstance(expr, ListExpr) and len(expr.items) == 1:
        return evaluate(expr.items[0])
    raise Unsupported(f"argument {expr!r}")


def c_int(value: int) -> int:
    """A value as the C int a socket option holds (0xffffffff is -1), as packetdrill passes
    and compares option values."""
    return (value + (1 << 31)) % (1 << 32) - (1 << 31)


def symbol_name(expr: Expr) -> str:
    """The name a script uses for a constant (for messages and support checks)."""
    if isinstance(expr, WordExpr):
        return expr.name
    if isinstance(expr, IntExpr):
        return str(expr.value)
    return "..."


def render_expr(expr: Expr) -> str:
    """An expression in script syntax (for -v output)."""
    if isinstance(expr, EllipsisExpr):
        return "..."
    if isinstance(expr, IntExpr):
        return str(expr.value)
    if isinstance(expr, WordExpr):
        return expr.name
    if isinstance(expr, StringExpr):
        return f'"{expr.value}"'
    if isinstance(expr, BinaryExpr):
        return f"{render_expr(expr.lhs)}{expr.op}{render_expr(expr.rhs)}"
    if isinstance(expr, ListExpr):
        return "[" + ", ".join(render_expr(i) for i in expr.items) + "]"
    if isinstance(expr, BraceExpr):
        return "{" + ", ".join(render_expr(i) for i in expr.items) + "}"
    if isinstance(expr, CallExpr):
        return f"{expr.name}(" + ", ".join(render_expr(a) for a in expr.args) + ")"
    fields = []
    for member in expr.fields:
        arg = f"({render_expr(member.arg)})" if member.arg is not None else ""
        fields.append(f"{member.name}{arg}={render_expr(member.value)}")
    return "{" + ", ".join(fields) + "}"
