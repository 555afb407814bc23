"""`wattprobe warp10` (also `warpten`): send power to a Warp 10 platform as Geo Time Series.

Every step, one POST to /api/v0/update with the write token in the X-Warp10-Token header and one
GTS input line per point: `TS// class{label=value,...} VALUE`, TS in microseconds since the epoch,
VALUE a number (integer for energy counters, decimal for power), class and labels percent-encoded
(UTF-8) as Warp 10 decodes them. A remote sink: posting leaves the tick (`wattprobe.pipeline.delivery`),
points that cannot be sent (server down, 5xx, 408, 429, timeout) wait in a bounded buffer, oldest dropped
first when it is full, and go out, in order, once the server answers; points another 4xx refused are
dropped. The token is never logged.
"""

from __future__ import annotations

import http.client
import logging
import math
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote

from wattprobe.config.settings import option
from wattprobe.config.values import count, port
from wattprobe.core.model import Frame
from wattprobe.errors import UsageError, WattprobeError
from wattprobe.sinks import Context, Rejected, Remote, RemoteSink, Retry, Sink
from wattprobe.sinks.kit import options, points
from wattprobe.sinks.kit.net import netloc
from wattprobe.sinks.kit.points import Point, frame_points
from wattprobe.sinks.kit.workloads import Ledger

NAME = "warp10"
HELP = "send power to a Warp 10 platform (GTS over HTTP)"

log = logging.getLogger(__name__)

TOKEN_ENV = "SCAPH_WARP10_WRITE_TOKEN"
UPDATE_PATH = "/api/v0/update"
TIMEOUT_S = 10.0
BATCH = 10_000  # lines per POST when catching up after an outage
RETRYABLE = (408, 429)  # 4xx answers worth sending again; any other 4xx will never succeed


@dataclass(frozen=True)
class Cadence(options.Cadence):
    step: float | None = options.step(2.0)


@dataclass(frozen=True)
class Settings:
    host: str = option("localhost", "-H", "--host", help="Warp 10 host name or IP (default localhost)")
    port: int = option(8080, "-p", "--port", parse=port, help="Warp 10 port (default 8080)")
    scheme: str = option("http", "-S", "--scheme", choices=("http", "https"), help="default http")
    write_token: str | None = option(
        None,
        "-t",
        "--write-token",
        secret=True,
        help=f"Warp 10 write token (default: the {TOKEN_ENV} environment variable)",
    )
    qemu: bool = options.qemu("add a vmname label to QEMU/KVM guest processes")
    max_buffered_points: int = option(
        100_000,
        parse=count,
        metavar="N",
        help="points kept while Warp 10 is unreachable, oldest dropped first; at least one step's worth "
        "(default 100000)",
    )

    def __post_init__(self) -> None:
        if self.max_buffered_points < 1:
            raise UsageError("--max-buffered-points must be at least 1")

    @property
    def token(self) -> str:
        token = self.write_token or os.environ.get(TOKEN_ENV)
        if not token:
            raise WattprobeError(f"no Warp 10 write token: pass -t/--write-token TOKEN or set {TOKEN_ENV}")
        return token


host_facts = points.host_facts  # read by sinks.writes_host_facts


def create(settings: Settings, context: Context) -> Sink:
    url = f"{settings.scheme}://{netloc(settings.host, settings.port)}{UPDATE_PATH}"
    return Warp10Sink(Warp10Client(url, settings.token), settings, context.hostname)


class Warp10Sink(RemoteSink[str]):
    """GTS lines made on the tick; POSTed off the tick, in order, kept while the server is away."""

    name = NAME

    def __init__(self, client: Warp10Client, settings: Settings, hostname: str) -> None:
        self.client = client
        self.settings = settings
        self.hostname = hostname
        self.remote = Remote(f"warp10 {client.url}", capacity=settings.max_buffered_points, batch=BATCH)
        self.ledger = Ledger()  # the workloads' energy counters

    def render(self, frame: Frame) -> list[str]:
        ts_us = int(frame.timestamp * 1e6)
        points = [
            p
            for p in frame_points(frame, qemu=self.settings.qemu, ledger=self.ledger)
            if math.isfinite(p.value)
        ]
        return [gts_line(p, ts_us, self.hostname) for p in points]

    def send(self, lines: list[str]) -> None:
        self.client.post(lines)


def _encode(text: str) -> str:
    """Percent-encode every byte outside letters, digits and `-._~` (spaces as %20, never `+`)."""
    return quote(text, safe="")


def gts_line(point: Point, ts_us: int, host: str) -> str:
    """One GTS input line, with the host as the first label."""
    labels = ",".join(f"{_encode(k)}={_encode(v)}" for k, v in (("host", host), *point.labels) if v != "")
    # repr() of a float always has a '.' or an exponent, so Warp 10 stores a decimal; an int stays a long.
    return f"{ts_us}// {_encode(point.name)}{{{labels}}} {point.value!r}"


class Warp10Client:
    """POSTs GTS lines with the write token, which it never writes to a log."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self._token = token

    def post(self, lines: list[str]) -> None:
        """Send `lines`; Retry when the server may take them later, Rejected when it never will."""
        request = urllib.request.Request(
            self.url,
            data=("\n".join(lines) + "\n").encode(),
            method="POST",
            headers={"X-Warp10-Token": self._token, "Content-Type": "text/plain; charset=utf-8"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                response.read()
        except urllib.error.HTTPError as error:
            body = self._redact(error.read(500).decode(errors="replace").strip())
            if 400 <= error.code < 500 and error.code not in RETRYABLE:
                raise Rejected(f"HTTP {error.code}: {body}") from None
            raise Retry(f"HTTP {error.code}: {body}") from None
        # URLError, timeouts and resets are OSErrors; a garbled answer is an HTTPException.
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise Retry(self._redact(str(getattr(error, "reason", error)))) from None

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "<token>")
