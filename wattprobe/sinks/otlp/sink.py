"""`wattprobe otlp`: send power and energy to an OpenTelemetry collector, OTLP over HTTP/protobuf.

One export per Frame, POSTed to ENDPOINT/v1/metrics by the OpenTelemetry SDK's exporter: host power and
energy under the hardware conventions' names (`hw.host.power`, `hw.host.energy`), sockets and RAPL
domains as `hw.power`/`hw.energy`, and per process, container, pod and VM `wattprobe.*.power` and
`wattprobe.*.energy` (no convention names those yet), with the conventions' attribute names. The
standard environment variables are honoured as the specification defines them; an option given wins.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from wattprobe.config.settings import option
from wattprobe.core.model import Frame
from wattprobe.errors import UsageError, WattprobeError
from wattprobe.sinks import Context, Remote, RemoteSink, Sink
from wattprobe.sinks.kit import options

if TYPE_CHECKING:
    from wattprobe.sinks.otlp.export import Exporter
    from wattprobe.sinks.otlp.metrics import MetricsData, Renderer

NAME = "otlp"
BUFFERED_EXPORTS = 360  # exports kept while the collector is away: an hour at the default step
HELP = "send power and energy to an OpenTelemetry collector (OTLP over HTTP)"

DEFAULT_ENDPOINT = "http://localhost:4318"
METRICS_PATH = "/v1/metrics"
ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"  # a base URL: /v1/metrics is appended
METRICS_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"  # the full URL, used as is
DEFAULT_TOP = 20  # as Prometheus
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)


def header_list(text: str) -> str:
    """`KEY=VALUE,...` as OTEL_EXPORTER_OTLP_HEADERS writes it (percent-encoded), checked; kept as
    given, so the secret it holds is redacted from command lines as written. Errors never show a value."""
    headers(text)
    return text


def headers(text: str) -> dict[str, str]:
    """The headers of a `KEY=VALUE,...` list, keys and values percent-decoded."""
    found: dict[str, str] = {}
    for number, entry in enumerate(text.split(","), 1):
        key, equals, value = entry.partition("=")
        key = unquote(key).strip()
        if not equals or not _TOKEN.fullmatch(key):
            raise argparse.ArgumentTypeError(
                f"entry {number} is not KEY=VALUE with KEY a header name "
                "(a list like KEY=VALUE,KEY2=VALUE2, values percent-encoded)"
            )
        found[key.lower()] = unquote(value).strip()
    return found


def check_url(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{where} must be an http:// or https:// URL, got {url!r}")
    return url


def endpoint(given: str | None, env: Mapping[str, str]) -> str:
    """Where the metrics go: --endpoint (a base URL; its path gets /v1/metrics unless it already ends
    so), else OTEL_EXPORTER_OTLP_METRICS_ENDPOINT as is, else OTEL_EXPORTER_OTLP_ENDPOINT with
    /v1/metrics appended, else http://localhost:4318/v1/metrics: the specification's order."""
    if given:
        base, where = given, "--endpoint"
    elif env.get(METRICS_ENDPOINT_ENV):
        return check_url(env[METRICS_ENDPOINT_ENV], METRICS_ENDPOINT_ENV)
    else:
        base, where = env.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT, ENDPOINT_ENV
    check_url(base, where)
    if urlsplit(base).path.rstrip("/").endswith(METRICS_PATH):
        return base
    return base.rstrip("/") + METRICS_PATH


@dataclass(frozen=True)
class Cadence(options.Cadence):
    step: float | None = options.step(10.0)


@dataclass(frozen=True)
class Settings:
    endpoint: str | None = option(
        None,
        metavar="URL",
        help=f"the collector's OTLP/HTTP address; {METRICS_PATH} is appended (default: "
        f"{METRICS_ENDPOINT_ENV} as is, else {ENDPOINT_ENV}, else {DEFAULT_ENDPOINT})",
    )
    headers: str | None = option(
        None,
        parse=header_list,
        secret=True,
        metavar="KEY=VALUE,...",
        help="HTTP headers of every export (an API key), values percent-encoded; over those of "
        "OTEL_EXPORTER_OTLP_HEADERS",
    )
    # `export_timeout` in the agent's file, where `timeout` is the agent's own (how long it runs).
    export_timeout: float = options.positive_seconds(
        10.0, "--timeout", what="seconds an export may take, its retries included"
    )
    compression: str | None = option(
        None,
        choices=("gzip", "none"),
        help="compress exports (default: OTEL_EXPORTER_OTLP_COMPRESSION, else none)",
    )
    ca_file: str | None = option(
        None, metavar="PEM", help="trust the collector's certificate from this CA (default: the system's)"
    )
    cert_file: str | None = option(None, metavar="PEM", help="client certificate, for mutual TLS")
    key_file: str | None = option(None, metavar="PEM", help="the private key of --cert-file")
    max_top_consumers: int = options.top(DEFAULT_TOP, what="per-process series (0: none)")
    process_regex: re.Pattern[str] | None = options.process_regex()

    def __post_init__(self) -> None:
        if self.endpoint is not None:
            check_url(self.endpoint, "--endpoint")
        if self.key_file and not self.cert_file:
            raise UsageError("--key-file needs --cert-file (the client certificate it belongs to)")

    @property
    def header_map(self) -> dict[str, str]:
        return headers(self.headers) if self.headers else {}


def create(settings: Settings, context: Context) -> Sink:
    """Check the endpoint and TLS files, and get ready to export: a mistake shows here, at start."""
    try:
        from wattprobe.sinks.otlp.export import Exporter
        from wattprobe.sinks.otlp.metrics import Renderer, resource
    except ImportError as error:
        raise WattprobeError(
            f"the otlp output needs the OpenTelemetry SDK ({error.name} is missing): "
            "pip install 'wattprobe[otlp]'"
        ) from None
    url = endpoint(settings.endpoint, os.environ)
    exporter = Exporter(
        url,
        headers=settings.header_map,
        timeout_s=settings.export_timeout,
        compression=settings.compression,
        ca_file=settings.ca_file,
        cert_file=settings.cert_file,
        key_file=settings.key_file,
    )
    renderer = Renderer(
        resource(context.hostname), context.hostname, settings.max_top_consumers, settings.process_regex
    )
    return OtlpSink(renderer, exporter)


class OtlpSink(RemoteSink["MetricsData"]):
    """Renders each Frame on the tick (its energy sums see every Frame, in order) and exports it off the
    tick, from the pipeline's queue: Retry when the collector may take it later (down, 429, 5xx, a
    timeout), Fatal when it never will (another 4xx)."""

    name = NAME

    def __init__(self, renderer: Renderer, exporter: Exporter) -> None:
        self.renderer = renderer
        self.exporter = exporter
        self.remote = Remote(f"otlp {exporter.url}", capacity=BUFFERED_EXPORTS)

    def render(self, frame: Frame) -> list[MetricsData]:
        return [self.renderer.render(frame)]

    def send(self, items: list[MetricsData]) -> None:
        for data in items:
            self.exporter.export(data)

    def close(self) -> None:
        self.exporter.close()
