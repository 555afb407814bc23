"""`wattprobe prometheus-push`: push metrics to a Prometheus Pushgateway every step.

Each step's metrics replace the group /SUFFIX/job/JOB/instance/HOSTNAME (HTTP PUT), so series of
processes that left the top N disappear too. A gateway that is down or refuses is retried with
backoff inside the step, logged, and tried again with the next step's metrics: the agent keeps running.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import logging
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import quote

from wattprobe.errors import UsageError
from wattprobe.options import port, positive
from wattprobe.sinks import promoptions

NAME = "prometheus-push"
HELP = "push metrics to a Prometheus Pushgateway every step"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_BACKOFF_S = 30.0

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-H", "--host", default="localhost", help="Pushgateway host (default localhost)")
    parser.add_argument("-p", "--port", type=port, default=9091, help="Pushgateway port (default 9091)")
    parser.add_argument("--suffix", default="metrics", help="Pushgateway API path (default metrics)")
    parser.add_argument("-S", "--scheme", choices=("http", "https"), default="http", help="default http")
    parser.add_argument(
        "-s", "--step", type=positive, default=30, help="seconds between measurements and pushes (default 30)"
    )
    parser.add_argument(
        "-j", "--job", default="wattprobe", help="job label of the pushed group (default wattprobe)"
    )
    parser.add_argument(
        "--no-tls-check",
        action="store_true",
        help="with https: accept any certificate (self-signed, wrong name)",
    )
    promoptions.add_arguments(parser)


def group_url(scheme: str, host: str, port: int, suffix: str, job: str, instance: str) -> str:
    """The Pushgateway URL of the group job/instance; values with a / are base64-encoded, as its API asks."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    path = "".join(f"/{p}" for p in suffix.split("/") if p)
    return f"{scheme}://{host}:{port}{path}/{_segment('job', job)}/{_segment('instance', instance)}"


def _segment(label: str, value: str) -> str:
    if value and "/" not in value:
        return f"{label}/{quote(value, safe='')}"
    return f"{label}@base64/{base64.urlsafe_b64encode(value.encode()).decode() or '='}"


class Pusher:
    """PUTs bodies to one URL; failures are retried with backoff until a deadline, then logged."""

    def __init__(self, url: str, *, timeout_s: float, verify_tls: bool = True) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.context = ssl.create_default_context()
        if not verify_tls:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        self.failing = False

    def push(self, body: bytes, deadline: float) -> bool:
        """Push `body`, retrying (1 s, 2 s, 4 s... apart) while the next try can start before `deadline`."""
        delay, attempts = 1.0, 0
        while True:
            attempts += 1
            try:
                self._put(body)
            except _PushError as error:
                if time.monotonic() + delay >= deadline:
                    log.warning(
                        "push to %s failed (%s, %d attempt%s); trying again at the next step",
                        self.url, error, attempts, "s" if attempts > 1 else "",
                    )  # fmt: skip
                    self.failing = True
                    return False
                log.info("push to %s failed (%s); retrying in %g s", self.url, error, delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            if self.failing:
                log.warning("push to %s works again", self.url)
                self.failing = False
            return True

    def _put(self, body: bytes) -> None:
        request = urllib.request.Request(
            self.url, data=body, method="PUT", headers={"Content-Type": CONTENT_TYPE}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self.context) as response:
                response.read()
        except urllib.error.HTTPError as error:
            detail = error.read(200).decode(errors="replace").strip()
            raise _PushError(f"HTTP {error.code} {error.reason}{': ' + detail if detail else ''}") from None
        except urllib.error.URLError as error:
            raise _PushError(str(error.reason)) from None
        except (OSError, http.client.HTTPException) as error:
            raise _PushError(str(error) or type(error).__name__) from None


class _PushError(Exception):
    pass


def run(args: argparse.Namespace) -> int:
    from prometheus_client.exposition import generate_latest

    from wattprobe.core.sampler import open_sampler
    from wattprobe.sinks.promfamilies import FrameCollector

    if not args.job:
        raise UsageError("--job must not be empty")
    url = group_url(args.scheme, args.host, args.port, args.suffix, args.job, socket.gethostname())
    pusher = Pusher(url, timeout_s=min(5.0, args.step), verify_tls=not args.no_tls_check)
    sampler = open_sampler(args)
    current = None
    collector = FrameCollector(sampler, lambda: current, promoptions.options_from(args))
    print(f"wattprobe: pushing to {url} every {args.step:g} s", file=sys.stderr, flush=True)
    try:
        for frame in sampler.frames(args.step):
            current = frame
            try:
                body = generate_latest(collector)
            except Exception as error:  # a bug must not stop the agent: this step is lost, not the next
                log.error("cannot render the metrics: %r", error, exc_info=log.isEnabledFor(logging.DEBUG))
                continue
            pusher.push(body, deadline=time.monotonic() + 0.8 * args.step)
    finally:
        sampler.close()
    return 0
