"""A Kubernetes API server on loopback for the pods of a node: HTTPS with a CA of its own, a bearer
token required, and `GET /api/v1/pods` answered as the API documents it: a PodList (paged with
`limit` and `continue`, `fieldSelector=spec.nodeName=NODE`), or with `watch=1&resourceVersion=RV` one
event a line (`{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": {...}}`), chunked.

`mode` makes it misbehave as a broken or hostile server would: "garbage", "unauthorized",
"forbidden", "slow" (answers nothing until `release`d), "huge" (a PodList that never ends).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.net import send_json
from tests.support.pki import make_pki

TOKEN = "k8s-bearer-5ecret-t0ken-value"


def pod(
    uid: str,
    name: str,
    namespace: str = "default",
    node: str = "node-a",
    containers: dict[str, str] | None = None,
    *,
    runtime: str = "containerd",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Pod object as the API gives it: `containers` maps each container's name to its id."""
    statuses = [
        {
            "name": cname,
            "containerID": f"{runtime}://{cid}",
            "image": f"registry.example/{cname}:1.0",
            "ready": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": "2026-12-06T10:00:00Z"}},
        }
        for cname, cid in (containers or {}).items()
    ]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": "0",
            "annotations": annotations or {},
            "labels": {"app": name},
        },
        "spec": {"nodeName": node, "containers": [{"name": c, "image": "x"} for c in containers or {}]},
        "status": {"phase": "Running", "containerStatuses": statuses},
    }


def status(code: int, reason: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": reason,
        "reason": reason,
        "code": code,
    }


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that refuses the certificate, or hangs up mid-answer: what the tests make


@dataclass
class FakeKubeApi:
    directory: Path
    token: str = TOKEN
    mode: str = "ok"
    version: int = 1000
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    requests: list[dict[str, list[str]]] = field(default_factory=list)  # the queries, in order
    expired_below: int = 0  # a watch from an older version is told 410 (Expired)

    def __post_init__(self) -> None:
        pki = make_pki(self.directory)
        self.ca_file = pki["ca.pem"]
        self.token_file = self.directory / "token"
        self.token_file.write_text(self.token + "\n")
        self.changed = threading.Condition()
        self.released = threading.Event()
        self.stopped = threading.Event()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki["localhost.pem"], pki["localhost.key"])
        self.server = _Server(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def args(self, node: str = "node-a") -> list[str]:
        """The agent's global options to ask this server for `node`'s pods."""
        return [
            "--kubernetes-api",
            self.url,
            "--kubernetes-token-file",
            str(self.token_file),
            "--kubernetes-ca-file",
            str(self.ca_file),
            "--node-name",
            node,
        ]

    def __enter__(self) -> FakeKubeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.released.set()
        with self.changed:
            self.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def put(self, obj: dict[str, Any], kind: str | None = None) -> None:
        """Add or change a pod: a new resourceVersion, an ADDED or MODIFIED event."""
        with self.changed:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            uid = obj["metadata"]["uid"]
            event = kind or ("MODIFIED" if uid in self.pods else "ADDED")
            self.pods[uid] = obj
            self.events.append((self.version, event, json.loads(json.dumps(obj))))
            self.changed.notify_all()

    def delete(self, uid: str) -> None:
        with self.changed:
            self.version += 1
            obj = self.pods.pop(uid)
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.events.append((self.version, "DELETED", obj))
            self.changed.notify_all()

    def lists(self) -> int:
        """The list requests answered so far (watches not counted)."""
        return sum(1 for q in self.requests if "watch" not in q)

    def watches(self) -> int:
        return sum(1 for q in self.requests if "watch" in q)


def _handler(api: FakeKubeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            api.requests.append(query)
            if self.headers.get("Authorization") != f"Bearer {api.token}" or api.mode == "unauthorized":
                return self._json(401, status(401, "Unauthorized"))
            if api.mode == "forbidden":
                return self._json(403, status(403, "Forbidden"))
            if api.mode == "slow":
                api.released.wait(60)
            if url.path != "/api/v1/pods":
                return self._json(404, status(404, "NotFound"))
            if api.mode == "garbage":
                return self._send(200, b"<html>It works!</html>")
            if api.mode == "huge":
                return self._endless()
            selector = query.get("fieldSelector", [""])[0]
            node = selector.removeprefix("spec.nodeName=") if selector.startswith("spec.nodeName=") else None
            if "watch" in query:
                return self._watch(node, int(query.get("resourceVersion", ["0"])[0] or 0))
            return self._list(node, query)

        def _list(self, node: str | None, query: dict[str, list[str]]) -> None:
            with api.changed:
                items = sorted(
                    (p for p in api.pods.values() if node is None or p["spec"]["nodeName"] == node),
                    key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]),
                )
                version = api.version
            start, at = 0, version
            if "continue" in query:
                start, at = json.loads(base64.b64decode(query["continue"][0]))
            limit = int(query.get("limit", ["0"])[0]) or len(items)
            page = items[start : start + limit]
            meta: dict[str, Any] = {"resourceVersion": str(at)}
            if start + limit < len(items):
                meta["continue"] = base64.b64encode(json.dumps([start + limit, at]).encode()).decode()
                meta["remainingItemCount"] = len(items) - start - limit
            self._json(200, {"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": page})

        def _watch(self, node: str | None, since: int) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if since < api.expired_below:
                self._chunk({"type": "ERROR", "object": status(410, "Expired")})
                return self._chunk(None)
            sent = since
            deadline = time.monotonic() + float(self._query_value("timeoutSeconds") or 300)
            while not api.stopped.is_set() and time.monotonic() < deadline:
                with api.changed:
                    new = [e for e in api.events if e[0] > sent]
                    if not new:
                        api.changed.wait(0.2)
                        continue
                for version, kind, obj in new:
                    sent = version
                    if node is None or obj["spec"]["nodeName"] == node:
                        try:
                            self._chunk({"type": kind, "object": obj})
                        except OSError:
                            return
            self._chunk(None)

        def _query_value(self, key: str) -> str | None:
            values = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get(key)
            return values[0] if values else None

        def _chunk(self, event: dict[str, Any] | None) -> None:
            data = b"" if event is None else json.dumps(event).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _endless(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            self.wfile.write(b'{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[')
            filler = b" " * (1 << 20)
            try:
                while not api.stopped.is_set():
                    self.wfile.write(filler)
            except OSError:
                pass

        def _json(self, code: int, body: dict[str, Any]) -> None:
            self._send(code, json.dumps(body).encode())

        def _send(self, code: int, data: bytes) -> None:
            send_json(self, code, data)

    return Handler
