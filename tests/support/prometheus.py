"""Helpers for the Prometheus tests: Frames collected through a registry, scrapes of real endpoints,
Debian-packaged servers, the exporter served in this process or run as an agent."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.support import agents
from tests.support.net import http_get
from tests.support.paths import DEPLOY
from tests.support.waiting import wait_for
from wattprobe.cli import build_parser
from wattprobe.config import settings
from wattprobe.core.model import AgentStats, Frame
from wattprobe.core.sampler import Sampler
from wattprobe.sinks.prometheus import sink as prometheus
from wattprobe.sinks.prometheus.families import FrameCollector
from wattprobe.sinks.prometheus.series import SeriesSettings

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "wattprobe.json"
# The agent's own figures, fixed so that their series can be asserted (a real collector reads them
# from this process).
AGENT_STATS = AgentStats(
    cpu_seconds=1.5,
    cpu_percent=2.0,
    peak_rss_bytes=40_000_000,
    rss_bytes=30_000_000,
    vsize_bytes=90_000_000,
    tick_seconds=0.002,
    processes_tracked=7,
)
Found = dict[str, list[tuple[dict[str, str], float]]]  # sample name -> (labels, value) of each series

# What Prometheus 2.x sends as Accept when it scrapes.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


# -- Frames through the collector, as prometheus_client collects them ----------------------------
def registry(frame: Frame | None, series: SeriesSettings) -> CollectorRegistry:
    """A registry holding the exporters' collector of `frame` (None: before any measurement), with the
    agent's own figures fixed at AGENT_STATS."""
    fixed = dataclasses.replace(frame, agent=AGENT_STATS) if frame is not None else None
    collected = CollectorRegistry(auto_describe=False)
    collected.register(FrameCollector(lambda: fixed, series))
    return collected


def samples(collected: CollectorRegistry, name: str) -> list[tuple[dict[str, str], float]]:
    """The labels and value of every sample called `name`."""
    return [(s.labels, s.value) for m in collected.collect() for s in m.samples if s.name == name]


def all_samples(collected: CollectorRegistry) -> Found:
    """Every sample of the registry, by name."""
    found: Found = {}
    for metric in collected.collect():
        for s in metric.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def sample_names(collected: CollectorRegistry) -> set[str]:
    return {s.name for m in collected.collect() for s in m.samples}


def family_names(collected: CollectorRegistry) -> set[str]:
    return {m.name for m in collected.collect()}


# -- real endpoints ------------------------------------------------------------------------------
def dashboard_expressions() -> list[str]:
    """Every PromQL expression of the shipped Grafana dashboard."""

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                yield node["expr"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    return list(walk(json.loads(DASHBOARD.read_text())))


def binary(name: str) -> str:
    """The path of a Debian-packaged server, or skip the test saying how to get it."""
    path = shutil.which(name)
    if path is None:
        package = {"promtool": "prometheus"}.get(name, name)
        pytest.skip(f"{name} not installed (apt-get install {package}; scripts/test.sh installs it)")
    return path


def parse(text: str) -> Found:
    """The samples of a text-format (0.0.4) exposition, by the name they carry there (prometheus_client's
    parser adds _total to a counter's samples that lack it, as Scaphandre's energy counters do)."""
    found: Found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name
            if family.type == "counter" and f"\n{name}" not in text:
                name = family.name
            found.setdefault(name, []).append((s.labels, s.value))
    return found


def scrape(url: str, **kwargs: Any) -> Found:
    """GET `url` as Prometheus does (text format 0.0.4), and parse it."""
    status, headers, body = http_get(url, **kwargs)
    assert status == 200, body
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(body.decode())


def one(found: Found, name: str, **labels: str) -> float:
    """The value of the one series called `name` whose labels include `labels`."""
    values = [v for lab, v in found.get(name, []) if all(lab.get(k) == want for k, want in labels.items())]
    assert len(values) == 1, (name, labels, found.get(name))
    return values[0]


@contextmanager
def exporter(powercap_root: Path, *args: str) -> Iterator[agents.Served]:
    """`wattprobe prometheus` on a synthetic tree, on loopback, any free port, serving."""
    with agents.serving(
        agents.on_tree(powercap_root, "prometheus", "-a", "127.0.0.1", "-p", "0", *args)
    ) as agent:
        yield agent


@contextmanager
def serving(sampler: Sampler, *args: str) -> Iterator[str]:
    """`wattprobe prometheus ARGS` served from this process with `sampler`; yields the metrics URL.

    Serving starts with the sampler's latest Frame (as the runner starts it with a first Frame), or,
    when it has made none, with the first one it makes.
    """
    options = build_parser().parse_args(["prometheus", "-a", "127.0.0.1", "-p", "0", *args])
    sink = prometheus.PrometheusSink(settings.from_namespace(prometheus.Settings, options), sampler.frame)
    try:
        sink.write(sampler.latest or wait_for(sampler.tick, 5, "a first Frame"))  # baseline, then a window
        yield sink.url
    finally:
        sink.close()
