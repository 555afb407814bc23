"""`wattprobe prometheus`: serve metrics for Prometheus to scrape.

Alone, it measures on demand: a baseline and a first measurement are taken at start-up, so the first
scrape already has power, and a scrape makes a new measurement unless the last one is younger than
--min-interval (scrapes inside one interval share one Frame). Beside other outputs (`wattprobe agent`)
it serves the agent's latest Frame, measured at the agent's step. Power is the average over the
window since the previous measurement; energy counters are cumulative since start and never go back.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wattprobe.config.settings import option
from wattprobe.config.values import non_negative, port
from wattprobe.core.model import Frame
from wattprobe.errors import UsageError
from wattprobe.sinks import Context, Sink
from wattprobe.sinks.kit import options
from wattprobe.sinks.prometheus.series import SeriesSettings, series_host_facts

if TYPE_CHECKING:
    from wattprobe.sinks.prometheus.server import MetricsServer

NAME = "prometheus"
HELP = "serve metrics for Prometheus to scrape (pull)"
PULL = True  # measures when scraped; needs no step when it is the only output
# Scrapes closer than this share one Frame. Well under a second, so that a Prometheus scraping every
# second gets a new window at every scrape (its scrapes come a few ms early as often as late), while
# scrapers that arrive together (an HA pair, a burst) still share one measurement.
DEFAULT_MIN_INTERVAL = 0.25

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cadence(options.Cadence):
    step: float | None = None  # no option: scrapes set the pace (PULL)


@dataclass(frozen=True)
class Settings(SeriesSettings):
    address: str = option("::", "-a", "--address", help="address to listen on (default :: = all, IPv4 too)")
    port: int = option(8080, "-p", "--port", parse=port, help="TCP port (default 8080; 0: any free)")
    suffix: str = option("metrics", "-s", "--suffix", help="metrics path: /SUFFIX (default metrics)")
    min_interval: float = option(
        DEFAULT_MIN_INTERVAL,
        parse=non_negative,
        metavar="SECONDS",
        help=f"scrapes closer than this share one measurement (default {DEFAULT_MIN_INTERVAL:g})",
    )
    tls_cert: str | None = option(None, metavar="PEM", help="serve HTTPS with this certificate (chain)")
    tls_key: str | None = option(None, metavar="PEM", help="the private key of --tls-cert")
    basic_auth_file: str | None = option(
        None, metavar="PATH", help="require HTTP basic auth with the USER:PASSWORD on this file's first line"
    )

    def __post_init__(self) -> None:
        if not self.suffix.strip("/"):
            raise UsageError("--suffix must not be empty: / is the index page")


host_facts = series_host_facts  # read by sinks.writes_host_facts


def create(settings: Settings, context: Context) -> Sink:
    return PrometheusSink(settings, context.fresh)


class PrometheusSink:
    """Serves the Frames as metrics. With `fresh` (it is the only output), a scrape measures anew unless
    the last measurement is younger than --min-interval; else it serves the last Frame written."""

    name = NAME

    def __init__(self, settings: Settings, fresh: Callable[[float], Frame | None] | None = None) -> None:
        from wattprobe.sinks.prometheus.families import FrameCollector

        self.settings = settings
        self.latest: Frame | None = None
        self._fresh = fresh
        self.server = open_endpoint(settings)
        self.server.collector = FrameCollector(self._frame, settings)
        self._thread: threading.Thread | None = None

    def _frame(self) -> Frame | None:
        if self._fresh is not None:
            return self._fresh(self.settings.min_interval) or self.latest
        return self.latest

    def write(self, frame: Frame) -> None:
        self.latest = frame
        self.server.collector.add(frame)  # between scrapes too: every Frame's energy is counted
        if self._thread is None:  # serve once there is a Frame: the first scrape already has power
            self._thread = threading.Thread(target=self._serve, name="prometheus", daemon=True)
            self._thread.start()
            print(f"wattprobe: serving metrics on {self.server.url()}", file=sys.stderr, flush=True)

    def _serve(self) -> None:
        try:
            self.server.serve_forever()
        except Exception as error:  # the listening socket broke: say so; the agent goes on without it
            log.error("prometheus: stopped serving: %r", error)

    @property
    def url(self) -> str:
        return self.server.url()

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(5)
        self.server.server_close()


def open_endpoint(settings: Settings) -> MetricsServer:
    """Check the files the options name, and listen: a user error shows here, before a scrape."""
    from wattprobe.sinks.prometheus.server import listen, read_credentials, tls_context

    tls = tls_context(settings.tls_cert, settings.tls_key)
    credentials = read_credentials(settings.basic_auth_file)
    if credentials is not None and tls is None:
        log.warning("basic auth without TLS sends the password in clear; add --tls-cert and --tls-key")
    server = listen(settings.address, settings.port)
    server.metrics_path = "/" + settings.suffix.strip("/")
    server.credentials = credentials
    if tls is not None:
        server.use_tls(tls)
    return server
