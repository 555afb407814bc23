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
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from wattprobe.commandenergy import stats
from wattprobe.commandenergy.carbon import CarbonSettings
from wattprobe.commandenergy.meter import Meter
from wattprobe.commandenergy.result import Result
from wattprobe.commands.child import Child, become_subreaper
from wattprobe.config import settings
from wattprobe.config.settings import option
from wattprobe.config.values import count, positive
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
    report: str | None = option(
        None,
        "--report",
        metavar="FILE.html",
        help="write a self-contained HTML report with a chart of the power over time (needs wattprobe[report])",
    )
    repeat: int | None = option(
        None,
        "--repeat",
        parse=count,
        metavar="N",
        help="run the command N times, each measured; -o then holds the runs and their statistics; "
        "stops after a run that fails",
    )
    warmup: int = option(
        0,
        "--warmup",
        parse=count,
        metavar="K",
        help="run the command K times first, not measured (default 0)",
    )
    baseline: float | None = option(
        None,
        "--baseline",
        parse=positive,
        metavar="SECONDS",
        help="measure the host's idle power for SECONDS before the runs: each run then reports "
        "idle_power_w and energy_above_idle_j",
    )

    def __post_init__(self) -> None:
        options.check_step(self.step)
        if self.repeat is not None and self.repeat < 1:
            raise UsageError(f"--repeat must be at least 1, got {self.repeat}")
        if self.report is not None and (self.repeat or 1) > 1:
            raise UsageError("--report shows one run: give it without --repeat, or --repeat 1")

    @property
    def runs(self) -> int:
        return self.repeat or 1


class Interrupted(WattprobeError):
    """A signal that ends wattprobe came while no command ran (during the baseline)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name} before the command ran")
        self.exit_code = 128 + signum


_ENDING = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}


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
    with Child(argv) as first:  # signals blocked before any thread of the sensor's starts
        session = Session(wiring.open_sampler(sources), sources, options, carbon)
        try:
            results, status = session.all(first, options.warmup + options.runs)
        finally:
            session.sampler.close()
    if options.repeat is None:
        return _publish(results[0], options)
    return _publish_repeated(results, status, options)


class Session:
    """The runs of one `wattprobe run`: one sampler (the sensor opened once), each run its own meter
    and cgroup; the idle baseline before them."""

    def __init__(
        self, sampler: Sampler, sources: SourceSettings, options: RunSettings, carbon: CarbonSettings
    ) -> None:
        self.sampler = sampler
        self.sources = sources
        self.options = options
        self.carbon = carbon
        self.me = os.getpid()
        self.said: set[str] = set()  # what was said once for all the runs
        sampler.follow(self.me)
        if not become_subreaper():
            log.warning("cannot become the subreaper of the command: its orphans' time is not counted")

    def all(self, first: Child, total: int) -> tuple[list[Result], int]:
        """The warmups, then the runs, until one fails (as hyperfine does): the measured runs' results
        and the first non-zero exit status (0 when every run succeeded)."""
        idle_w = self.idle_power(self.options.baseline) if self.options.baseline is not None else None
        warmup = self.options.warmup
        results: list[Result] = []
        for number in range(1, total + 1):
            child = first if number == 1 else first.another()
            result = self.measure(child, f"wattprobe-run-{self.me}-{number}", idle_w)
            if number > warmup:
                results.append(result)
            if total > 1:
                what = (
                    f"warmup {number}/{warmup}"
                    if number <= warmup
                    else f"run {number - warmup}/{total - warmup}"
                )
                print(f"wattprobe run: {what}: {report_line(result)}", file=sys.stderr)
            if result.exit_code != 0:
                if number < total:
                    which = "a warmup" if number <= warmup else "a run"
                    log.warning("%s failed (exit status %s): no more runs", which, result.exit_code)
                return results, result.exit_code if result.exit_code is not None else 1
        return results, 0

    def idle_power(self, seconds: float) -> float | None:
        """The host's average power over `seconds` while no command runs (wattprobe sleeps)."""
        meter = Meter(self.me, sensor="", estimated=False, step_s=self.options.step, root_counts=False)
        deadline = time.monotonic() + seconds

        def wait(timeout_s: float) -> bool:
            info = signal.sigtimedwait(_ENDING, max(0.0, min(timeout_s, deadline - time.monotonic())))
            if info is not None:
                raise Interrupted(info.si_signo)
            return time.monotonic() >= deadline

        print(f"wattprobe run: measuring the host's idle power for {seconds:g} s", file=sys.stderr)
        Runner(
            self.sampler, [meter], step_s=min(self.options.step, seconds), wait=wait, started=meter.begin
        ).run()
        tally = meter.tally()
        if tally.error is not None:
            log.warning("no idle power: %s", tally.error)
        return tally.host_average_power_w

    def measure(self, child: Child, name: str, idle_w: float | None) -> Result:
        sampler, sources = self.sampler, self.sources
        cgroup = None
        try:
            try:
                cgroup = OwnCgroup.make(CgroupReader(sources.cgroupfs_root), name, sources.procfs_root)
                sampler.watch(cgroup.path, v2=cgroup.v2)
            except CgroupUnavailable as why:
                self._once(
                    "no cgroup of its own for the command (%s): measuring its process tree and the time "
                    "of its exited children instead",
                    why,
                )
            meter = Meter(
                self.me,
                sensor=sampler.sensor.name,
                estimated=sampler.sensor.estimated,
                step_s=self.options.step,
                root_counts=False,
                cgroup=cgroup.path if cgroup else None,
                tree_cpu_ns=lambda: _tree_cpu_ns(cgroup if meter.cgroup is not None else None),
            )

            def start() -> None:  # once the baseline is taken
                nonlocal cgroup
                meter.begin()
                cgroup = self._start(child, cgroup, meter)

            def wait(seconds: float) -> bool:
                if child.wait(seconds):
                    meter.end()  # the command's end: the last window is closed right after
                    return True
                return False

            try:
                Runner(sampler, [meter], step_s=self.options.step, wait=wait, started=start).run()
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
        if still:
            log.warning(
                "%d process(es) the command started still run (pid %s): measured until the command ended",
                len(still),
                ", ".join(map(str, still[:10])),
            )
        return Result(
            tally,
            self.carbon.intensity,
            tuple(child.argv),
            child.exit_code,
            child.signal,
            _own_cpu_seconds(),
            still,
            idle_power_w=idle_w,
        )

    def _start(self, child: Child, cgroup: OwnCgroup | None, meter: Meter) -> OwnCgroup | None:
        """Start the command in its cgroup; where it cannot join it, in none (it has not run yet)."""
        if cgroup is None:
            child.start()
            return None
        try:
            child.start(cgroup.enter)
            return cgroup
        except subprocess.SubprocessError:
            self._once(
                "the command cannot join the cgroup %s: measuring its process tree and the time of its "
                "exited children instead",
                cgroup.directory,
            )
            self.sampler.unwatch(cgroup.path)
            cgroup.remove()
            meter.cgroup = None
            meter.begin()  # its CPU time from the children's rusage from now on
            child.start()
            return None

    def _once(self, message: str, *args: object) -> None:
        if message not in self.said:
            self.said.add(message)
            log.warning(message, *args)


def _tree_cpu_ns(cgroup: OwnCgroup | None) -> int | None:
    """The command's CPU time so far by the kernel's count: its cgroup's counter, else the rusage of
    wattprobe's reaped children (the command once it ended, and the orphans wattprobe reaped)."""
    if cgroup is None:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return round((usage.ru_utime + usage.ru_stime) * 1e9)
    try:
        if not cgroup.v2:
            with open(f"{cgroup.directory}/cpuacct.usage") as f:
                return int(f.read())
        with open(f"{cgroup.directory}/cpu.stat") as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) * 1000
    except (OSError, ValueError):
        pass
    return None


def report_line(result: Result) -> str:
    from wattprobe.commandenergy import report

    return report.one_run(result)


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _publish(result: Result, options: RunSettings) -> int:
    """The summary on stderr, the files asked for; the command's exit status (1 if it succeeded
    and a file could not be written)."""
    from wattprobe.commandenergy import report

    report.print_summary(result)
    status = result.exit_code if result.exit_code is not None else 1
    if options.output is not None:
        status = _write(lambda: result.save_json(options.output or ""), status)
    if options.report is not None:
        status = _write(lambda: result.save_html(options.report or ""), status)
    return status


def _publish_repeated(results: list[Result], status: int, options: RunSettings) -> int:
    """The statistics of the runs on stderr, the runs and their summary in -o; the first non-zero
    exit status of a run (1 if all succeeded and the file could not be written)."""
    from wattprobe.commandenergy import report

    document = stats.repeated([result.to_json() for result in results])
    report.print_repeated(document, results)
    if options.output is not None:
        text = json.dumps(document, indent=2) + "\n"
        status = _write(lambda: write_whole(options.output or "", text.encode()), status)
    return status


def _write(write: Callable[[], None], status: int) -> int:
    try:
        write()
    except WattprobeError as error:
        print(f"wattprobe: error: {error}", file=sys.stderr)
        return status or 1
    return status


def _check_writable(path: str) -> None:
    """Fail before the command runs, not after, when a file asked for cannot be written."""
    problem = write_problem(path)
    if problem is not None:
        raise WattprobeError(f"cannot write {path}: {problem}")
