"""A Warp 10 ingress stand-in on loopback that checks every request and line, for the tests of every
output that sends to Warp 10."""

from __future__ import annotations

import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

TOKEN = "wr1te-T0ken.with+odd/chars=="

# TS/LAT:LON/ELEV CLASS{LABELS} VALUE; we send no location: `TS// class{k=v,...} value`.
ENCODED = r"(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})+"
GTS = re.compile(
    rf"^(\d{{16}})// ({ENCODED})\{{((?:{ENCODED}={ENCODED})(?:,{ENCODED}={ENCODED})*)?\}} (\S+)$"
)
LONG = re.compile(r"^-?\d+$")
DOUBLE = re.compile(r"^-?\d+(\.\d+)?(e[+-]?\d+)?$")


class Ingress(ThreadingHTTPServer):
    """Accepts POST /api/v0/update with the right token; records parsed points and every protocol error."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.points: list[tuple[int, str, dict[str, str], int | float]] = []
        self.errors: list[str] = []
        self.requests = 0
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def count(self, name: str) -> int:
        return sum(1 for p in self.points if p[1] == name)


class Handler(BaseHTTPRequestHandler):
    server: Ingress

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.errors.append(f"GET {self.path}")
        self.send_error(405)

    do_PUT = do_GET

    def do_POST(self) -> None:
        self.server.requests += 1
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        if self.path != "/api/v0/update":
            self.server.errors.append(f"path {self.path}")
        if self.headers.get("X-Warp10-Token") != TOKEN:
            self.server.errors.append(f"token {self.headers.get('X-Warp10-Token')!r}")
            self.send_error(403)
            return
        for line in body.splitlines():
            match = GTS.match(line)
            if match is None:
                self.server.errors.append(f"line {line!r}")
                continue
            ts, name, labels, value = match.groups()
            if not (LONG.match(value) or DOUBLE.match(value)):
                self.server.errors.append(f"value {value!r}")
                continue
            pairs = dict(pair.split("=") for pair in labels.split(",")) if labels else {}
            self.server.points.append(
                (
                    int(ts),
                    unquote(name),
                    {unquote(k): unquote(v) for k, v in pairs.items()},
                    int(value) if LONG.match(value) else float(value),
                )
            )
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def environment(**extra: str) -> dict[str, str]:
    """This environment without a Warp 10 token or HTTP proxies (loopback must not go through one)."""
    drop = {
        "SCAPH_WARP10_WRITE_TOKEN",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    }
    return {k: v for k, v in os.environ.items() if k not in drop} | extra
