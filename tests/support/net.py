"""Loopback networking for tests: free ports, a port already taken, plain HTTP requests."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now: bind it soon)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that this process listens on for the block: binding it fails."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def http_get(
    url: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET, HTTP errors included (they are answers too)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, **kwargs) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def send_json(handler: BaseHTTPRequestHandler, code: int, data: bytes) -> None:
    """Answer a fake server's request with `code` and `data` as its JSON body (whatever the bytes are:
    a fake may answer garbage on purpose)."""
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
