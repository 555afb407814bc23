"""The sampler owns the sensor and the procfs reader, makes snapshots and frames, keeps the last one.

It calls its readers through the protocols of core.model (Sensor, ProcessReader, HostFactsReader), so
core imports no source; it is generic in its process reader so that a caller keeps the reader's type.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import resource
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from wattprobe.core.attribution import Carry, EnergyTotals, attribute, consumer_keys, cpu_used
from wattprobe.core.counters import CounterGuard, host_energy
from wattprobe.core.model import (
    AgentStats,
    EnergyReading,
    Frame,
    HostFactsReader,
    NameResolver,
    ProcessReader,
    Sensor,
    Snapshot,
)

Reader = TypeVar("Reader", bound=ProcessReader)

log = logging.getLogger(__name__)


class Sampler(Generic[Reader]):
    """Ticks: snapshot now, compare with the previous snapshot, publish an immutable Frame."""

    def __init__(
        self,
        sensor: Sensor,
        procfs: Reader,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], int] = time.monotonic_ns,
        wall: Callable[[], float] = time.time,
        socket_cpus: dict[int, int] | None = None,
        host: HostFactsReader | None = None,
        names: NameResolver | None = None,
    ) -> None:
        """`clock` (monotonic ns) times the snapshots and the staleness of `frame()`, `wall` (Unix s)
        stamps them: a test on a synthetic tree and /proc passes fake ones and sleeps for nothing."""
        self.sensor = sensor
        self.procfs = procfs
        # The host's load, memory, disks..., read with each Frame (None: no output writes them).
        self.host = host
        self.names = names  # containers' names (dict lookups: it resolves off the tick)
        self.socket_cpus = tuple(sorted((socket_cpus or {}).items()))
        self.latest: Frame | None = None
        self.tick_seconds = 0.0  # how long the last tick took
        self._clock = clock
        self._wall = wall
        # `sleep`: between the re-reads of a torn value; the guard's clock times counters standing still.
        self._guard = CounterGuard(sensor, sleep=sleep, clock=lambda: clock() / 1e9)
        self._prev: Snapshot | None = None
        self._totals = EnergyTotals()
        self._carry = Carry()  # attribution's state from one window to the next
        self._lock = threading.Lock()
        self._resets = 0  # new baselines since the last Frame
        self._followed: set[int] = set()  # pids whose tree each Frame carries (Frame.trees)
        self._watched: set[str] = set()  # cgroups whose counter's delta each Frame carries (Frame.cgroup_ns)

    @property
    def last_snapshot(self) -> Snapshot | None:
        """The snapshot the next window starts from: the baseline, or where the last Frame ended (None
        before a baseline). The runner tells from it a skipped sample (unchanged) from a new baseline
        (changed, and tick() gave no Frame); a sink learns of new baselines from `Frame.resets`."""
        return self._prev

    def follow(self, pid: int) -> None:
        """Frames from now on carry the live processes below `pid` (`Frame.trees`): a meter of one
        process tree then needs nothing but Frames."""
        with self._lock:
            self._followed.add(pid)

    def watch(self, path: str, *, v2: bool) -> bool:
        """Read the cgroup at `path`'s CPU counter at every scan from now on, and carry its delta over
        each window in Frames (`Frame.cgroup_ns`); False when the reader has no such hierarchy."""
        with self._lock:
            if not self.procfs.watch(path, v2=v2):
                return False
            self._watched.add(path)
            return True

    def unwatch(self, path: str) -> None:
        """Stop what `watch` started (the cgroup is about to be removed)."""
        with self._lock:
            if path in self._watched:
                self._watched.discard(path)
                self.procfs.unwatch(path)

    def snapshot(self, energy: EnergyReading) -> Snapshot:
        """`energy` and the CPU times of the machine and its processes, now."""
        machine, tasks = self.procfs.scan_changed()
        seq, changed = self.procfs.changed()
        return Snapshot(
            self._clock(),
            self._wall(),
            energy,
            machine,
            tasks,
            self.procfs.exited(),
            self.procfs.cgroup_ns(),
            seq,
            changed,
        )

    def tick(self) -> Frame | None:
        """Take a snapshot and return the Frame since the previous one (None for the first or a skip)."""
        with self._lock:
            return self._tick()

    def _tick(self) -> Frame | None:
        # A tick makes tens of thousands of short-lived objects without reference cycles (refcounting
        # frees them); letting them trigger collections of the whole heap mid-tick cost over a third of
        # a tick with 10,000 consumers. The collector runs again after the tick.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._measure()
        finally:
            if collecting:
                gc.enable()

    def _measure(self) -> Frame | None:
        """A Frame since the last accepted snapshot, or None: a first snapshot, or a skipped sample
        (the counters judged it wrong: the next window is measured from the last good snapshot)."""
        started = time.perf_counter()
        prev = self._prev
        if prev is None:
            reading = self._guard.baseline()
            if reading is not None:
                with contextlib.suppress(OSError):  # no baseline yet: the next tick tries again
                    self._prev = self.snapshot(reading)
            return None
        accepted = self._guard.next(prev.energy)
        if accepted is None:
            return None
        try:
            now = self._prev = self.snapshot(accepted.reading)
        except OSError as error:  # /proc itself unreadable for a moment: the window goes on
            log.warning("sample skipped: cannot scan %s: %s", self.procfs.root, error)
            return None
        deltas = accepted.deltas
        if deltas is None:  # a new baseline
            self._resets += 1
            return None
        self._totals.add(deltas, host_energy(deltas)[0])
        ran = cpu_used(prev, now)
        keys = consumer_keys(ran, self._carry)
        processes = {key: facts for key in keys if (facts := self.procfs.process(key)) is not None}
        frame = attribute(
            prev,
            now,
            deltas,
            self._totals,
            processes,
            sensor=self.sensor.name,
            estimated=self.sensor.estimated or now.energy.estimated_uj > prev.energy.estimated_uj,
            carry=self._carry,
            ran=ran,
        )
        names = self.names
        frame = dataclasses.replace(
            frame,
            workloads={}
            if names is None
            else names.names(c.container for c in frame.containers if c.container),
            node_name=None if names is None else names.node_name,
            agent=self._agent_stats(frame.window_s, frame.n_cpus),
            machine=now.machine,
            socket_cpus=self.socket_cpus,
            host=self.host.read() if self.host is not None else None,
            scan_ns=(prev.t_ns, now.t_ns),
            resets=self._resets,
            trees={pid: frozenset(self.procfs.descendants(pid)) for pid in self._followed},
            cgroup_ns={
                path: now.cgroups[path] - prev.cgroups[path]
                for path in self._watched
                if path in now.cgroups and path in prev.cgroups
            },
            model=getattr(self.sensor, "model", None),
        )
        self._resets = 0
        self.latest = frame
        self.tick_seconds = time.perf_counter() - started
        return frame

    def _agent_stats(self, window_s: float, n_cpus: int) -> AgentStats:
        usage = resource.getrusage(resource.RUSAGE_SELF)  # to the µs (os.times counts clock ticks: 10 ms)
        cpu = usage.ru_utime + usage.ru_stime
        used = cpu - (self.latest.agent.cpu_seconds if self.latest is not None else cpu)
        rss, vsize = self.procfs.own_memory()
        return AgentStats(
            cpu_seconds=cpu,
            cpu_percent=100 * used / (window_s * n_cpus) if window_s > 0 and self.latest is not None else 0.0,
            peak_rss_bytes=usage.ru_maxrss * 1024,
            rss_bytes=rss,
            vsize_bytes=vsize,
            tick_seconds=self.tick_seconds,
            processes_tracked=self.procfs.tracked,
        )

    def frame(self, min_interval_s: float) -> Frame | None:
        """For pull exporters: the latest Frame if younger than min_interval_s, else a new tick.

        Concurrent callers in one window share one Frame.
        """
        with self._lock:
            prev = self._prev
            if prev is not None and (self._clock() - prev.t_ns) / 1e9 < min_interval_s:
                return self.latest
            return self._tick() or self.latest

    def close(self) -> None:
        self.sensor.close()
        self.procfs.close()
        if self.host is not None:
            self.host.close()
        if self.names is not None:
            self.names.close()
