"""`wattprobe prometheus-push`: push metrics to a Prometheus Pushgateway every step.

Each step's metrics replace the group /SUFFIX/job/JOB/instance/HOSTNAME (HTTP PUT), so series of
processes that left the top N disappear too. A remote sink: the PUT leaves the tick
(`wattprobe.pipeline.delivery`), a gateway that is down is retried with backoff (1 s doubling to 60 s),
said once when it goes and once when it is back, always with the latest metrics only; an answer 4xx
drops that body. The agent keeps measuring meanwhile.
"""

from __future__ import annotations

import base64
import http.client
import logging
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote

from wattprobe.config.settings import option
from wattprobe.config.values import port
from wattprobe.core.model import Frame
from wattprobe.errors import UsageError
from wattprobe.sinks import Context, Rejected, Remote, RemoteSink, Retry, Sink
from wattprobe.sinks.kit import options
from wattprobe.sinks.kit.net import netloc
from wattprobe.sinks.prometheus.series import SeriesSettings, series_host_facts

NAME = "prometheus-push"
HELP = "push metrics to a Prometheus Pushgateway every step"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TIMEOUT_S = 10.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cadence(options.Cadence):
    step: float | None = options.step(30.0, what="measurements and pushes")


@dataclass(frozen=True)
class Settings(SeriesSettings):
    host: str = option("localhost", "-H", "--host", help="Pushgateway host (default localhost)")
    port: int = option(9091, "-p", "--port", parse=port, help="Pushgateway port (default 9091)")
    suffix: str = option("metrics", help="Pushgateway API path (default metrics)")
    scheme: str = option("http", "-S", "--scheme", choices=("http", "https"), help="default http")
    job: str = option("wattprobe", "-j", "--job", help="job label of the pushed group (default wattprobe)")
    no_tls_check: bool = option(False, help="with https: accept any certificate (self-signed, wrong name)")

    def __post_init__(self) -> None:
        if not self.job:
            raise UsageError("--job must not be empty")


host_facts = series_host_facts  # read by sinks.writes_host_facts


def create(settings: Settings, context: Context) -> Sink:
    return PushSink(settings, context.hostname)


def group_url(scheme: str, host: str, port: int, suffix: str, job: str, instance: str) -> str:
    """The Pushgateway URL of the group job/instance; values with a / are base64-encoded, as its API asks."""
    path = "".join(f"/{p}" for p in suffix.split("/") if p)
    return f"{scheme}://{netloc(host, port)}{path}/{_segment('job', job)}/{_segment('instance', instance)}"


def _segment(label: str, value: str) -> str:
    if value and "/" not in value:
        return f"{label}/{quote(value, safe='')}"
    return f"{label}@base64/{base64.urlsafe_b64encode(value.encode()).decode() or '='}"


class PushSink(RemoteSink[bytes]):
    """Renders each Frame on the tick; the latest body is PUT off the tick (an unsent older one is replaced)."""

    name = NAME

    def __init__(self, settings: Settings, hostname: str) -> None:
        from wattprobe.sinks.prometheus.families import FrameCollector

        self.url = group_url(
            settings.scheme, settings.host, settings.port, settings.suffix, settings.job, hostname
        )
        self.context = ssl.create_default_context()
        if settings.no_tls_check:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        self._frame: Frame | None = None
        hostname_label = hostname if settings.naming == "scaphandre" else None  # as Scaphandre pushes
        self._collector = FrameCollector(lambda: self._frame, settings, hostname_label)
        self.remote = Remote(f"push to {self.url}", capacity=1)  # a group's new body replaces the last
        print(f"wattprobe: pushing to {self.url}", file=sys.stderr, flush=True)

    def render(self, frame: Frame) -> list[bytes]:
        self._frame = frame
        return [self._collector.exposition()[0]]

    def send(self, bodies: list[bytes]) -> None:
        request = urllib.request.Request(
            self.url, data=bodies[-1], method="PUT", headers={"Content-Type": CONTENT_TYPE}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=self.context) as response:
                response.read()
        except urllib.error.HTTPError as error:
            detail = error.read(200).decode(errors="replace").strip()
            why = f"HTTP {error.code} {error.reason}{': ' + detail if detail else ''}"
            if 400 <= error.code < 500 and error.code not in (408, 429):
                raise Rejected(why) from None
            raise Retry(why) from None
        except urllib.error.URLError as error:
            raise Retry(str(error.reason)) from None
        except (OSError, http.client.HTTPException) as error:
            raise Retry(str(error) or type(error).__name__) from None
