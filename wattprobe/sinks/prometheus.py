"""`wattprobe prometheus`: serve metrics for Prometheus to scrape.

A baseline and a first measurement are taken at start-up, so the first scrape already has power.
A scrape makes a new measurement unless the last one is younger than --min-interval; scrapes inside
one interval share one Frame. Power is the average over the window since the previous measurement;
energy counters are cumulative since start and never go backwards.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING

from wattprobe.errors import UsageError
from wattprobe.options import non_negative, port
from wattprobe.sinks import promoptions

if TYPE_CHECKING:
    from wattprobe.core.sampler import Sampler
    from wattprobe.sinks.metrics_http import MetricsServer

NAME = "prometheus"
HELP = "serve metrics for Prometheus to scrape (pull)"
DEFAULT_MIN_INTERVAL = 1.0
WARMUP_S = 0.5  # the first window: RAPL counters move every ~1 ms, so a few ms would be noise

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a", "--address", default="::", help="address to listen on (default :: = all, IPv4 too)"
    )
    parser.add_argument("-p", "--port", type=port, default=8080, help="TCP port (default 8080; 0: any free)")
    parser.add_argument("-s", "--suffix", default="metrics", help="metrics path: /SUFFIX (default metrics)")
    parser.add_argument(
        "--min-interval",
        type=non_negative,
        default=DEFAULT_MIN_INTERVAL,
        metavar="SECONDS",
        help=f"scrapes closer than this share one measurement (default {DEFAULT_MIN_INTERVAL:g})",
    )
    parser.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain)")
    parser.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    parser.add_argument(
        "--basic-auth-file",
        metavar="PATH",
        help="require HTTP basic auth with the USER:PASSWORD on this file's first line",
    )
    promoptions.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from wattprobe.core.sampler import open_sampler

    server = open_endpoint(args)
    try:
        sampler = open_sampler(args)
    except BaseException:
        server.server_close()
        raise
    try:
        serve(server, sampler, args)
    finally:
        server.server_close()
        sampler.close()
    return 0


def open_endpoint(args: argparse.Namespace) -> MetricsServer:
    """Check the options and listen: every user error shows here, before anything is measured."""
    from wattprobe.sinks.metrics_http import listen, read_credentials, tls_context

    path = "/" + args.suffix.strip("/")
    if path == "/":
        raise UsageError("--suffix must not be empty: / is the index page")
    tls = tls_context(args.tls_cert, args.tls_key)
    credentials = read_credentials(args.basic_auth_file)
    if credentials is not None and tls is None:
        log.warning("basic auth without TLS sends the password in clear; add --tls-cert and --tls-key")
    server = listen(args.address, args.port)
    server.metrics_path = path
    server.credentials = credentials
    if tls is not None:
        server.use_tls(tls)
    return server


def serve(server: MetricsServer, sampler: Sampler, args: argparse.Namespace) -> None:
    """Measure a first window, then answer scrapes until interrupted or server.shutdown()."""
    from wattprobe.sinks.promfamilies import FrameCollector

    sampler.tick()  # the baseline, then a first Frame: the first scrape has power, over a sane window
    time.sleep(WARMUP_S)
    sampler.tick()
    server.collector = FrameCollector(
        sampler, lambda: sampler.frame(args.min_interval) or sampler.tick(), promoptions.options_from(args)
    )
    print(f"wattprobe: serving metrics on {server.url()}", file=sys.stderr, flush=True)
    server.serve_forever(poll_interval=0.5)
