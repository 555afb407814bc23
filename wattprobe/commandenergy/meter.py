"""One process tree's energy: its share of host energy, window by window, from the runner's Frames.

`wattprobe run` and `wattprobe.measure()` both measure with the real Sampler (its counter guard, the
time of exited children reaped into their parents, cgroup counters), driven by the runner, and the
`Meter` is one of the runner's sinks: it adds up what each Frame gives the processes of one tree. A
window's command power is host power x the tree's CPU time / the machine's CPU time (all CPUs),
integrated over the window. The tree's CPU time is, by preference:

- **its cgroup's counter** (`cgroup`, which the sampler watches: `Frame.cgroup_ns`), exact to the µs
  with every process that ran in it, exited ones included; capped at the machine's time in one
  window, the excess (scan timing) carried to the next;
- else **its processes** (`root` and every live process below it at each scan, which the sampler
  follows: `Frame.trees`), each with the time of its descendants that exited in the window. The root
  itself counts whole (`root_counts`: the API's calling process), or only for the children it reaped
  (`wattprobe run`, the subreaper whose own work is the measuring).

What `exclude_thread` names (the thread that runs the runner, in the measured process: the API's) is
taken out: `begin()`, which the runner calls once the baseline is taken, starts its clock.

A figure is right or absent. `begin()` and `end()` (by default `close()`) mark the measured span on
the clock. When the sensor's windows do not reach the end of that span (counters that stood still
from the start, or stopped mid-run), the energy and every figure made from it are None and
`Tally.error` says why: energy over part of the time would be wrong, not partial. The duration is
then the clock's, and the CPU time comes from `tree_cpu_ns` (the cgroup's counter, the children's
rusage: read at `begin()` and `end()`), not from the Frames that never came. A counter reset mid-run
is not such a gap: the measurement starts anew after it, and `skipped` counts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from wattprobe.core.model import Frame
from wattprobe.sinks import Fatal

REAPED = "(processes that ended; the rest of their time, reaped by wattprobe)"
# The time of processes that ended, reaped by one of the tree's (the part not seen in them alive).
ENDED = "(processes that ended; the rest of their time, reaped by {name} {pid})"
# The sensor's last window may end this far before the measured span does (the last window is closed
# right after the end: more means that the sensor gave nothing for the end of the span).
TAIL_S = 0.15
TAIL_SHARE = 0.01  # or this share of the span, for a long one


@dataclass(frozen=True, slots=True)
class Step:
    """One window: its end (seconds since the start), its length, the command's and the host's power
    (each an average over the window: the command's over the scans' window, the host's over the
    sensor's, the same within a few ms)."""

    t_s: float
    window_s: float
    command_w: float
    host_w: float


@dataclass(frozen=True, slots=True)
class ProcessEnergy:
    pid: int
    exe: str
    cmdline: str
    energy_j: float
    cpu_seconds: float


@dataclass(frozen=True, slots=True)
class Tally:
    """What a Meter found over the whole measurement. The energy figures are None when the sensor gave
    no energy for the whole span (`error` says why)."""

    energy_j: float | None
    host_energy_j: float | None
    duration_s: float | None  # the sensor's windows end to end; without energy, the clock's
    cpu_seconds: float | None
    sensor: str
    estimated: bool
    host_source: str
    n_cpus: int
    step_s: float
    started_at: float  # Unix time of the first snapshot
    measured_by: str  # "cgroup", "process tree", or "cgroup and process tree" (a counter missing for a while)
    steps: tuple[Step, ...]
    top: tuple[ProcessEnergy, ...]
    skipped: int  # new baselines mid-run (a counter reset): energy in such a gap is unknown
    windows_s: float = 0.0  # the sensor's windows, end to end: host_energy_j / windows_s is the host's power
    error: str | None = None  # why the energy figures are None
    model: str | None = None  # the model that made estimated figures (the sensor's), None when measured

    @property
    def share(self) -> float | None:
        if self.energy_j is None or not self.host_energy_j:
            return None
        return self.energy_j / self.host_energy_j

    @property
    def average_power_w(self) -> float | None:
        return _per(self.energy_j, self.windows_s)

    @property
    def host_average_power_w(self) -> float | None:
        return _per(self.host_energy_j, self.windows_s)

    def _peak(self, watts: str) -> float | None:
        """The highest step average. A window cut short (by the command's end, mostly) averages over
        so little time that a counter's granularity is a large error: it is merged with the window
        before it, so that the peak is never below the average either."""
        if self.error is not None:
            return None
        merged: list[list[float]] = []  # [joules, seconds]
        for step in self.steps:
            joules = getattr(step, watts) * step.window_s
            if merged and step.window_s < self.step_s / 2:
                merged[-1][0] += joules
                merged[-1][1] += step.window_s
            else:
                merged.append([joules, step.window_s])
        return max((j / s for j, s in merged if s > 0), default=None)

    @property
    def peak_power_w(self) -> float | None:
        return self._peak("command_w")

    @property
    def host_peak_power_w(self) -> float | None:
        return self._peak("host_w")


def _per(joules: float | None, seconds: float) -> float | None:
    return joules / seconds if joules is not None and seconds > 0 else None


class Meter:
    """Adds up one tree's energy from each Frame it is given (a sink: `write(frame)`, `close()`);
    `tally()` at the end. The sampler that makes the Frames follows `root` (and watches `cgroup`)."""

    name = "meter"

    def __init__(
        self,
        root: int,
        *,
        sensor: str,
        estimated: bool,
        step_s: float,
        root_counts: bool,
        cgroup: str | None = None,
        exclude_thread: bool = False,
        top: int = 10,
        tree_cpu_ns: Callable[[], int | None] | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """`tree_cpu_ns()`: the tree's cumulative CPU ns by another way than the Frames (its cgroup's
        counter, its reaped children's rusage), or None: its CPU time when the Frames fall short.
        `clock`: the sampler's (monotonic ns), for the span begin() and end() mark."""
        self.root = root
        self.step_s = step_s
        self.root_counts = root_counts
        self.cgroup = cgroup
        self.top_n = top
        self.live: frozenset[int] = frozenset()  # the processes below `root` at the last Frame's end
        self._exclude_thread = exclude_thread
        self._thread_ns = 0
        self._excluded_ns = 0  # the measuring thread's time, not yet taken out of the process's
        self._first_ns: int | None = None  # the first window's start (monotonic ns of its scan)
        self._started_at: float | None = None
        self._carry_ns = 0.0
        self._steps: list[Step] = []
        self._processes: dict[tuple[int, str, str], list[float]] = {}  # -> [joules, cpu ns]
        self._energy_j = self._host_j = self._cpu_ns = self._duration_s = 0.0
        self._by = {"cgroup": 0, "process tree": 0}
        self._skipped = 0
        self._sensor = sensor  # the sensor's name and whether it estimates, until a Frame says
        self._estimated = estimated
        self._host_source = ""
        self._model: str | None = None
        self._n_cpus = 0
        self._tree_cpu_ns = tree_cpu_ns
        self._clock = clock
        self._span: list[tuple[int, int | None]] = []  # (clock ns, tree CPU ns) at begin() and end()
        self._last_ns: int | None = None  # the end of the last window (the sampler's clock)

    def begin(self) -> None:
        """The measurement starts here (the runner's baseline): in the thread that runs the runner."""
        self._started_at = time.time()
        self._own_thread_ns()
        self._span = [self._mark()]

    def end(self) -> None:
        """The measured span ends here (the command ended, the block left): the last window, closed
        right after, should reach it. Called once; `close()` calls it otherwise."""
        if len(self._span) == 1:
            self._span.append(self._mark())

    def _mark(self) -> tuple[int, int | None]:
        return self._clock(), self._tree_cpu_ns() if self._tree_cpu_ns is not None else None

    def write(self, frame: Frame) -> None:
        """A Frame added to the tallies. A failure is Fatal: a window missed would make figures wrong."""
        try:
            self._add(frame, self._own_thread_ns())
        except Exception as error:
            raise Fatal(str(error) or repr(error)) from error

    def close(self) -> None:
        """The end of the span, if `end()` did not mark it; `tally()` gives the figures."""
        self.end()

    def tally(self) -> Tally:
        self.end()
        top = sorted(self._processes.items(), key=lambda item: item[1][0], reverse=True)[: self.top_n]
        by = [name for name, windows in self._by.items() if windows]
        started_at = self._started_at if self._started_at is not None else time.time()
        span_s = (self._span[1][0] - self._span[0][0]) / 1e9 if len(self._span) == 2 else None
        error = self._shortfall(span_s)
        energy_j: float | None = self._energy_j
        host_j: float | None = self._host_j
        cpu_s: float | None = self._cpu_ns / 1e9
        if error is not None:
            energy_j = host_j = None
            top = []
            cpu_s = None
            if len(self._span) == 2 and self._span[0][1] is not None and self._span[1][1] is not None:
                cpu_s = max(self._span[1][1] - self._span[0][1], 0) / 1e9
        # The windows' when they give the energy (host_energy_j / duration_s is then the host's power),
        # else the clock's.
        duration = self._duration_s if error is None else span_s
        return Tally(
            energy_j=energy_j,
            host_energy_j=host_j,
            duration_s=duration,
            cpu_seconds=cpu_s,
            sensor=self._sensor,
            estimated=self._estimated,
            host_source=self._host_source,
            model=self._model,
            n_cpus=self._n_cpus,
            step_s=self.step_s,
            started_at=started_at,
            measured_by=" and ".join(by) if by else ("cgroup" if self.cgroup else "process tree"),
            steps=tuple(self._steps),
            top=tuple(ProcessEnergy(pid, exe, cmd, j, ns / 1e9) for (pid, exe, cmd), (j, ns) in top),
            skipped=self._skipped,
            windows_s=self._duration_s,
            error=error,
        )

    def _shortfall(self, span_s: float | None) -> str | None:
        """Why the Frames do not give the span's energy, or None when they do."""
        sensor = f"the sensor ({self._sensor})"
        if not self._steps:
            over = f" over the {span_s:.2f} s measured" if span_s is not None else ""
            return f"{sensor} gave no energy{over}: its counters did not advance, or could not be read"
        if span_s is None or self._last_ns is None:
            return None
        begin_ns, end_ns = self._span[0][0], self._span[1][0]
        if (end_ns - self._last_ns) / 1e9 <= max(TAIL_S, TAIL_SHARE * span_s):
            return None
        covered = max(self._last_ns - begin_ns, 0) / 1e9
        return (
            f"{sensor} gave no energy after {covered:.2f} s of the {span_s:.2f} s measured (its counters "
            "stopped): a figure for part of the time would be wrong"
        )

    def _own_thread_ns(self) -> int:
        """CPU ns the calling thread used since the last call, when it is to be left out."""
        if not self._exclude_thread:
            return 0
        now = time.thread_time_ns()
        used, self._thread_ns = now - self._thread_ns if self._thread_ns else 0, now
        return used

    def _credit(self, key: tuple[int, str, str], ns: float, joules: float) -> None:
        if ns > 0 or joules > 0:
            entry = self._processes.setdefault(key, [0.0, 0.0])
            entry[0] += joules
            entry[1] += ns

    def _add(self, frame: Frame, overhead_ns: int) -> None:
        # CPU times come from the scans, host energy from the sensor's reads a moment before each:
        # two windows that differ by a few ms, more on a loaded machine. The command's share holds
        # over the scans' window, so its energy is its power over that window (host power x share),
        # whatever the sensor's window: host power x its CPU time / the number of CPUs.
        start_ns, end_ns = frame.scan_ns
        scan_s = (end_ns - start_ns) / 1e9
        machine_ns = frame.n_cpus * (end_ns - start_ns)
        if self._first_ns is None:
            self._first_ns = start_ns
            self._started_at = frame.timestamp - scan_s  # the first window's start, as a Unix time
        self._skipped += frame.resets
        members = self.live = frame.trees.get(self.root, frozenset())
        # A multi-threaded process is read when its stat ticks moved: the time of the sampler's
        # thread can come in one window for several, so what is to be left out waits for it.
        self._excluded_ns += overhead_ns
        tree_w = tree_ns = 0.0
        for consumer in frame.consumers:
            pid = consumer.info.pid
            if pid == self.root:
                if self.root_counts:
                    left_out = min(self._excluded_ns, consumer.cpu_ns)
                    self._excluded_ns -= left_out
                    ns = consumer.cpu_ns - left_out
                    watts = consumer.watts * ns / consumer.cpu_ns if consumer.cpu_ns > 0 else 0.0
                    key = (pid, consumer.info.exe, consumer.info.cmdline or f"[{consumer.info.comm}]")
                else:
                    ns, watts = consumer.exited_cpu_ns, consumer.exited_watts
                    key = (0, "", REAPED)
            elif pid in members:
                # Its own time under its name; what its descendants used and exited with (reaped into
                # it: the kernel does not say which) under a name of their own, not the reaper's.
                info = consumer.info
                parts = (
                    (
                        (pid, info.exe, info.cmdline or f"[{info.comm}]"),
                        consumer.cpu_ns - consumer.exited_cpu_ns,
                        consumer.watts - consumer.exited_watts,
                    ),
                    (
                        (0, "", ENDED.format(name=info.name, pid=pid)),
                        consumer.exited_cpu_ns,
                        consumer.exited_watts,
                    ),
                )
                for key, ns, watts in parts:
                    tree_w, tree_ns = tree_w + watts, tree_ns + ns
                    self._credit(key, ns, watts * scan_s)
                continue
            else:
                continue
            tree_w += watts
            tree_ns += ns
            self._credit(key, ns, watts * scan_s)
        command_w, cpu_ns = tree_w, tree_ns
        counted = frame.cgroup_ns.get(self.cgroup) if self.cgroup is not None else None
        if counted is not None and machine_ns > 0:
            counted = max(counted, 0)
            wanted = counted + self._carry_ns
            used = min(wanted, float(machine_ns))
            self._carry_ns = wanted - used
            command_w, cpu_ns = frame.host_watts * used / machine_ns, float(counted)
            self._by["cgroup"] += 1
        else:
            self._by["process tree"] += 1
        self._energy_j += command_w * scan_s
        self._host_j += frame.host_watts * frame.window_s
        self._duration_s += frame.window_s
        self._cpu_ns += cpu_ns
        self._estimated = self._estimated or frame.estimated
        self._sensor, self._host_source, self._n_cpus = frame.sensor, frame.host_source, frame.n_cpus
        self._model = frame.model or self._model
        self._steps.append(Step((end_ns - self._first_ns) / 1e9, scan_s, command_w, frame.host_watts))
        self._last_ns = end_ns
