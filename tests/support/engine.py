"""A container engine's API on a unix socket, as Docker's and Podman's answer `GET /containers/json`
(with `all` and `filters={"id": [...]}`), and the ways a broken one fails: `mode` "garbage",
"forbidden", "slow" (answers nothing until `released`), "error" (HTTP 500). `refusing()` is a
socket nothing accepts on (connection refused)."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support.net import send_json


def container(
    cid: str, name: str, image: str = "localhost/app:latest", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """One entry of the engine's container list."""
    return {
        "Id": cid,
        "Names": [f"/{name}"],
        "Image": image,
        "Labels": labels or {},
        "State": "running",
        "Command": "/bin/sh",
    }


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@dataclass
class FakeEngine:
    path: Path
    containers: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "ok"
    requests: list[dict[str, list[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.released = threading.Event()
        self.server = _Server(str(self.path), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeEngine:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@contextlib.contextmanager
def refusing(path: Path) -> Iterator[Path]:
    """A unix socket at `path` that is bound but not listening: connecting is refused."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
        yield path


def _handler(engine: FakeEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def address_string(self) -> str:
            return "unix"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            engine.requests.append(query)
            if engine.mode == "slow":
                engine.released.wait(60)
            if engine.mode == "forbidden":
                return self._send(403, b'{"message":"permission denied"}')
            if engine.mode == "error":
                return self._send(500, b'{"message":"boom"}')
            if engine.mode == "garbage":
                return self._send(200, b"\x00\xffnot json at all")
            if url.path != "/containers/json":
                return self._send(404, b'{"message":"page not found"}')
            ids = json.loads(query.get("filters", ["{}"])[0]).get("id", [])
            listed = [c for c in engine.containers if not ids or any(c["Id"].startswith(i) for i in ids)]
            self._send(200, json.dumps(listed).encode())

        def _send(self, code: int, data: bytes) -> None:
            send_json(self, code, data)

    return Handler
