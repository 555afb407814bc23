"""`wattprobe.measure()`: the energy of a block of Python, or of each call of a function.

    with wattprobe.measure() as m:
        train()
    print(m.energy_j, m.carbon_g, m.estimated)

    @wattprobe.measure(country="FR")
    def train(): ...

It measures as `wattprobe run` does, in the calling process: the real Sampler (the same sensors and
counter guard, the same options as keyword arguments), driven by the same runner, in a background
thread, every `step` seconds, with a `meter.Meter` as its sink, which adds up the share of host energy
of the calling process and its children (those that ended included, reaped into their parents). The
block's end stops the runner (an Event is its wait), which closes the last window then. The runner
thread's own CPU time is left out of the process's and reported apart (`overhead_cpu_s`): what
measuring costs is one tick per step (about 1 ms of CPU with 100 processes on the machine, see
docs/performance.md). Where no sensor works, the block still runs, one line says why, and every figure
is None (absent, never 0).

The calling process's other threads count as its own. Its children are found through their parents;
a process that leaves the tree (a daemon that double-forks) is counted until it leaves: for a
command that does so, `wattprobe run` (a cgroup of its own, a subreaper) is exact.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from wattprobe.commandenergy.carbon import CarbonSettings
from wattprobe.commandenergy.meter import Meter, Tally
from wattprobe.commandenergy.result import Result
from wattprobe.config import settings
from wattprobe.errors import UsageError, WattprobeError
from wattprobe.sinks.kit import options
from wattprobe.sources import SourceSettings

if TYPE_CHECKING:
    from wattprobe.pipeline.runner import Runner

log = logging.getLogger("wattprobe.measure")
F = TypeVar("F", bound=Callable[..., Any])
_SOURCE_KEYS = {f.name for f in dataclasses.fields(SourceSettings)} - {"name"}
_said: set[str] = set()


class _Once(logging.Filter):
    """Lets each distinct message through once per process: a function measured at every call says
    that power is estimated (or why no sensor works) once, not at every call."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if message in _said:
            return False
        _said.add(message)
        return True


_ONCE = _Once()
log.addFilter(_ONCE)
logging.getLogger("wattprobe.sources").addFilter(_ONCE)


def measure(
    *,
    sensor: str = "auto",
    step: float = 1.0,
    carbon_intensity: float | None = None,
    country: str | None = None,
    **sources: Any,
) -> Measurement:
    """A measurement of the calling process and its children, for a `with` block or as a decorator.

    `sensor` and `sources` are the command line's global options, with - as _ (`vm=True`,
    `powercap_root="/path"`, `tdp=65`, `procfs_root=...`); `carbon_intensity` (g CO2e/kWh) or
    `country` (an ISO code) set the carbon intensity, else the world's average. A bad value raises
    ValueError, an unknown name TypeError.
    """
    return Measurement(
        sensor=sensor, step=step, carbon_intensity=carbon_intensity, country=country, **sources
    )


class Measurement:
    """Figures are None until a block ends, and when no sensor worked (`error` says why)."""

    def __init__(
        self,
        *,
        sensor: str = "auto",
        step: float = 1.0,
        carbon_intensity: float | None = None,
        country: str | None = None,
        **sources: Any,
    ) -> None:
        unknown = sorted(set(sources) - _SOURCE_KEYS)
        if unknown:
            known = ", ".join(sorted(_SOURCE_KEYS | {"sensor", "step", "carbon_intensity", "country"}))
            raise TypeError(f"wattprobe.measure(): unknown argument {unknown[0]!r} (known: {known})")
        given = {key: value for key, value in {"name": sensor, **sources}.items() if value is not None}
        carbon = {"carbon_intensity": carbon_intensity, "country": country}
        try:
            if not isinstance(step, int | float) or isinstance(step, bool):
                raise UsageError(f"step: must be a number of seconds, got {step!r}")
            options.check_step(step)
            self._sources = settings.from_table(SourceSettings, given, "wattprobe.measure()")
            self._carbon = settings.from_table(
                CarbonSettings, {k: v for k, v in carbon.items() if v is not None}, "wattprobe.measure()"
            )
        except UsageError as error:
            raise ValueError(str(error)) from None
        self.step = float(step)
        self.result: Result | None = None
        self.error: str | None = None  # why nothing was measured
        self.label: tuple[str, ...] = ()
        self._active = False
        self._reset()

    def _reset(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._meter: Meter | None = None
        self._runner: Runner | None = None
        self._tally: Tally | None = None
        self._failure: str | None = None
        self._overhead_s = 0.0

    # -- as a context manager ----------------------------------------------------------------
    def __enter__(self) -> Measurement:
        if self._active:
            raise RuntimeError("this measurement is already running: nest a new wattprobe.measure() instead")
        self._active = True
        self._reset()
        self.result, self.error = None, None
        from wattprobe.pipeline.runner import Runner
        from wattprobe.pipeline.wiring import open_sampler

        started = time.thread_time()
        try:
            sampler = open_sampler(self._sources)
        except WattprobeError as error:
            self._fail(str(error))
            return self
        finally:
            self._overhead_s += time.thread_time() - started
        me = os.getpid()
        sampler.follow(me)
        sensor = sampler.sensor
        self._meter = Meter(
            me,
            sensor=sensor.name,
            estimated=sensor.estimated,
            step_s=self.step,
            root_counts=True,
            exclude_thread=True,
        )
        self._runner = Runner(
            sampler, [self._meter], step_s=self.step, wait=self._stop.wait, started=self._started
        )
        self._thread = threading.Thread(target=self._sample, name="wattprobe-measure", daemon=True)
        self._thread.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._thread is not None:
                self._stop.set()
                self._thread.join()
            if self._failure is not None:
                self._fail(self._failure)
            elif self._tally is not None:
                self.result = Result(
                    self._tally,
                    self._carbon.intensity,
                    self.label,
                    wattprobe_cpu_seconds=self._overhead_s,
                )
        finally:
            self._active = False

    def _started(self) -> None:
        """The baseline is taken (in the runner's thread): the block may run."""
        assert self._meter is not None
        self._meter.begin()
        self._ready.set()

    def _sample(self) -> None:
        """The runner's thread: the baseline, a tick every step, the last window when told to stop."""
        runner, meter = self._runner, self._meter
        assert runner is not None and meter is not None
        started = time.thread_time()
        try:
            runner.run()
            self._tally = meter.tally()
        except Exception as error:  # whatever happens here, the caller's program goes on
            self._failure = f"the measurement stopped: {error}"
            log.debug("the measurement stopped", exc_info=True)
        finally:
            self._ready.set()
            runner.sampler.close()
            self._overhead_s += time.thread_time() - started

    def _fail(self, why: str) -> None:
        self.error = why
        log.warning("wattprobe.measure(): no energy measured: %s", why)

    # -- as a decorator ------------------------------------------------------------------------
    def __call__(self, function: F) -> F:
        """Measure each call of `function`; this object then holds the last call's figures."""
        label = (getattr(function, "__qualname__", repr(function)),)

        @functools.wraps(function)
        def measured(*args: Any, **kwargs: Any) -> Any:
            run = copy.copy(self)  # each call its own: recursive and concurrent calls included
            run._active = False
            run._reset()
            run.label = label
            try:
                with run:
                    return function(*args, **kwargs)
            finally:
                self.result, self.error = run.result, run.error
                if run.result is not None:
                    log.info("%s: %s", label[0], run.summary())

        measured.measurement = self  # type: ignore[attr-defined]
        return measured  # type: ignore[return-value]

    # -- the figures ---------------------------------------------------------------------------
    def _tally_value(self, name: str) -> Any:
        return None if self.result is None else getattr(self.result.tally, name)

    @property
    def energy_j(self) -> float | None:
        """The calling process's and its children's energy over the block, J."""
        return self._tally_value("energy_j")

    @property
    def host_energy_j(self) -> float | None:
        """The whole machine's energy over the same time, J."""
        return self._tally_value("host_energy_j")

    @property
    def duration_s(self) -> float | None:
        return self._tally_value("duration_s")

    @property
    def cpu_seconds(self) -> float | None:
        """CPU time of the process (its measuring thread left out) and of its children."""
        return self._tally_value("cpu_seconds")

    @property
    def average_power_w(self) -> float | None:
        return self._tally_value("average_power_w")

    @property
    def estimated(self) -> bool | None:
        """True when the sensor models power rather than measuring it."""
        return self._tally_value("estimated")

    @property
    def sensor(self) -> str | None:
        return self._tally_value("sensor")

    @property
    def carbon_g(self) -> float | None:
        """g CO2e of `energy_j` at the carbon intensity in use."""
        return None if self.result is None else self.result.carbon_g

    @property
    def host_carbon_g(self) -> float | None:
        return None if self.result is None else self.result.host_carbon_g

    @property
    def overhead_cpu_s(self) -> float | None:
        """CPU time the measuring itself took (its thread, and opening the sensor)."""
        return None if self.result is None else self.result.wattprobe_cpu_seconds

    def summary(self) -> str:
        """The figures in one line."""
        if self.result is None:
            return f"no energy measured: {self.error}" if self.error else "not measured yet"
        t = self.result.tally
        est = " (estimated)" if t.estimated else ""
        return (
            f"{t.energy_j:.2f} J{est} in {t.duration_s:.2f} s ({t.cpu_seconds:.2f} CPU s), "
            f"{self.result.carbon_g:.3g} g CO2e; host {t.host_energy_j:.2f} J"
        )

    def __repr__(self) -> str:
        return f"<wattprobe measurement: {self.summary()}>"
