"""The one place energy counters are judged: a reading is used only when it is right.

Sensors read raw values; this module decides whether they may become a window of energy:

- **A delta** is taken across a wrap at `max_energy_range_uj`. It is implausible when the counter went
  down without a known range, advanced by more than half its range, or advanced by more than the zone
  can draw in the window (`Counter.max_w`, from the tree's `constraint_*_max_power_uw`, else
  DEFAULT_MAX_W).
- **A read that does not parse, or an implausible one**, is read again a few times within a few
  milliseconds before the sample is given up: a writer rewriting the file in place (a guest reading its
  host's tree through 9p or virtiofs) leaves it empty or holding its first digits only briefly.
- **A baseline** is accepted only once confirmed: the largest of a burst of reads a ms apart (a torn
  value is always below the value being written), consistent with another read of the burst. If the
  counters did not move across the burst, they advance in steps (a tree a host rewrites every few
  seconds): the baseline then waits for their next step, so that no window starts between two updates.
- **A window in which host energy did not advance** is no window (a stalled writer, a counter updated
  in steps): it is skipped and the next one measured from the last accepted reading, so a stall never
  shows as 0 W followed by a spike.
- **A reading's time** is known to within its read (`EnergyReading.spread_ns`): a read that took
  longer than both SLOW_READ_NS and a hundredth of its window (an agent descheduled on a loaded
  machine) is read again, so that a window's energy and its time belong together.
- **A reset** (counters that start again from a lower value) is accepted only after RESET_READINGS
  consecutive readings, spanning RESET_MIN_S at least, agree with each other at a plausible power; torn
  values do not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from wattprobe.core.model import HOST_DOMAINS, Counter, EnergyReading, Sensor
from wattprobe.errors import SensorReadError

log = logging.getLogger(__name__)

CounterKey = tuple[int | None, str]

# The bound for a zone whose tree states no maximum (a VM's exported tree, a sensor without limits):
# the largest server packages are rated 500 W, and a VM's share of its host is below the host's power.
DEFAULT_MAX_W = 2000.0
# A reading may be a counter update late or early: this much time is added to a window before it is
# bounded (RAPL updates every ~1 ms).
SLACK_S = 0.01
# Re-reads of a torn or implausible value before the sample is given up, and the pause before each.
REREADS = 4
REREAD_PAUSE_S = 0.001  # ~1 ms more with the read itself and the scheduler
# A read that took longer than this, and than this share of its window, was interrupted: read again.
SLOW_READ_NS = 3_000_000
SLOW_READ_SHARE = 0.01
# Reads a baseline may take while it waits for the counters to move (at REREAD_PAUSE_S apart).
BASELINE_READS = 60
# Consecutive mutually consistent readings, and the time they span at least, that make a reset.
RESET_READINGS = 3
RESET_MIN_S = 1.0
# How long counters may stand still before the agent says so.
STALL_WARNING_S = 10.0
# How long start-up keeps trying to get a first consistent reading.
START_TIMEOUT_S = 1.0


def counter_delta(prev: Counter, now: Counter, window_s: float) -> int | None:
    """µJ spent between two reads of one counter, across a wrap; None when the pair is implausible."""
    delta = now.uj - prev.uj
    if delta < 0 and prev.max_uj > 0:
        delta += prev.max_uj
    if delta < 0 or (prev.max_uj > 0 and delta > prev.max_uj // 2):
        return None
    if delta > (now.max_w or DEFAULT_MAX_W) * (max(window_s, 0.0) + SLACK_S) * 1e6:
        return None
    return delta


def energy_deltas(prev: EnergyReading, now: EnergyReading) -> dict[CounterKey, int] | None:
    """Per-counter µJ between two readings; None if any counter present in both is implausible."""
    window_s = (now.t_ns - prev.t_ns) / 1e9
    before = {c.key: c for c in prev.counters}
    deltas = {}
    for counter in now.counters:
        old = before.get(counter.key)
        if old is None:
            continue
        delta = counter_delta(old, counter, window_s)
        if delta is None:
            return None
        deltas[counter.key] = delta
    return deltas


def host_energy(deltas: dict[CounterKey, int]) -> tuple[int, str]:
    """Host µJ and where it comes from: a host-wide counter (psys, wall) if any, else packages + dram."""
    for domain in HOST_DOMAINS:
        if (None, domain) in deltas:
            return deltas[(None, domain)], domain
    packages = sum(d for (_, domain), d in deltas.items() if domain == "package")
    dram = [d for (_, domain), d in deltas.items() if domain == "dram"]
    return packages + sum(dram), "package+dram" if dram else "package"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A reading the guard accepts, and the energy since the previously accepted one."""

    reading: EnergyReading
    deltas: dict[CounterKey, int] | None  # None: a new baseline, no window ends here


class CounterGuard:
    """Reads a sensor and accepts only readings that are consistent with the last accepted one.

    A value torn by a writer that truncates the file and writes it in pieces is always below the value
    being written (empty, or its first digits). So where reads disagree, the largest is the one to trust:
    a baseline is the largest of a burst of reads, confirmed by another read of the burst.
    """

    def __init__(
        self,
        sensor: Sensor,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sensor = sensor
        self._sleep = sleep
        self._clock = clock
        self._aligned = True  # False: wait for the counters' next step before the first window
        self._candidates: list[EnergyReading] = []  # consecutive readings that may be a reset
        self.problem: SensorReadError | None = None  # why the last reading was refused
        self._troubled = False  # a warning was given and the trouble is not over
        self._still_since: float | None = None  # since when host energy has not advanced

    def baseline(self, *, quiet: bool = False) -> EnergyReading | None:
        """A first reading: the largest of a burst of reads, confirmed by another read of the burst.

        The burst ends as soon as two reads agree and host energy moved between them; if it never
        moves (up to BASELINE_READS reads, about 0.1 s), the counters advance in steps and the
        agreeing reading is taken, to be replaced by their first step. None when nothing agrees
        (warned, unless `quiet`).
        """
        reads: list[EnergyReading] = []
        still = None
        for attempt in range(BASELINE_READS):
            if attempt:
                self._sleep(REREAD_PAUSE_S)
            reading = self._read()
            if reading is None or not self._timely(reading, SLOW_READ_NS):
                continue
            reads.append(reading)
            best = max(reads, key=_total)
            for other in reads:
                earlier, later = sorted((other, best), key=lambda r: r.t_ns)
                deltas = energy_deltas(earlier, later) if other is not best else None
                if deltas is None:
                    continue
                if host_energy(deltas)[0] > 0:
                    self._aligned = True
                    return best
                still = best
        if still is not None:
            self._aligned = False
            return still
        if reads:
            self.problem = SensorReadError("reads a few ms apart disagree")
        if not quiet:
            self._warn()
        return None

    def next(self, last: EnergyReading) -> Accepted | None:
        """The next reading if it is consistent with `last` (the last accepted), else None (skipped).

        An implausible value is read again a few times first. A confirmed reset, or the first step of
        counters that advance in steps, is accepted as a new baseline (`deltas` None).
        """
        reads = []
        for attempt in range(REREADS + 1):
            if attempt:
                self._sleep(REREAD_PAUSE_S)
            reading = self._read()
            if reading is None or not self._timely(reading, (reading.t_ns - last.t_ns) * SLOW_READ_SHARE):
                continue
            deltas = energy_deltas(last, reading)
            if deltas is not None:
                return self._consistent(reading, deltas)
            reads.append(reading)
            self.problem = SensorReadError(
                "an energy counter went backwards or jumped beyond what its zone can draw"
            )
        if not reads:
            self._warn()
            return None
        return self._maybe_reset(max(reads, key=_total))

    def _consistent(self, reading: EnergyReading, deltas: dict[CounterKey, int]) -> Accepted | None:
        self._candidates.clear()
        if host_energy(deltas)[0] == 0:
            self._standing_still()
            return None
        self._still_since = None
        if self._troubled:
            log.warning("energy counters consistent again: measuring")
            self._troubled = False
        if not self._aligned:
            self._aligned = True
            log.info("energy counters advance in steps: measuring from their first step")
            return Accepted(reading, None)
        return Accepted(reading, deltas)

    def _burst(self, n: int) -> list[EnergyReading]:
        reads = []
        for attempt in range(n):
            if attempt:
                self._sleep(REREAD_PAUSE_S)
            reading = self._read()
            if reading is not None:
                reads.append(reading)
        return reads

    def _timely(self, reading: EnergyReading, allowed_ns: float) -> bool:
        """Whether the read was quick enough for its time to stand for its values."""
        if reading.spread_ns <= max(SLOW_READ_NS, allowed_ns):
            return True
        self.problem = SensorReadError(
            f"reading the energy counters took {reading.spread_ns / 1e6:.0f} ms (a busy machine)"
        )
        return False

    def _read(self) -> EnergyReading | None:
        try:
            return self.sensor.read()
        except SensorReadError as error:
            self.problem = error
            return None

    def _maybe_reset(self, reading: EnergyReading) -> Accepted | None:
        """A reading inconsistent with the last accepted one: torn, or one of a reset.

        A reset is taken once RESET_READINGS consecutive readings, RESET_MIN_S or more apart from first
        to last, agree with each other: values torn by a writer do not stay consistent that long.
        """
        if self._candidates and energy_deltas(self._candidates[-1], reading) is None:
            self._candidates.clear()
        self._candidates.append(reading)
        span_s = (reading.t_ns - self._candidates[0].t_ns) / 1e9
        if len(self._candidates) < RESET_READINGS or span_s < RESET_MIN_S:
            self._warn()
            return None
        deltas = energy_deltas(self._candidates[-2], reading) or {}
        self._candidates.clear()
        self._troubled = False
        self._aligned = host_energy(deltas)[0] > 0
        log.warning(
            "energy counters were reset (consistent for %.1f s below or far above the last good reading): "
            "measuring from the new values; the energy since the last good reading is unknown",
            span_s,
        )
        return Accepted(reading, None)

    def _standing_still(self) -> None:
        now = self._clock()
        if self._still_since is None:
            self._still_since = now
        elif now - self._still_since >= STALL_WARNING_S and not self._troubled:
            self.problem = SensorReadError(
                f"the energy counters have not advanced for {now - self._still_since:.0f} s "
                "(reading a VM's tree: is its host's exporter running?)"
            )
            self._warn()

    def _warn(self) -> None:
        """Warn once per episode of trouble (unless the sensor said it); the rest goes to the debug log."""
        if self._troubled or (self.problem is not None and self.problem.said):
            log.debug("sample skipped: %s", self.problem)
            return
        log.warning("sample skipped: %s; no figures until the counters are consistent", self.problem)
        self._troubled = True


def _total(reading: EnergyReading) -> int:
    return sum(c.uj for c in reading.counters)


def first_reading(
    sensor: Sensor, *, timeout_s: float = START_TIMEOUT_S, sleep: Callable[[float], None] = time.sleep
) -> EnergyReading:
    """A confirmed reading at start-up, tried for up to `timeout_s`; else the SensorReadError that says
    why. An error that waiting will not cure (`lasting`, e.g. permissions) ends the wait at once."""
    guard = CounterGuard(sensor, sleep=sleep)
    deadline = time.monotonic() + timeout_s
    while (reading := guard.baseline(quiet=True)) is None:
        problem = guard.problem or SensorReadError("no reading")
        if problem.lasting or time.monotonic() >= deadline:
            raise problem
        sleep(0.01)
    return reading
