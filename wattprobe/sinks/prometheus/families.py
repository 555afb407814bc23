"""Frames as Prometheus metric families, for the pull (`prometheus`) and push (`prometheus-push`) sinks.

The families, names, units and labels are the catalogue's (`sinks.kit.catalogue`), in the naming asked.
Every family is emitted at every scrape, empty when nothing feeds it, so the set of names is stable.
Per-process series are bounded (top N or a regex, or none; every VM with --qemu) and their cmdline
label is cut; aggregates always cover every process. The collector keeps the workloads' energy
counters (`sinks.kit.workloads.Ledger`): each Frame it is given or renders is added to them once.

Exposition is prometheus_client's, each series' name and labels written once (`writer.Writer`).
Scaphandre's names are served as text format 0.0.4 only, as Scaphandre serves them: its energy
counters have no `_total` suffix, which OpenMetrics requires and which prometheus_client's 0.0.4
writer adds to a counter's TYPE line, so `exposition()` renames those TYPE and HELP lines back to
the name their samples carry.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from wattprobe.core.model import Consumer, Frame
from wattprobe.sinks.kit import catalogue
from wattprobe.sinks.kit.catalogue import Family, Labels
from wattprobe.sinks.kit.selection import select_consumers
from wattprobe.sinks.kit.workloads import Ledger
from wattprobe.sinks.prometheus.series import SeriesSettings
from wattprobe.sinks.prometheus.writer import Encoder, Head, Writer

TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
_WRITERS = 4  # formats whose lines are kept at once (a scraper may ask for any version)


def labels_of(opts: SeriesSettings, hostname: str | None = None) -> Labels:
    return Labels(opts.naming, opts.cmdline_max_length, opts.qemu, opts.containers, hostname)


def selected_consumers(frame: Frame, opts: SeriesSettings) -> list[Consumer]:
    """The processes that get their own series: top N or regex matches, plus VMs with --qemu."""
    chosen = list(select_consumers(frame, opts.max_top_consumers, opts.process_regex))
    if opts.qemu:
        pids = {c.info.pid for c in chosen}
        chosen += [c for c in frame.consumers if c.info.pid not in pids and c.info.vm]
    return chosen


def render(
    frame: Frame | None, opts: SeriesSettings, hostname: str | None = None, ledger: Ledger | None = None
) -> list[Metric]:
    """The families of one Frame in the chosen naming (None: no Frame yet, families stay empty);
    `ledger`, with the Frame added, gives the workloads' energy counters."""
    metrics = []
    for head, samples in grouped(frame, opts, hostname, ledger):
        metric = head.metric()
        for labels, value in samples:
            metric.add_sample(head.sample_name, labels, value)
        metrics.append(metric)
    return metrics


def grouped(
    frame: Frame | None,
    opts: SeriesSettings,
    hostname: str | None = None,
    ledger: Ledger | None = None,
    made: catalogue.ProcessLabels | None = None,
) -> list[tuple[Head, list[tuple[dict[str, str], float]]]]:
    """Each family of the naming, in order, with its samples' labels and values (see `render`);
    `made`, made for these settings, keeps the processes' labels from one call to the next."""
    labels = made.labels if made is not None else labels_of(opts, hostname)
    naming = opts.naming
    heads = _heads(naming)
    found: dict[Family, list[tuple[dict[str, str], float]]] = {family: [] for family in heads}
    samples: Iterable[catalogue.Sample]
    if frame is not None:
        samples = catalogue.samples(frame, selected_consumers(frame, opts), labels, ledger, made)
    else:
        samples = catalogue.agent_samples(None, labels)
    if naming == "scaphandre":  # its units and integers
        for family, named, value in samples:
            found[family].append((named, family.value_in(naming, value)))
    else:
        for family, named, value in samples:
            found[family].append((named, value))
    return [(heads[family], found[family]) for family in heads]


@functools.cache
def _heads(naming: str) -> dict[Family, Head]:
    """Each family of a naming, in order, as a Metric of it is made."""
    heads = {}
    for family in catalogue.families(naming):
        name = family.name(naming) or ""
        kind = family.kind_in(naming)
        unit = family.unit if naming != "scaphandre" and name.endswith("_" + family.unit) else ""
        base = name.removesuffix("_total") if kind == "counter" else name
        heads[family] = Head(base, family.help, kind, unit, family.sample_name(naming))
    return heads


class FrameCollector(Collector):
    """A prometheus_client Collector: each collect() renders the Frame `frame_source` gives."""

    def __init__(
        self, frame_source: Callable[[], Frame | None], opts: SeriesSettings, hostname: str | None = None
    ) -> None:
        self.frame_source = frame_source
        self.opts = opts
        self.hostname = hostname
        self._labels = catalogue.ProcessLabels(labels_of(opts, hostname))  # kept between scrapes
        self.ledger = catalogue.ledger_for(opts.naming)
        self._writers: dict[str, Writer] = {}  # by content type: each keeps its format's lines
        self._chosen: dict[str, tuple[Encoder, str]] = {}  # encoder and content type, by Accept header

    def add(self, frame: Frame) -> None:
        """Count the Frame's energy (each Frame once: the sink gives it, or a scrape renders it)."""
        with self.ledger.lock:
            self.ledger.add(frame)

    def collect(self) -> Iterator[Metric]:
        frame = self.frame_source()
        with self.ledger.lock:  # a Frame is added and rendered whole, while another scrape waits
            if frame is not None:
                self.ledger.add(frame)
            return iter(render(frame, self.opts, self.hostname, self.ledger))

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The body and content type for a scrape whose Accept header is `accept`."""
        encoder: Encoder
        if self.opts.naming == "scaphandre":
            encoder, content_type = generate_latest, TEXT_0_0_4
        else:
            encoder, content_type = self._chosen.get(accept) or self._choose(accept)
        frame = self.frame_source()
        with self.ledger.lock:
            if frame is not None:
                self.ledger.add(frame)
            writer = self._writers.get(content_type)
            if writer is None:
                if len(self._writers) >= _WRITERS:  # the Accept header is the scraper's: bound what it costs
                    self._writers.clear()
                rename = _scaphandre_counter if self.opts.naming == "scaphandre" else _as_written
                writer = self._writers[content_type] = Writer(encoder, rename)
            families = grouped(frame, self.opts, self.hostname, self.ledger, self._labels)
            return writer.body(families), content_type

    def _choose(self, accept: str) -> tuple[Encoder, str]:
        if len(self._chosen) >= _WRITERS:  # the Accept header is the scraper's: bound what it costs
            self._chosen.clear()
        chosen = self._chosen[accept] = choose_encoder(accept)
        return chosen


def _as_written(head: Head, text: bytes) -> bytes:
    return text


def _scaphandre_counter(head: Head, text: bytes) -> bytes:
    """A counter's HELP and TYPE lines under the name its samples carry, Scaphandre's (no _total)."""
    name = head.sample_name.encode()
    if head.kind == "counter" and not name.endswith(b"_total"):
        for line in (b"# HELP ", b"# TYPE "):
            text = text.replace(line + name + b"_total ", line + name + b" ")
    return text
