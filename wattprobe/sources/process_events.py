"""New processes, told by the kernel's process events, so that /proc need not be listed after a fork.

The proc connector (netlink, NETLINK_CONNECTOR, CN_IDX_PROC) sends its listeners an event for each
fork, exec and exit on the machine. It sends them in the initial network namespace, and takes a
listener only in the initial user and pid namespaces (its events name pids as the initial pid
namespace does) and, before Linux 6.6, with CAP_NET_ADMIN. So the reader asks for them only where
the procfs it reads is the agent's own, and keeps them only once it heard the fork of a thread it
started, under the pids it sees; elsewhere it lists /proc after a fork, as before. Events that did
not fit in the socket's buffer are lost, and the kernel says so (ENOBUFS): that scan lists /proc.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)

_NETLINK_CONNECTOR = 11
_CN_IDX_PROC = 1
_CN_VAL_PROC = 1
_LISTEN = 1  # enum proc_cn_mcast_op
_IGNORE = 2
_NONE = 0x0  # enum proc_cn_event: an acknowledgement
_FORK = 0x1
_NLMSG_DONE = 3
_SO_RCVBUFFORCE = 33  # asm-generic/socket.h: SO_RCVBUF past net.core.rmem_max (CAP_NET_ADMIN)
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # struct cn_msg: idx, val, seq, ack, len, flags (then the data)
# struct proc_event: what, cpu, timestamp_ns, then (a fork) parent pid and tgid, child pid and tgid;
# (an acknowledgement) err in the first of those.
_EVENT = struct.Struct("=IIQiiii")
_EVENT_AT = _HEADER.size + _CN_MSG.size
BUFFER_BYTES = 4 << 20  # the socket's receive buffer: thousands of events between two scans
_ANSWER_S = 0.2  # how long to wait for the kernel's answer to a request, or for an event it sends at once


class ForkEvents:
    """A proc connector socket listening to forks; `born()` gives the processes born since its last call."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._pending = select.poll()
        self._pending.register(sock, select.POLLIN)
        self._seq = 0
        self._listening = False  # the kernel counted our request to listen (undone at close)

    def born(self) -> dict[int, int] | None:
        """The processes (not threads) born since the last call, some perhaps gone already: pid ->
        its parent's (the process that will reap it); None when events were lost, or the socket
        failed (then for good)."""
        born: dict[int, int] = {}
        lost = False
        while self._pending.poll(0):  # a poll, not a read refused with an exception: most scans find none
            try:
                data = self._sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as error:
                if error.errno == errno.ENOBUFS:  # the buffer overflowed: read on, and say so
                    lost = True
                    continue
                log.debug("process events failed: %s; /proc is listed after a fork", error)
                self.close()
                return None
            for what, _, parent, child, child_tgid in _events(data):
                if what == _FORK and child == child_tgid:
                    born[child] = parent
        return None if lost else born

    @property
    def closed(self) -> bool:
        """Closed, or failed for good."""
        return self._sock.fileno() < 0

    def close(self) -> None:
        if self.closed:
            return
        if self._listening:
            with contextlib.suppress(OSError):
                self._request(_IGNORE)
        self._sock.close()

    def _request(self, op: int) -> int:
        """Send `op`; the `ack` its answer carries (the kernel answers with the one it got, plus one)."""
        self._seq += 1
        data = struct.pack("=I", op)
        message = _CN_MSG.pack(_CN_IDX_PROC, _CN_VAL_PROC, self._seq, self._seq, len(data), 0) + data
        self._sock.send(_HEADER.pack(_HEADER.size + len(message), _NLMSG_DONE, 0, 0, 0) + message)
        return self._seq + 1

    def _listen(self) -> bool:
        """Ask to listen; whether the kernel said yes."""
        ack = self._request(_LISTEN)
        for reply in self._replies():
            if len(reply) < _EVENT_AT or _CN_MSG.unpack_from(reply, _HEADER.size)[3] != ack:
                continue
            for what, err, _, _, _ in _events(reply):
                if what == _NONE:
                    self._listening = err == 0
                    return self._listening
        return False

    def _hears_own_thread(self) -> bool:
        """Whether the fork of a thread started now comes, under the pids this process sees."""
        tid: list[int] = []
        thread = threading.Thread(target=lambda: tid.append(threading.get_native_id()), name="fork check")
        thread.start()
        thread.join()
        for reply in self._replies():
            for what, _, _, child, child_tgid in _events(reply):
                if what == _FORK and child_tgid == os.getpid() and child == tid[0]:
                    return True
        return False

    def _replies(self) -> Iterator[bytes]:
        """What comes on the socket for _ANSWER_S (other processes' events too)."""
        end = time.monotonic() + _ANSWER_S
        while (left := end - time.monotonic()) > 0 and self._pending.poll(left * 1000):
            yield self._sock.recv(65536)


def _events(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """Each event of a datagram: (what, then the first, second, third and fourth of its data)."""
    found = []
    at = 0
    while at + _EVENT_AT + _EVENT.size <= len(data):
        length = _HEADER.unpack_from(data, at)[0]
        what, _, _, a, b, c, d = _EVENT.unpack_from(data, at + _EVENT_AT)
        found.append((what, a, b, c, d))
        if length < _HEADER.size:
            break
        at += (length + 3) & ~3  # NLMSG_ALIGN
    return found


def open_fork_events(buffer_bytes: int = BUFFER_BYTES) -> ForkEvents | None:
    """Fork events, where the kernel gives them to this process and they name the pids it sees;
    else None."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, _NETLINK_CONNECTOR)
    except OSError as error:
        log.debug("no process events: %s; /proc is listed after a fork", error)
        return None
    events = ForkEvents(sock)
    try:
        sock.bind((0, _CN_IDX_PROC))
        for option in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):  # the first one past the system's cap
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, buffer_bytes)
                break
        if events._listen() and events._hears_own_thread():
            events.born()  # what came with the check
            return events
        log.debug(
            "no process events here (not root, or not in the initial namespaces): /proc is listed after a fork"
        )
    except OSError as error:
        log.debug("no process events: %s; /proc is listed after a fork", error)
    events.close()
    return None
