"""An OTLP/HTTP metrics receiver on loopback, as a collector's `otlp` receiver takes exports: POST
/v1/metrics, an `ExportMetricsServiceRequest` in protobuf (gzip when Content-Encoding says so), decoded
with opentelemetry-proto's own classes, the wire format itself. It answers what `status` says (200,
or 503 for an outage), records every request and its points, and can serve TLS."""

from __future__ import annotations

import gzip
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from tests.support import warp10

CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


@dataclass(frozen=True)
class Point:
    """One data point as it arrived, with its metric's description."""

    name: str
    unit: str
    kind: str  # gauge or sum
    temporality: int  # for a sum
    monotonic: bool
    attributes: dict[str, Any]
    start_ns: int
    time_ns: int
    value: float
    resource: dict[str, Any]


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: ExportMetricsServiceRequest
    status: int  # what the receiver answered

    @property
    def points(self) -> list[Point]:
        return points(self.body)


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def points(body: ExportMetricsServiceRequest) -> list[Point]:
    found = []
    for rm in body.resource_metrics:
        resource = {kv.key: value_of(kv.value) for kv in rm.resource.attributes}
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data") or ""
                data = getattr(metric, kind)
                for p in data.data_points:
                    found.append(
                        Point(
                            metric.name,
                            metric.unit,
                            kind,
                            getattr(data, "aggregation_temporality", 0),
                            getattr(data, "is_monotonic", False),
                            {kv.key: value_of(kv.value) for kv in p.attributes},
                            p.start_time_unix_nano,
                            p.time_unix_nano,
                            p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int),
                            resource,
                        )
                    )
    return found


class Receiver(ThreadingHTTPServer):
    """Records every export (`requests`) and every protocol error (`errors`); answers `status`."""

    daemon_threads = True

    def __init__(self, port: int = 0, *, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.status = 200
        self.requests: list[Request] = []
        self.errors: list[str] = []
        self.peer_certs: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The base URL, as --endpoint takes it."""
        host = "localhost" if self.scheme == "https" else "127.0.0.1"
        return f"{self.scheme}://{host}:{self.server_address[1]}"

    def accepted(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.status == 200]

    def points(self, name: str | None = None) -> list[Point]:
        return [p for r in self.accepted() for p in r.points if name is None or p.name == name]

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Receiver
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector serves

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        if isinstance(self.connection, ssl.SSLSocket) and self.connection.getpeercert():
            self.server.peer_certs.append(self.connection.getpeercert())  # type: ignore[arg-type]
        errors = []
        if self.path != "/v1/metrics":
            errors.append(f"path {self.path}")
        if headers.get("content-type") != "application/x-protobuf":
            errors.append(f"content-type {headers.get('content-type')}")
        if headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        body = ExportMetricsServiceRequest()
        try:
            body.ParseFromString(raw)
        except Exception as error:
            errors.append(f"body: {error!r}")
        status = self.server.status
        with self.server.lock:
            self.server.errors += errors
            self.server.requests.append(Request(self.path, headers, body, status))
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


def environment(**extra: str) -> dict[str, str]:
    """This environment without OTEL_* variables or HTTP proxies (loopback must not go through one)."""
    return {k: v for k, v in warp10.environment().items() if not k.startswith("OTEL_")} | extra
