"""The one place that wires the pipeline together: sources -> sampler -> runner -> sinks."""

from __future__ import annotations

import gc
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from wattprobe.config import settings
from wattprobe.core.sampler import Sampler
from wattprobe.pipeline.delivery import delivered
from wattprobe.pipeline.runner import Runner
from wattprobe.sinks import Context, Sink, pulled, writes_host_facts
from wattprobe.sources import SourceSettings, open_sources
from wattprobe.sources.procfs import ProcfsReader

# A tick and a scrape allocate and drop a few thousand objects, all but a handful freed by reference
# counting as soon as they are dropped. At Python's default threshold (700 more allocations than
# frees) the cycle collector ran at every other scrape of an idle host, walking objects about to be
# freed anyway: 0.12 ms of a 2.7 ms scrape. The agent sets this one for its run.
GC_THRESHOLD = 20_000


@dataclass(frozen=True, slots=True)
class Output:
    """One sink to run: its module (see `wattprobe.sinks`) and its settings."""

    module: ModuleType
    settings: Any


def open_sampler(
    sources: SourceSettings, secrets: Iterable[str] = (), *, host_facts: bool = False
) -> Sampler[ProcfsReader]:
    """The sampler the source settings describe; WattprobeError with the fix when a source cannot work.

    `secrets` (the outputs' own secret options) are redacted from every command line it reads; the
    host's facts are read with each Frame only with `host_facts` (an output writes them).
    """
    opened = open_sources(sources, secrets, host_facts=host_facts)
    return Sampler(
        opened.sensor, opened.procfs, socket_cpus=opened.socket_cpus, host=opened.host, names=opened.names
    )


def run(
    sources: SourceSettings, outputs: list[Output], *, step_s: float | None, timeout_s: float | None
) -> int:
    """Measure with one sampler and write to every output until the timeout, a signal, or no output is
    left. The sensor is opened before any output, so a sensor that cannot work touches no file. When
    every output is pulled, requests set the pace and `step_s` is not used.

    An output that cannot open (its file, directory or port) is a mistake in the configuration: the
    agent does not start, and the outputs already opened are closed. A write that fails is not: the
    first as any later one, it is that output's alone (see `Runner`), so /dev/full or a full disk
    beside a good output stops the same way at start and mid-run."""
    sampler = open_sampler(
        sources,
        {s for o in outputs for s in settings.secrets(o.settings)},
        host_facts=any(writes_host_facts(o.module, o.settings) for o in outputs),
    )
    sinks: list[Sink] = []
    try:
        pull_only = all(pulled(o.module) for o in outputs)
        context = Context(hostname=socket.gethostname(), fresh=sampler.frame if pull_only else None)
        for output in outputs:
            sinks.append(delivered(output.module.create(output.settings, context)))  # remote: off the tick
        runner = Runner(sampler, sinks, step_s=None if pull_only else step_s, timeout_s=timeout_s)
        sinks = []  # the runner closes them from here on
        gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
        return runner.run()
    finally:
        for sink in sinks:  # opened before another output failed to open
            sink.close()
        sampler.close()
