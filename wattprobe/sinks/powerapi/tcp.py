"""PowerAPI's socket input: one JSON report per line over TCP, sent off the tick (see `PowerApiSink`)."""

from __future__ import annotations

import socket

from wattprobe.sinks import Retry
from wattprobe.sinks.kit.net import netloc


class SocketSender:
    """One connection to a PowerAPI socket input, opened when needed and closed after a failure."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 2.0) -> None:
        self.address = (host, port)
        self.where = netloc(host, port)
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None

    def send(self, lines: list[bytes]) -> None:
        """Send `lines` (each one JSON document ending in a newline); Retry when they could not go.

        A connection that broke since the last send (PowerAPI restarted) is reopened at once, once.
        """
        data = b"".join(lines)
        while True:
            fresh = self._sock is None
            try:
                if self._sock is None:
                    self._sock = socket.create_connection(self.address, timeout=self.timeout_s)
                _check_open(self._sock, self.timeout_s)
                self._sock.sendall(data)
                return
            except OSError as error:
                self.close()
                if fresh:
                    raise Retry(str(error)) from None

    def close(self) -> None:
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
