"""`wattprobe.measure()`: the energy of a block of Python, or of each call of a function.

    with wattprobe.measure() as m:
        train()
    print(m.energy_j, m.carbon_g, m.estimated)

    @wattprobe.measure(country="FR")
    def train(): ...

It measures as `wattprobe run` does, with the same runner and meter sink (the same sensors and
counter guard, the same options as keyword arguments), in a helper process started on the first
measurement and reused (`commandenergy.helper`): entering and leaving a block are a round trip to it,
and the caller keeps its descriptors (two pipes), its threads, its GIL and its open-files limit. The
helper adds up, every `step` seconds, the share of host energy of the calling process and its
children (those that ended included, reaped into their parents), and reports its own CPU time for the
block apart (`overhead_cpu_s`). Where no sensor works, the block still runs, one line says why, and
every figure is None (absent, never 0).

The calling process's threads all count as its own (a coroutine's or a generator's figures are the
process's over its run, other tasks included). Its children are found through their parents; a
process that leaves the tree (a daemon that double-forks) is counted until it leaves: for a command
that does so, `wattprobe run` (a cgroup of its own, a subreaper) is exact.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import inspect
import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from wattprobe.commandenergy.carbon import CarbonSettings
from wattprobe.commandenergy.helper_link import ENVIRONMENT, HelperLink, link, tally_from_json
from wattprobe.commandenergy.result import Result
from wattprobe.config import settings
from wattprobe.errors import UsageError, WattprobeError
from wattprobe.sinks.kit import options
from wattprobe.sources import SourceSettings

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
    """Figures are None until a block ends, and when no sensor worked or it gave no energy over the
    block (`error` says why): absent, never 0."""

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
        self._given = given
        self.result: Result | None = None
        self.error: str | None = None  # why nothing was measured
        self.label: tuple[str, ...] = ()
        self._active = False
        self._reset()

    def _reset(self) -> None:
        self._id: int | None = None  # the helper's measurement, while one runs

    # -- as a context manager ----------------------------------------------------------------
    def __enter__(self) -> Measurement:
        if self._active:
            raise RuntimeError("this measurement is already running: nest a new wattprobe.measure() instead")
        self._active = True
        self._reset()
        self.result, self.error = None, None
        helper = link()
        ident = helper.new_id()
        request = {
            "op": "start",
            "id": ident,
            "root": os.getpid(),
            "sources": self._given,
            "step": self.step,
            "cwd": os.getcwd(),
            "env": {name: os.environ.get(name) for name in ENVIRONMENT},
        }
        answer = self._ask(helper, request)
        if answer is not None:
            self._id = ident
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._id is not None:
                answer = self._ask(link(), {"op": "stop", "id": self._id})
                if answer is not None:
                    self.result = Result(
                        tally_from_json(answer["tally"]),
                        self._carbon.intensity,
                        self.label,
                        wattprobe_cpu_seconds=answer["overhead_cpu_s"],
                    )
                    if self.result.tally.error is not None:  # no energy figure: absent, never 0
                        self._fail(self.result.tally.error)
        finally:
            self._id = None
            self._active = False

    def _ask(self, helper: HelperLink, request: dict[str, Any]) -> dict[str, Any] | None:
        """The helper's answer, what it said logged here; None (and the one line why) when it failed."""
        try:
            answer = helper.request(request)
        except WattprobeError as error:
            self._fail(str(error))
            return None
        for name, level, message in answer.get("logs", ()):
            logging.getLogger(name).log(level, "%s", message)
        if "error" in answer:
            self._fail(answer["error"])
            return None
        return answer

    def _fail(self, why: str) -> None:
        self.error = why
        log.warning("wattprobe.measure(): no energy measured: %s", why)

    # -- as a decorator ------------------------------------------------------------------------
    def __call__(self, function: F) -> F:
        """Measure each call of `function`, over its whole run: an `async def`'s until it returns, a
        generator's until it is exhausted or closed. This object then holds the last call's figures."""
        label = (getattr(function, "__qualname__", repr(function)),)
        measured: Callable[..., Any]
        if inspect.isasyncgenfunction(function):
            measured = self._async_generator(function, label)
        elif inspect.iscoroutinefunction(function):

            async def measured(*args: Any, **kwargs: Any) -> Any:
                with self._call(label):
                    return await function(*args, **kwargs)

        elif inspect.isgeneratorfunction(function):

            def measured(*args: Any, **kwargs: Any) -> Any:
                with self._call(label):
                    return (yield from function(*args, **kwargs))

        else:

            def measured(*args: Any, **kwargs: Any) -> Any:
                with self._call(label):
                    return function(*args, **kwargs)

        measured = functools.wraps(function)(measured)
        measured.measurement = self  # type: ignore[attr-defined]
        return measured  # type: ignore[return-value]

    @contextlib.contextmanager
    def _call(self, label: tuple[str, ...]) -> Iterator[None]:
        """One call measured on its own (recursive and concurrent calls included); its figures then
        this object's."""
        run = copy.copy(self)
        run._active = False
        run._reset()
        run.label = label
        try:
            with run:
                yield
        finally:
            self.result, self.error = run.result, run.error
            if run.result is not None:
                log.info("%s: %s", label[0], run.summary())

    def _async_generator(self, function: Callable[..., Any], label: tuple[str, ...]) -> Callable[..., Any]:
        async def measured(*args: Any, **kwargs: Any) -> Any:
            with self._call(label):
                generator = function(*args, **kwargs)
                try:
                    value = await generator.__anext__()
                    while True:
                        try:
                            sent = yield value
                        except GeneratorExit:
                            await generator.aclose()
                            raise
                        except BaseException as error:
                            value = await generator.athrow(error)
                        else:
                            value = await generator.asend(sent)
                except StopAsyncIteration:
                    return

        return measured

    # -- saving ----------------------------------------------------------------------------------
    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write the figures as `wattprobe run -o` does (the same document), as a shell's `>` would.
        RuntimeError when there are none (not measured yet, or `error` says why); WattprobeError, one
        line, when the file cannot be written."""
        from wattprobe.sinks.kit.files import write_whole

        result = self._measured()
        write_whole(os.fspath(path), (json.dumps(result.to_json(), indent=2) + "\n").encode())

    def save_html(self, path: str | os.PathLike[str]) -> None:
        """Write the report `wattprobe run --report` writes (needs matplotlib: the `report` extra)."""
        from wattprobe.commandenergy import report
        from wattprobe.sinks.kit.files import write_whole

        result = self._measured()
        report.check_available()
        write_whole(os.fspath(path), report.html(result).encode())

    def _measured(self) -> Result:
        if self.result is None:
            raise RuntimeError(f"wattprobe.measure(): nothing to save: {self.summary()}")
        return self.result

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
        """CPU time of the process and of its children."""
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
        """CPU time the measuring itself took, in the helper process (its runner, opening the sensor)."""
        return None if self.result is None else self.result.wattprobe_cpu_seconds

    def summary(self) -> str:
        """The figures in one line."""
        if self.result is None:
            return f"no energy measured: {self.error}" if self.error else "not measured yet"
        return self.result.summary()

    def __repr__(self) -> str:
        return f"<wattprobe measurement: {self.summary()}>"
