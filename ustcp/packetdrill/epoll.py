"""epoll for the engine target: an interest list over script sockets, ready as Linux's
eventpoll.c makes it (ep_insert, ep_modify, ep_poll_callback, ep_send_events).

Readiness is the socket layer's (``Sock.poll``, tcp_poll's bits). A level-triggered item is
reported whenever that readiness meets its mask. An edge-triggered one (EPOLLET) sits on the
ready list only from a wake-up of its socket until the next epoll_wait looks at it, and is
reported then if its readiness meets the mask; the wake-ups are those Linux sends: data or a
FIN made receivable (sk_data_ready: RCV.NXT moved), a connection queued on a listener, a state
change or an error (sk_state_change, sk_error_report), and room for a writer that found the
buffer full (sk_stream_write_space: SOCK_NOSPACE cleared, ``Sender.check_space``). Reading
part of the queue, or an ACK while no writer waits, wakes nobody. EPOLLONESHOT disarms an item
once reported, until EPOLL_CTL_MOD; ADD and MOD look at the socket at once (ep_item_poll).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from ..tcp.sock import Sock
from .symbols import SYMBOLS

EPOLLET = SYMBOLS["EPOLLET"]
EPOLLONESHOT = SYMBOLS["EPOLLONESHOT"]
EPOLLEXCLUSIVE = SYMBOLS["EPOLLEXCLUSIVE"]
EPOLLWAKEUP = 1 << 29
EP_PRIVATE_BITS = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE
ALWAYS = SYMBOLS["EPOLLERR"] | SYMBOLS["EPOLLHUP"]  # epoll_ctl adds them to every mask
CTL_ADD, CTL_DEL, CTL_MOD = (SYMBOLS[n] for n in ("EPOLL_CTL_ADD", "EPOLL_CTL_DEL",
                                                  "EPOLL_CTL_MOD"))


def os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass(slots=True)
class WakeMarks:
    """What of a socket's state wakes its waiters when it changes."""

    received: int  # RCV.NXT, or a listener's accept queue length
    nospace: bool  # SOCK_NOSPACE: a writer waits for room
    state: int
    error: bool

    @staticmethod
    def of(sock: Sock) -> WakeMarks:
        listener, conn = sock.listener, sock.conn
        if listener is not None:
            return WakeMarks(listener.accept_queue_len, False, -1, listener.closed)
        if conn is None:
            return WakeMarks(0, False, 0, False)
        return WakeMarks(conn.rcv.rcv_nxt, conn.snd.nospace, int(conn.state),
                         conn.error is not None)

    def woken_by(self, new: WakeMarks, listening: bool) -> bool:
        received = new.received > self.received if listening \
            else new.received != self.received
        return received or (self.nospace and not new.nospace) or new.state != self.state \
            or (new.error and not self.error)


@dataclass(slots=True)
class EpollItem:
    sock: Sock
    events: int  # the mask with its EPOLLET / EPOLLONESHOT bits
    data: int  # epoll_data as the script writes it (its fd)
    ready: bool  # on the ready list
    marks: WakeMarks


class Epoll:
    """One epoll instance: its interest list by script fd."""

    def __init__(self) -> None:
        self.items: dict[int, EpollItem] = {}

    def ctl(self, op: int, fd: int, sock: Sock, events: int, data: int) -> None:
        item = self.items.get(fd)
        if op == CTL_DEL:
            if item is None:
                raise os_error(errno.ENOENT)
            del self.items[fd]
            return
        if op not in (CTL_ADD, CTL_MOD):
            raise os_error(errno.EINVAL)
        events |= ALWAYS
        ready = bool(sock.poll() & events)  # ep_item_poll at once
        if op == CTL_ADD:
            if item is not None:
                raise os_error(errno.EEXIST)
            self.items[fd] = EpollItem(sock, events, data, ready, WakeMarks.of(sock))
            return
        if item is None:
            raise os_error(errno.ENOENT)
        if events & EPOLLEXCLUSIVE or item.events & EPOLLEXCLUSIVE:
            raise os_error(errno.EINVAL)  # ep_modify refuses exclusive items
        item.events, item.data = events, data
        item.ready = item.ready or ready

    def forget(self, sock: Sock) -> None:
        """The socket closed (eventpoll_release): its items go."""
        for fd in [fd for fd, item in self.items.items() if item.sock is sock]:
            del self.items[fd]

    def observe(self) -> None:
        """ep_poll_callback for the wake-ups since the last look: edge-triggered items of a
        woken socket go on the ready list."""
        for item in self.items.values():
            marks = WakeMarks.of(item.sock)
            if item.marks.woken_by(marks, item.sock.listener is not None):
                item.ready = True
            item.marks = marks

    def wait(self, maxevents: int) -> list[tuple[int, int]]:
        """ep_send_events: up to ``maxevents`` (events, data) pairs."""
        if maxevents <= 0:
            raise os_error(errno.EINVAL)
        self.observe()
        out: list[tuple[int, int]] = []
        for item in self.items.values():
            if len(out) >= maxevents:
                break
            if item.events & EPOLLET:
                if not item.ready:
                    continue
                item.ready = False  # off the ready list, reported or not
            revents = item.sock.poll() & item.events & ~EP_PRIVATE_BITS
            if not revents:
                continue
            out.append((revents, item.data))
            if item.events & EPOLLONESHOT:
                item.events &= EP_PRIVATE_BITS  # disarmed until EPOLL_CTL_MOD
        return out
