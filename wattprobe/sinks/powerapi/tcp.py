"""A client of PowerAPI's socket input: one JSON report per line over TCP, from a background thread.

`send()` only queues, so the agent's tick never waits on the network. The thread connects,
sends, and on any failure reconnects with a growing pause (0.5 s to 5 s), keeping up to
`max_pending` reports meanwhile and dropping the oldest beyond that.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import deque

log = logging.getLogger(__name__)

MIN_PAUSE_S = 0.5
MAX_PAUSE_S = 5.0


class SocketClient:
    def __init__(self, host: str, port: int, *, max_pending: int = 10_000, timeout_s: float = 2.0) -> None:
        self.address = (host, port)
        self.timeout_s = timeout_s
        self.dropped = 0
        self._pending: deque[bytes] = deque(maxlen=max_pending)
        self._wake = threading.Condition()
        self._closing = False
        self._sock: socket.socket | None = None
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="powerapi-socket", daemon=True)
        self._thread.start()

    @property
    def where(self) -> str:
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def send(self, lines: list[bytes]) -> None:
        """Queue lines (each one JSON document ending in a newline) without blocking."""
        with self._wake:
            overflow = len(self._pending) + len(lines) - (self._pending.maxlen or 0)
            if overflow > 0:
                self.dropped += overflow
                log.warning(
                    "PowerAPI socket %s: %d reports dropped, none sent for a while", self.where, overflow
                )
            self._pending.extend(lines)
            self._wake.notify()

    def close(self, flush_s: float = 2.0) -> None:
        """Send what is queued for up to flush_s seconds, then stop."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(flush_s)
        self._disconnect()

    def _run(self) -> None:
        pause = MIN_PAUSE_S
        while True:
            with self._wake:
                while not self._pending and not self._closing:
                    self._wake.wait()
                if not self._pending:
                    return
                line = self._pending[0]
            if self._sock is None and not self._connect():
                if self._closing:
                    return
                with self._wake:
                    self._wake.wait(pause)
                pause = min(pause * 2, MAX_PAUSE_S)
                continue
            sock = self._sock
            try:
                if sock is None:
                    raise ConnectionResetError("closed")
                _check_open(sock, self.timeout_s)
                sock.sendall(line)
            except OSError as error:
                log.warning("PowerAPI socket %s: connection lost (%s); reconnecting", self.where, error)
                self._disconnect()
                continue
            pause = MIN_PAUSE_S
            with self._wake:
                if self._pending and self._pending[0] is line:
                    self._pending.popleft()

    def _connect(self) -> bool:
        try:
            self._sock = socket.create_connection(self.address, timeout=self.timeout_s)
        except OSError as error:
            # Once per outage at warning level, then quietly.
            level = logging.DEBUG if self._failing else logging.WARNING
            log.log(level, "PowerAPI socket %s: cannot connect (%s); retrying", self.where, error)
            self._failing = True
            return False
        log.info("PowerAPI socket %s: connected", self.where)
        self._failing = False
        return True

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _check_open(sock: socket.socket, timeout_s: float) -> None:
    """Raise if the peer closed the connection: a send would still succeed once and be lost."""
    sock.setblocking(False)
    try:
        if sock.recv(1, socket.MSG_PEEK) == b"":
            raise ConnectionResetError("closed by the peer")
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(timeout_s)
