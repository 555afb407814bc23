"""Prometheus scrapes of thousands of process series, against prometheus_client's own exposition of them.

The agent runs as users run it (`wattprobe --procfs-root FAKE prometheus -m N --min-interval 2
--naming NAMING`), on a synthetic powercap tree and a synthetic procfs tree in which every one of
N processes uses CPU between two measurements, so every one is a consumer with its own series
(`-m N`). Before each round the benchmark advances the processes' CPU time and waits for the last
measurement to age past `--min-interval`; it then times two GETs of /metrics from a client on
loopback, to the end of the body: the first makes a fresh measurement (the /proc scan, the
attribution and the rendering: what a Prometheus server pays at each scrape), the second, inside
the interval, is served from the Frame the first one made (the exporter alone). Rounds alternate
between a plain GET (text format 0.0.4) and a GET as Prometheus 2.x sends it (OpenMetrics preferred,
gzip), so both see the same conditions. The first round warms the caches and is not counted.

The reference, measured in the same rounds by the benchmark itself: the same pipeline in this
process (`open_sampler` on the same trees) takes a measurement of the same processes (the tick),
and the samples of its Frame are put in a CollectorRegistry as plain prometheus_client metric
families (GaugeMetricFamily, CounterMetricFamily, InfoMetricFamily), built beforehand; the time
prometheus_client's `generate_latest` takes to write them is the reference, timed alternately with
the exporter's own writing of the same Frame (`FrameCollector.exposition`, the render side).
"""

from __future__ import annotations

import gzip
import re
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from benchmarks.common import Budget, Result, has_prometheus, median, ms, scratch_dir
from benchmarks.swarm import raise_limits
from tests.support import agents
from tests.support.powercap_tree import PowercapTree
from tests.support.procfs import FakeProc
from wattprobe.core.model import Frame
from wattprobe.pipeline.wiring import open_sampler
from wattprobe.sources import SourceSettings

# What Prometheus 2.x sends with every scrape.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def _get(url: str, as_prometheus: bool) -> tuple[float, bytes, int]:
    """Seconds to the end of the body, the body (decompressed), and the bytes on the wire."""
    headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"} if as_prometheus else {}
    request = urllib.request.Request(url, headers=headers)
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        raw = response.read()
        elapsed = time.perf_counter() - start
        encoding = response.headers.get("Content-Encoding", "")
    return elapsed, gzip.decompress(raw) if encoding == "gzip" else raw, len(raw)


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def reference_registry(frame: Frame, naming: str, top: int) -> CollectorRegistry:
    """The samples the exporter writes for `frame`, in plain prometheus_client metric families."""
    from wattprobe.sinks.kit import catalogue
    from wattprobe.sinks.prometheus.families import labels_of, selected_consumers
    from wattprobe.sinks.prometheus.series import SeriesSettings

    opts = SeriesSettings(naming=naming, max_top_consumers=top)
    found: dict[catalogue.Family, list[catalogue.Sample]] = {f: [] for f in catalogue.families(naming)}
    for sample in catalogue.samples(frame, selected_consumers(frame, opts), labels_of(opts)):
        found[sample.family].append(sample)
    families: list[Metric] = []
    for family, samples in found.items():
        name, kind = family.name(naming) or "", family.kind_in(naming)
        unit = family.unit if naming != "scaphandre" and name.endswith("_" + family.unit) else ""
        keys = list(samples[0].labels) if samples else []
        metric: GaugeMetricFamily | CounterMetricFamily | InfoMetricFamily
        if kind == "counter":
            metric = CounterMetricFamily(name, family.help, labels=keys, unit=unit)
        elif kind == "info":
            metric = InfoMetricFamily(name, family.help, labels=keys)
        else:
            metric = GaugeMetricFamily(name, family.help, labels=keys, unit=unit)
        for sample in samples:
            values = [sample.labels[key] for key in keys]
            if isinstance(metric, InfoMetricFamily):
                metric.add_metric(values, {})
            else:
                metric.add_metric(values, family.value_in(naming, sample.value))
        families.append(metric)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return registry


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def measure(
    n: int, naming: str, rounds: int, tmp: Path, min_interval_s: float = 2.0, renders: int = 3
) -> dict[str, float]:
    from wattprobe.sinks.prometheus.families import FrameCollector
    from wattprobe.sinks.prometheus.series import SeriesSettings

    proc = FakeProc(tmp / f"proc-{naming}-{n}", n)
    tree = PowercapTree(tmp / f"powercap-{naming}-{n}")
    log_path = tmp / f"agent-{naming}-{n}.log"
    command = agents.on_tree(tree.root, "--procfs-root", str(proc.root), "prometheus", "-a", "127.0.0.1")
    command += ["-p", "0", "-m", str(n), "--naming", naming, "--min-interval", str(min_interval_s)]
    sampler = open_sampler(
        SourceSettings(name="powercap_rapl", powercap_root=str(tree.root), procfs_root=str(proc.root))
    )
    latest: list[Frame | None] = [None]
    collector = FrameCollector(lambda: latest[0], SeriesSettings(naming=naming, max_top_consumers=n))
    times: dict[str, list[float]] = {
        k: [] for k in ("fresh", "shared", "fresh_prom", "shared_prom", "tick", "render", "reference")
    }
    body = reference_body = b""
    wire_prom = 0
    try:
        with tree.running(period_s=0.05), agents.serving(command, log_path, timeout_s=120) as agent:
            sampler.tick()  # this process's baseline
            for i in range(1 + 2 * rounds):
                proc.advance(min_interval_s)
                time.sleep(min_interval_s + 0.1)  # the agent's last measurement ages past the interval
                as_prometheus = i % 2 == 1
                t_fresh, _, wire = _get(agent.url, as_prometheus)
                t_shared, served, wire = _get(agent.url, as_prometheus)
                start = time.perf_counter()
                latest[0] = sampler.tick()  # the same processes, measured here
                t_tick = time.perf_counter() - start
                reference = reference_registry(latest[0], naming, n)
                renders_here, references_here = [], []
                for _ in range(renders):  # alternately: both see the same conditions
                    renders_here.append(_timed(collector.exposition))
                    references_here.append(_timed(generate_latest, reference))
                if i == 0:
                    continue  # warm-up: static facts of every process read once
                if as_prometheus:
                    times["fresh_prom"].append(t_fresh)
                    times["shared_prom"].append(t_shared)
                    wire_prom = wire
                else:
                    times["fresh"].append(t_fresh)
                    times["shared"].append(t_shared)
                    body = served
                times["tick"].append(t_tick)
                times["render"] += renders_here
                times["reference"] += references_here
            reference_body = generate_latest(reference)
    finally:
        sampler.close()
    text = body.decode()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    reference_lines = [line for line in reference_body.decode().splitlines() if not line.startswith("#")]
    if len(reference_lines) != len(lines):
        raise RuntimeError(f"the reference holds {len(reference_lines)} samples, the scrape {len(lines)}")
    return {
        "processes": n,
        "series": len(lines),
        "process_series": sum(1 for line in lines if 'pid="' in line),
        "consumers": len({m.group(1) for m in re.finditer(r'pid="(\d+)"', text)}),
        "bytes": len(body),
        "bytes_prometheus": wire_prom,
        **{key: median(values) if values else float("nan") for key, values in times.items()},
    }


def bench(
    sizes: tuple[int, ...] = (10_000,),
    target_series: int | None = 10_000,
    rounds: int = 4,
    min_interval_s: float = 2.0,
) -> Result:
    """`sizes`: processes per run; plus, per naming, as many processes as make `target_series` process series."""
    result = Result("scrape", "Prometheus scrape with many process series", __doc__.split("\n", 2)[2])
    if not has_prometheus():
        result.notes.append(
            "Not measured: this tree has no Prometheus exporter (wattprobe/sinks/prometheus/)."
        )
        return result
    raise_limits(2 * max(sizes) + 1024)
    rows = [
        [
            "naming",
            "processes",
            "process series",
            "all series",
            "body",
            "as Prometheus asks (gzip)",
            "scrape, fresh measurement",
            "scrape, shared Frame",
            "fresh, as Prometheus asks",
            "shared, as Prometheus asks",
            "tick",
            "render (here)",
            "prometheus_client exposition",
            "shared scrape / exposition",
        ]
    ]
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        for naming in ("native", "scaphandre"):
            runs = [measure(n, naming, rounds, Path(tmp), min_interval_s) for n in sizes]
            per_process = runs[0]["process_series"] / max(runs[0]["consumers"], 1)
            if target_series and per_process:
                n_target = max(1, round(target_series / per_process))
                if n_target not in sizes:
                    runs.append(measure(n_target, naming, rounds, Path(tmp), min_interval_s))
            for m in runs:
                rows.append(
                    [
                        naming,
                        f"{m['processes']:,}",
                        f"{m['process_series']:,}",
                        f"{m['series']:,}",
                        f"{m['bytes'] / 1e6:.2f} MB",
                        f"{m['bytes_prometheus'] / 1e6:.2f} MB",
                        ms(m["fresh"]),
                        ms(m["shared"]),
                        ms(m["fresh_prom"]),
                        ms(m["shared_prom"]),
                        ms(m["tick"]),
                        ms(m["render"]),
                        ms(m["reference"]),
                        f"{m['shared'] / m['reference']:.2f}",
                    ]
                )
                result.numbers |= {f"{naming}_{m['processes']}_{k}": v for k, v in m.items()}
            closest = min(runs, key=lambda m: abs(m["process_series"] - (target_series or 0)))
            series, reference = closest["process_series"], closest["reference"]
            result.budgets += [
                Budget(
                    f"{naming}: scrape of {series:,} process series (shared Frame) / prometheus_client's "
                    "exposition of them",
                    closest["shared"] / reference,
                    2.0,
                    "×",
                ),
                Budget(
                    f"{naming}: scrape of {series:,} process series with a fresh measurement, within "
                    f"2 × exposition ({ms(reference)}) + tick ({ms(closest['tick'])})",
                    closest["fresh"] * 1e3,
                    (2 * reference + closest["tick"]) * 1e3,
                    "ms",
                ),
            ]
    result.tables.append(rows)
    return result
