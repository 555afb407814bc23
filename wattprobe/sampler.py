"""The sampler owns the sensor and the procfs reader, makes snapshots and frames, keeps the last one."""

from __future__ import annotations

import argparse
import gc
import logging
import threading
import time
from collections.abc import Iterator

from wattprobe.attribution import Carry, EnergyTotals, attribute, energy_deltas, host_energy
from wattprobe.errors import SensorReadError
from wattprobe.model import Frame, Sensor, Snapshot
from wattprobe.procfs import ProcfsReader, raise_fd_limit

log = logging.getLogger(__name__)

# Consecutive implausible readings after which the counters are taken as reset (a VM restarted).
MAX_REJECTED = 3


class Sampler:
    """Ticks: snapshot now, compare with the previous snapshot, publish an immutable Frame."""

    def __init__(self, sensor: Sensor, procfs: ProcfsReader) -> None:
        self.sensor = sensor
        self.procfs = procfs
        self.latest: Frame | None = None
        self.tick_seconds = 0.0  # how long the last tick took
        self._prev: Snapshot | None = None
        self._totals = EnergyTotals()
        self._rejected = 0
        self._carry = Carry()  # attribution's state from one window to the next
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        energy = self.sensor.read()
        machine, tasks = self.procfs.scan()
        return Snapshot(
            time.monotonic_ns(),
            time.time(),
            energy,
            machine,
            tasks,
            self.procfs.exited(),
            self.procfs.cgroup_ns(),
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
        started = time.perf_counter()
        try:
            now = self.snapshot()
        except SensorReadError as error:
            log.warning("sample skipped: %s", error)
            return None
        prev, self._prev = self._prev, now
        if prev is None:
            return None
        deltas = energy_deltas(prev.energy, now.energy)
        if deltas is None:
            self._rejected += 1
            if self._rejected < MAX_REJECTED:
                log.warning("sample skipped: an energy counter went backwards or jumped (torn read?)")
                self._prev = prev  # measure the next window from the last good snapshot
            else:
                log.warning("energy counters reset: measuring from the new values")
                self._rejected = 0
            return None
        self._rejected = 0
        self._totals.add(deltas, host_energy(deltas)[0])
        frame = attribute(
            prev,
            now,
            deltas,
            self._totals,
            self.procfs.process,
            sensor=self.sensor.name,
            estimated=self.sensor.estimated,
            carry=self._carry,
        )
        self.latest = frame
        self.tick_seconds = time.perf_counter() - started
        return frame

    def frame(self, min_interval_s: float) -> Frame | None:
        """For pull exporters: the latest Frame if younger than min_interval_s, else a new tick.

        Concurrent callers in one window share one Frame.
        """
        with self._lock:
            prev = self._prev
            if prev is not None and (time.monotonic_ns() - prev.t_ns) / 1e9 < min_interval_s:
                return self.latest
            return self._tick() or self.latest

    def frames(self, step_s: float, timeout_s: float | None = None) -> Iterator[Frame]:
        """Take a baseline now, then yield a Frame every step until timeout_s (None: forever)."""
        start = time.monotonic()
        self.tick()
        deadline = None if timeout_s is None else start + timeout_s + step_s / 10
        due = start + step_s
        while deadline is None or due <= deadline:
            time.sleep(max(0.0, due - time.monotonic()))
            frame = self.tick()
            if frame is not None:
                yield frame
            due += step_s

    def close(self) -> None:
        self.sensor.close()
        self.procfs.close()


def open_sampler(args: argparse.Namespace) -> Sampler:
    """The sampler the global options describe."""
    from wattprobe.sensors import make_sensor

    raise_fd_limit()
    return Sampler(make_sensor(args), ProcfsReader(args.procfs_root, cgroupfs_root=args.cgroupfs_root))
