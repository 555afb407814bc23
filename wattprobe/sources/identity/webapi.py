"""What the name sources share: HTTP over a unix socket, bounded reads, and one line per outage.

The container engine's API is HTTP on a unix socket. The standard library speaks HTTP (http.client)
but only over TCP; a connection whose `connect` opens an AF_UNIX socket is all it lacks. The
libraries that add it (requests-unixsocket, docker's SDK) pull in requests and urllib3 for these
few lines, so they are not used.
"""

from __future__ import annotations

import http.client
import logging
import socket
import time

from wattprobe.retry import Outage

log = logging.getLogger("wattprobe.sources.identity")

CHUNK = 1 << 16


class ApiError(Exception):
    """A name source did not answer as it should; the message says why and what to do, in one line."""


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client's connection over a unix socket (`path`) instead of TCP."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def read_bounded(response: http.client.HTTPResponse, limit: int, deadline: float, what: str) -> bytes:
    """The body of `response`, at most `limit` bytes and read before `deadline` (time.monotonic());
    ApiError when it is longer or slower (what a source answers is not trusted to be small)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise ApiError(f"{what} did not send its answer in time")
        chunk = response.read1(CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ApiError(f"{what} answered more than {limit >> 20} MB: not read")
        chunks.append(chunk)


def outage(source: str) -> Outage:
    """One line when `source` stops answering, one when it answers again: not one a tick."""
    return Outage(log, source, back="answers again: names from it are back")
