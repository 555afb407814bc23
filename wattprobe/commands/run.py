"""`wattprobe run [-o FILE.json] [-s STEP] [--report FILE.html] -- COMMAND [ARGS...]`: the energy of one
command, its whole process tree, next to the host's over the same time.

The command runs as wattprobe's child (`commands.child`: stdin, stdout and stderr its own, signals
forwarded, its exit status passed on), in a cgroup of its own where one can be made
(`sources.owncgroup`), with wattprobe as the subreaper of its tree. The measurement is the real
Sampler, driven by the runner as the agent's is: its wait between two ticks is the command's
(`Child.wait`, which forwards signals meanwhile), so it ends at the command's exit, with a last window
closed right then. Its one sink, a `meter.Meter`, adds up the command's share of each Frame; what
wattprobe says goes to stderr (a summary at the end), never into the command's stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
from dataclasses import dataclass

from wattprobe.commandenergy.carbon import CarbonSettings
from wattprobe.commandenergy.meter import Meter
from wattprobe.commandenergy.result import Result
from wattprobe.commands.child import Child, become_subreaper
from wattprobe.config import settings
from wattprobe.config.settings import option
from wattprobe.core.sampler import Sampler
from wattprobe.errors import UsageError, WattprobeError
from wattprobe.pipeline import wiring
from wattprobe.pipeline.runner import Runner
from wattprobe.sinks.kit import options
from wattprobe.sinks.kit.files import write_problem, write_whole
from wattprobe.sources import SourceSettings
from wattprobe.sources.cgroupfs import CgroupReader
from wattprobe.sources.owncgroup import CgroupUnavailable, OwnCgroup

NAME = "run"
HELP = "run a command and measure its energy (its whole process tree) and the host's"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunSettings:
    output: str | None = option(
        None, "-o", "--output", metavar="FILE.json", help="write the figures, timeline included, as JSON"
    )
    step: float = options.step(1.0, whole=True)

    def __post_init__(self) -> None:
        options.check_step(self.step)

    report: str | None = option(
        None,
        "--report",
        metavar="FILE.html",
        help="write a self-contained HTML report with a chart of the power over time (needs wattprobe[report])",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_options(parser, RunSettings)
    settings.add_options(parser, CarbonSettings)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")


def run(args: argparse.Namespace) -> int:
    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not argv:
        raise UsageError("no command to run: wattprobe run [OPTIONS] -- COMMAND [ARGS...]")
    options = settings.from_namespace(RunSettings, args)
    carbon = settings.from_namespace(CarbonSettings, args)
    sources = settings.from_namespace(SourceSettings, args)
    for path in (options.output, options.report):
        if path is not None:
            _check_writable(path)
    if options.report is not None:
        from wattprobe.commandenergy import report

        report.check_available()
    with Child(argv) as child:  # signals blocked before any thread of the sensor's starts
        result = _measure(child, sources, options, carbon)
    return _publish(result, options)


def _measure(child: Child, sources: SourceSettings, options: RunSettings, carbon: CarbonSettings) -> Result:
    sampler = wiring.open_sampler(sources)
    me = os.getpid()
    sampler.follow(me)
    cgroup = None
    try:
        try:
            cgroup = OwnCgroup.make(
                CgroupReader(sources.cgroupfs_root), f"wattprobe-run-{me}", sources.procfs_root
            )
            sampler.watch(cgroup.path, v2=cgroup.v2)
        except CgroupUnavailable as why:
            log.warning(
                "no cgroup of its own for the command (%s): measuring its process tree and the time of "
                "its exited children instead",
                why,
            )
        if not become_subreaper():
            log.warning("cannot become the subreaper of the command: its orphans' time is not counted")
        meter = Meter(
            me,
            sensor=sampler.sensor.name,
            estimated=sampler.sensor.estimated,
            step_s=options.step,
            root_counts=False,
            cgroup=cgroup.path if cgroup else None,
        )

        def start() -> None:  # once the baseline is taken
            nonlocal cgroup
            cgroup = _start(child, cgroup, sampler, meter)

        try:
            Runner(sampler, [meter], step_s=options.step, wait=child.wait, started=start).run()
        finally:
            while child.pid and not child.wait(1.0):  # the runner stopped early: the command goes on
                pass
        tally = meter.tally()
        still = tuple(sorted(meter.live))
    finally:
        if cgroup is not None:
            sampler.unwatch(cgroup.path)
            problem = cgroup.remove()
            if problem:
                log.warning("%s", problem)
        sampler.close()
    if still:
        log.warning(
            "%d process(es) the command started still run (pid %s): measured until the command ended",
            len(still),
            ", ".join(map(str, still[:10])),
        )
    return Result(
        tally,
        carbon.intensity,
        tuple(child.argv),
        child.exit_code,
        child.signal,
        _own_cpu_seconds(),
        still,
    )


def _start(child: Child, cgroup: OwnCgroup | None, sampler: Sampler, meter: Meter) -> OwnCgroup | None:
    """Start the command in its cgroup; where it cannot join it, in none (it has not run yet)."""
    if cgroup is None:
        child.start()
        return None
    try:
        child.start(cgroup.enter)
        return cgroup
    except subprocess.SubprocessError:
        log.warning(
            "the command cannot join the cgroup %s: measuring its process tree and the time of its "
            "exited children instead",
            cgroup.directory,
        )
        sampler.unwatch(cgroup.path)
        cgroup.remove()
        meter.cgroup = None
        child.start()
        return None


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _publish(result: Result, options: RunSettings) -> int:
    """The summary on stderr, the files asked for; the command's exit status (1 if it succeeded
    and a file could not be written)."""
    from wattprobe.commandenergy import report

    report.print_summary(result)
    status = result.exit_code if result.exit_code is not None else 1
    files = (
        (options.output, lambda: json.dumps(result.to_json(), indent=2) + "\n"),
        (options.report, lambda: report.html(result)),
    )
    for path, text in files:
        if path is None:
            continue
        try:
            write_whole(path, text().encode())
        except WattprobeError as error:
            print(f"wattprobe: error: {error}", file=sys.stderr)
            status = status or 1
    return status


def _check_writable(path: str) -> None:
    """Fail before the command runs, not after, when a file asked for cannot be written."""
    problem = write_problem(path)
    if problem is not None:
        raise WattprobeError(f"cannot write {path}: {problem}")
