"""`wattprobe calibrate`: measure this host's power at several CPU loads and write its curve.

Where a real measurement exists (RAPL, or a PowerSpy2 for wall power, PSU and fans included), it loads
every CPU at each level itself (one process per CPU, busy for the level's fraction of every 100 ms,
the CPUs' busy stretches staggered so that the machine's load stays as even as it can), measures host
power and each domain through the sampler, as the agent does, and records the machine's load as
measured (other work included), not the level asked. A monotone curve per domain (piecewise linear,
made non-decreasing by isotonic regression) goes into the model file with the points, the CPU it was
made on and the fit's error at each point: `-s estimate --model FILE` then estimates with it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from wattprobe import __version__
from wattprobe.config import settings
from wattprobe.config.values import positive
from wattprobe.core.model import HOST_DOMAINS, Frame
from wattprobe.errors import SensorUnavailable, UsageError, WattprobeError
from wattprobe.sources import ESTIMATE_HINT, SourceSettings

log = logging.getLogger(__name__)

NAME = "calibrate"
HELP = "measure this host's power at several CPU loads and write its curve, for -s estimate --model"

STEP_S = 0.5  # the sampler's window during a level
SETTLE_S = 0.5  # after the load changes, before a level's windows count
PERIOD_S = 0.1  # of each worker's busy/idle cycle
# The fit goes through the levels' points, not each window's: a window's load and energy are read a
# scan apart, so on a busy machine the windows picked for their extreme loads have powers nearer the
# mean (regression dilution), while a level's mean is steady.
# A worker: busy for FRACTION of every PERIOD, starting PHASE periods in, on one CPU where allowed.
WORKER = """\
import os, sys, time
fraction, period, phase, cpu = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
try:
    os.sched_setaffinity(0, {cpu})
except OSError:
    pass
start = time.monotonic() + phase * period
while True:
    now = time.monotonic()
    cycle = start + period * ((now - start) // period)
    while time.monotonic() < cycle + fraction * period:
        pass
    if fraction < 1:
        time.sleep(max(0.0, cycle + period - time.monotonic()))
"""


def levels(text: str) -> list[float]:
    """Load levels in percent, "0,25,50,75,100": at least two, each in 0..100."""
    try:
        values = sorted({float(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of percents: {text!r} (like 0,25,50,75,100)") from None
    if len(values) < 2 or not all(0 <= v <= 100 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give two levels or more, each from 0 to 100")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", required=True, metavar="MODEL.json", help="where to write the model"
    )
    parser.add_argument(
        "--levels",
        type=levels,
        default=levels("0,25,50,75,100"),
        metavar="PERCENTS",
        help="CPU load levels to measure, in percent (default 0,25,50,75,100)",
    )
    parser.add_argument(
        "--seconds-per-level",
        type=positive,
        default=10.0,
        metavar="S",
        help="how long each level is measured (default 10)",
    )


class Collector:
    """A sink that keeps the Frames of one level."""

    name = "calibrate"

    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def write(self, frame: Frame) -> None:
        self.frames.append(frame)

    def close(self) -> None:
        pass


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    level: float  # asked, percent
    load: float  # measured, 0..1
    watts: float  # host
    domains: dict[str, float]  # each domain's watts, summed over sockets
    windows: int


def run(args: argparse.Namespace) -> int:
    from wattprobe.pipeline import wiring
    from wattprobe.sinks.kit.files import write_problem, write_whole
    from wattprobe.sources.cpuinfo import read_cpu_identity

    sources = measuring(settings.from_namespace(SourceSettings, args))
    problem = write_problem(args.output)
    if problem is not None:
        raise WattprobeError(f"cannot write {args.output}: {problem}")
    try:
        sampler = wiring.open_sampler(sources)
    except SensorUnavailable as why:
        raise SensorUnavailable(
            f"calibrate needs measured power, and {why.reason}",
            why.fix.removesuffix(ESTIMATE_HINT) + "; or measure wall power with a PowerSpy2: -s powerspy2",
        ) from None
    try:
        if sampler.sensor.estimated:
            raise WattprobeError(f"calibrate needs measured power, and {sampler.sensor.name} estimates it")
        n_cpus = os.cpu_count() or 1
        points = []
        for level in args.levels:
            p = _measure_level(sampler, level, n_cpus, args.seconds_per_level)
            points.append(p)
            print(f"level {level:g} %: load {p.load:.1%}, {p.watts:.2f} W", file=sys.stderr, flush=True)
        sensor, source, frame_cpus = sampler.sensor.name, _host_source(sampler), _frame_cpus(sampler, n_cpus)
    finally:
        sampler.close()
    cpu_model = read_cpu_identity(sources.procfs_root).model_name
    model = document(points, cpu_model, frame_cpus, sensor, source)
    model |= {"levels": args.levels, "seconds_per_level": args.seconds_per_level}
    write_whole(args.output, (json.dumps(model, indent=1) + "\n").encode())
    lowest = min(p.load for p in points)
    if lowest > min(args.levels) / 100 + 0.15:
        log.warning(
            "the load never went below %.0f %% (other work on the machine): below it the curve is extended, "
            "a guess; calibrate again with the machine otherwise idle",
            100 * lowest,
        )
    worst = max(
        (abs(p["fit_error_percent"]) for p in model["points"] if p["fit_error_percent"] is not None),
        default=0.0,
    )
    print(f"wrote {args.output}: {len(points)} points, fit within {worst:.1f} %; estimate with it: "
          f"wattprobe -s estimate --model {args.output} ...")  # fmt: skip
    return 0


def measuring(sources: SourceSettings) -> SourceSettings:
    """The settings to calibrate with: a measuring sensor (powercap under `auto`), never the estimate."""
    if sources.name == "estimate":
        raise UsageError(
            "calibrate needs measured power and -s estimate only models it: run it where RAPL is readable "
            "(-s powercap_rapl) or with a PowerSpy2 (-s powerspy2)"
        )
    if sources.model is not None:
        raise UsageError("calibrate makes a model: drop --model")
    return dataclasses.replace(sources, name="powercap_rapl") if sources.name == "auto" else sources


def _measure_level(sampler: Any, level: float, n_cpus: int, seconds: float) -> Point:
    from wattprobe.pipeline.runner import Runner

    collector = Collector()
    with _load(level / 100, n_cpus):
        time.sleep(SETTLE_S)
        # The runner's first tick ends the window that spans the change of load: it is not written.
        Runner(sampler, [collector], step_s=min(STEP_S, seconds), timeout_s=seconds).run()
    frames = collector.frames
    if not frames:
        raise WattprobeError(
            f"no measurement at {level:g} % load: the sensor gave no window in {seconds:g} s "
            "(see the warnings above); try a longer --seconds-per-level"
        )
    total = sum(f.window_s for f in frames)

    def mean(values: Sequence[float]) -> float:
        return sum(v * f.window_s for v, f in zip(values, frames, strict=True)) / total

    names = sorted({name for f in frames for name in _domains(f)})
    domains = {name: mean([_domains(f).get(name, 0.0) for f in frames]) for name in names}
    load, watts = mean([f.cpu_load for f in frames]), mean([f.host_watts for f in frames])
    return Point(level, load, watts, domains, len(frames))


def _domains(frame: Frame) -> dict[str, float]:
    """Each domain's watts summed over sockets, the host-wide one (psys, wall) included."""
    watts: dict[str, float] = {}
    for s in frame.sockets:
        watts["package"] = watts.get("package", 0.0) + s.watts
        for d in s.domains:
            watts[d.name] = watts.get(d.name, 0.0) + d.watts
    if frame.host_source in HOST_DOMAINS:
        watts[frame.host_source] = frame.host_watts
    return watts


def _host_source(sampler: Any) -> str | None:
    return sampler.latest.host_source if sampler.latest is not None else None


def _frame_cpus(sampler: Any, default: int) -> int:
    return sampler.latest.n_cpus if sampler.latest is not None else default


@contextlib.contextmanager
def _load(fraction: float, n_cpus: int) -> Iterator[None]:
    """One worker per CPU busy for `fraction` of each period, their busy stretches staggered."""
    workers: list[subprocess.Popen[bytes]] = []
    try:
        if fraction > 0:
            for cpu in range(n_cpus):
                argv = [
                    sys.executable,
                    "-c",
                    WORKER,
                    repr(fraction),
                    repr(PERIOD_S),
                    repr(cpu / n_cpus),
                    str(cpu),
                ]
                workers.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL))
        yield
    finally:
        for worker in workers:
            worker.kill()
        for worker in workers:
            worker.wait()


def document(
    points: Sequence[Point],
    cpu_model: str | None,
    n_cpus: int,
    sensor: str,
    host_source: str | None,
) -> dict[str, Any]:
    """The model file: the points, the fit per domain, the host's fitted power and its error at each
    point, and where it was made."""
    from wattprobe.sources.estimate import MODEL_SCHEMA, CalibratedModel, Curve, host_watts

    names = sorted({name for p in points for name in p.domains})
    curves = {name: Curve.fit([(p.load, p.domains.get(name, 0.0)) for p in points]) for name in names}
    model = CalibratedModel("", cpu_model, n_cpus, sensor, curves)
    rows = []
    for p in points:
        fitted = host_watts(model.watts(p.load, n_cpus))
        error = 100 * (fitted - p.watts) / p.watts if p.watts > 0 else 0.0
        rows.append({
            "level_percent": p.level,
            "load": round(p.load, 4),
            "watts": round(p.watts, 3),
            "domains": {name: round(w, 3) for name, w in p.domains.items()},
            "windows": p.windows,
            "fit_watts": round(fitted, 3),
            "fit_error_percent": round(error, 2) if math.isfinite(error) else None,
        })  # fmt: skip
    loads = sorted({x for c in curves.values() for x, _ in c.points})
    return {
        "schema_version": MODEL_SCHEMA,
        "wattprobe_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_model,
        "n_cpus": n_cpus,
        "sensor": sensor,
        "host_source": host_source,
        "points": rows,
        "fit": {
            "kind": "piecewise linear through the points, isotonic (non-decreasing), ends extended",
            "domains": {name: [[x, round(y, 4)] for x, y in c.points] for name, c in curves.items()},
            "host": [[x, round(host_watts(model.watts(x, n_cpus)), 4)] for x in loads],
        },
    }
