"""Power estimated from CPU load where no energy counter exists (cloud VMs, CI runners).

A power model maps the machine's load u (busy / (busy + idle) CPU time from /proc/stat over the
window; steal counts for neither) to watts per counter. The models, best first:
- `calibrated` (--model FILE): this host's own curve, measured by `wattprobe calibrate` against RAPL
  or a wall meter (`CalibratedModel`), one monotone curve per domain.
- `teads` (--tdp): the Teads curve, a fraction of TDP interpolated between measured points at 0, 10,
  50 and 100 % load.
- `linear per vCPU` (--cpu-profile, --vcpu-min/max-watts): Cloud Carbon Footprint's
  W = n_vcpu x (Wmin + u x (Wmax - Wmin)), with SPECpower-derived coefficients per CPU family.
- Given none of those, the best published figure for this CPU (`best_known`): Boavizta's measured
  curve for its model range on bare metal, else Cloud Carbon Footprint's coefficients for its
  microarchitecture, else their average over families.
The power is integrated into µJ counters, so the rest of the pipeline sees a sensor like any other.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from wattprobe.core.model import HOST_DOMAINS, Counter, EnergyReading, MachineCpu
from wattprobe.errors import SensorReadError, SensorUnavailable, UsageError
from wattprobe.sources.cpuinfo import CpuIdentity, read_cpu_identity
from wattprobe.sources.kept_files import KeptFiles
from wattprobe.sources.procfs import parse_machine_cpu, read_machine_cpu

if TYPE_CHECKING:
    from wattprobe.sources import SourceSettings

log = logging.getLogger(__name__)

Key = tuple[int | None, str]  # (socket, domain) of a counter

# Watts per vCPU at idle and at full load, per microarchitecture: Cloud Carbon Footprint's
# methodology ("Energy Estimate (Watt-Hours)"), averages of the SPECpower_ssj2008 results per family.
CPU_PROFILES: dict[str, tuple[float, float]] = {
    "unknown": (0.74, 3.5),
    "cascadelake": (0.64, 3.97),
    "skylake": (0.65, 4.26),
    "broadwell": (0.71, 3.69),
    "haswell": (1.00, 4.74),
    "coffeelake": (1.14, 5.42),
    "sandybridge": (2.17, 8.58),
    "ivybridge": (3.04, 8.25),
    "epyc1": (0.82, 2.55),
    "epyc2": (0.47, 1.69),
    "graviton2": (0.47, 1.69),
    "epyc3": (0.45, 2.02),
}
MEMINFO_FIX = "point --procfs-root at the procfs mount (default /proc), or drop --memory-watts-per-gb"
# Teads curve: load -> fraction of TDP.
TEADS_LOAD = (0.0, 0.10, 0.50, 1.00)
TEADS_TDP_FRACTION = (0.12, 0.32, 0.75, 1.02)
# Boavizta's CPU consumption profiles per model range (boaviztapi, "CPU consumption profile"; fitted on
# the SPECpower_ssj2008 published results): one socket's P(u%) = a ln(b (u% + c)) + d watts, at least 1 W.
BOAVIZTA_PROFILES: dict[str, tuple[float, float, float, float]] = {
    "Xeon Platinum": (171.1813, 0.0354, 36.8953, -10.1336),
    "Xeon Gold": (35.5688, 0.2438, 9.6694, -0.6087),
    "Xeon Silver": (20.7794, 0.3043, 8.4241, 0.8613),
}
# Microarchitecture from a model name, by the vendors' numbering: Xeon Scalable's second digit is its
# generation (x1xx Skylake, x2xx Cascade Lake), Xeon E5's suffix (none, v2, v3, v4), EPYC's last digit.
MICROARCHITECTURES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"xeon (?:platinum|gold|silver|bronze) \d1\d\d"), "skylake"),
    (re.compile(r"xeon (?:platinum|gold|silver|bronze) \d2\d\d"), "cascadelake"),
    (re.compile(r"xeon (?:cpu )?e5-\d{4}\w* v2\b"), "ivybridge"),
    (re.compile(r"xeon (?:cpu )?e5-\d{4}\w* v3\b"), "haswell"),
    (re.compile(r"xeon (?:cpu )?e5-\d{4}\w* v4\b"), "broadwell"),
    (re.compile(r"xeon (?:cpu )?e5-\d{4}\w*(?! v\d)\b"), "sandybridge"),
    (re.compile(r"epyc [0-9a-z]{3}1\b"), "epyc1"),
    (re.compile(r"epyc [0-9a-z]{3}2\b"), "epyc2"),
    (re.compile(r"epyc [0-9a-z]{3}3\b"), "epyc3"),
)
MODEL_SCHEMA = 1  # of the file `wattprobe calibrate` writes
CALIBRATE_FIX = "make one with `wattprobe calibrate -o FILE` on this host where RAPL or a PowerSpy2 measures"


def teads_fraction(load: float) -> float:
    """Fraction of TDP drawn at `load` (0..1), linear between the Teads points."""
    load = min(max(load, 0.0), 1.0)
    i = min(bisect_right(TEADS_LOAD, load), len(TEADS_LOAD) - 1)
    x0, x1, y0, y1 = TEADS_LOAD[i - 1], TEADS_LOAD[i], TEADS_TDP_FRACTION[i - 1], TEADS_TDP_FRACTION[i]
    return y0 + (y1 - y0) * (load - x0) / (x1 - x0)


# -- curves ---------------------------------------------------------------------------------------------
def isotonic(values: Sequence[float], weights: Sequence[float] | None = None) -> list[float]:
    """The non-decreasing sequence closest to `values` in weighted least squares (pool adjacent
    violators): a measured point below the one before it is averaged with it, not dropped."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(values, weights or [1.0] * len(values), strict=True):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, w, n = blocks.pop()
            block = blocks[-1]
            block[0] = (block[0] * block[1] + mean * w) / (block[1] + w)
            block[1] += w
            block[2] += n
    return [mean for mean, _, n in blocks for _ in range(int(n))]


@dataclass(frozen=True, slots=True)
class Curve:
    """Watts against load: straight lines between points of non-decreasing watts, the end segments
    extended to loads 0 and 1 (a calibration rarely reaches an idle machine exactly), never below 0 W."""

    points: tuple[tuple[float, float], ...]  # (load, watts), loads increasing

    def __call__(self, load: float) -> float:
        load = min(max(load, 0.0), 1.0)
        xs = [x for x, _ in self.points]
        if len(xs) == 1:
            return self.points[0][1]
        i = min(max(bisect_right(xs, load), 1), len(xs) - 1)
        (x0, y0), (x1, y1) = self.points[i - 1], self.points[i]
        return max(0.0, y0 + (y1 - y0) * (load - x0) / (x1 - x0))

    @classmethod
    def fit(
        cls,
        points: Sequence[tuple[float, float]],
        weights: Sequence[float] | None = None,
        width: float = 1e-4,
    ) -> Curve:
        """The monotone piecewise-linear curve through measured (load, watts): the points within `width`
        of load of each other averaged into one (by weight), then made non-decreasing by isotonic
        regression."""
        groups: dict[int, list[float]] = {}  # bin -> [weight, weighted load, weighted watts]
        for (load, watts), weight in zip(points, weights or [1.0] * len(points), strict=True):
            group = groups.setdefault(round(load / width), [0.0, 0.0, 0.0])
            group[0] += weight
            group[1] += weight * load
            group[2] += weight * watts
        merged: list[list[float]] = []  # [load, weight, weighted watts], loads increasing
        for weight, loads, watts in (groups[k] for k in sorted(groups)):
            load = round(loads / weight, 4)
            if merged and merged[-1][0] >= load:  # two bins whose means meet: one point
                merged[-1][1] += weight
                merged[-1][2] += watts
            else:
                merged.append([load, weight, watts])
        fitted = isotonic(
            [watts / weight for _, weight, watts in merged], [weight for _, weight, _ in merged]
        )
        return cls(tuple((load, y) for (load, _, _), y in zip(merged, fitted, strict=True)))


# -- power models -----------------------------------------------------------------------------------------
class PowerModel(Protocol):
    """Watts per counter at a load; `description` says which model, with its coefficients."""

    @property
    def description(self) -> str: ...

    def watts(self, load: float, n_cpus: int) -> dict[Key, float]: ...


@dataclass(frozen=True, slots=True)
class LinearPerVcpu:
    low: float
    high: float
    family: str = ""  # where the coefficients come from, when not given by hand

    @property
    def description(self) -> str:
        source = f" ({self.family}, Cloud Carbon Footprint)" if self.family else ""
        return f"linear per vCPU, {self.low:g}-{self.high:g} W{source}"

    def watts(self, load: float, n_cpus: int) -> dict[Key, float]:
        return {(0, "package"): n_cpus * (self.low + min(max(load, 0.0), 1.0) * (self.high - self.low))}


@dataclass(frozen=True, slots=True)
class Teads:
    tdp: float

    @property
    def description(self) -> str:
        return f"Teads curve, TDP {self.tdp:g} W"

    def watts(self, load: float, n_cpus: int) -> dict[Key, float]:
        return {(0, "package"): self.tdp * teads_fraction(load)}


@dataclass(frozen=True, slots=True)
class Boavizta:
    """Boavizta's measured curve for a Xeon model range, per socket."""

    model_range: str
    sockets: int

    @property
    def description(self) -> str:
        return f"Boavizta {self.model_range} curve x {self.sockets} socket{'s' if self.sockets > 1 else ''}"

    def watts(self, load: float, n_cpus: int) -> dict[Key, float]:
        a, b, c, d = BOAVIZTA_PROFILES[self.model_range]
        percent = 100 * min(max(load, 0.0), 1.0)
        per_socket = max(1.0, a * math.log(b * (percent + c)) + d)
        return {(s, "package"): per_socket for s in range(self.sockets)}


@dataclass(frozen=True, slots=True)
class CalibratedModel:
    """A host's own curves from `wattprobe calibrate`: one per domain, summed over sockets."""

    name: str  # the file's name
    cpu_model: str | None
    n_cpus: int
    sensor: str
    curves: Mapping[str, Curve]  # domain -> watts against load

    @property
    def description(self) -> str:
        return (
            f"calibrated {self.name} ({self.sensor}, {self.cpu_model or 'unknown CPU'}, {self.n_cpus} CPUs)"
        )

    def watts(self, load: float, n_cpus: int) -> dict[Key, float]:
        return {(None if d in HOST_DOMAINS else 0, d): curve(load) for d, curve in self.curves.items()}

    def mismatch(self, cpu: CpuIdentity, n_cpus: int) -> str | None:
        """How this host differs from the one the model was made on, or None."""
        if self.cpu_model and cpu.model_name and self.cpu_model != cpu.model_name:
            return f"it was made on a {self.cpu_model}, this host has a {cpu.model_name}"
        if self.n_cpus != n_cpus:
            return f"it was made on {self.n_cpus} CPUs, this host has {n_cpus}"
        return None


def host_watts(watts: Mapping[Key, float]) -> float:
    """Host power from watts per counter, as `core.counters.host_energy` makes host energy: a host-wide
    counter (psys, wall) if any, else packages + dram."""
    for domain in HOST_DOMAINS:
        if (None, domain) in watts:
            return watts[(None, domain)]
    return sum(w for (_, domain), w in watts.items() if domain in ("package", "dram"))


def best_known(cpu: CpuIdentity) -> PowerModel:
    """The best published model for this CPU: Boavizta's curve for its model range on bare metal (a VM's
    vCPUs are a share of sockets it does not own), else Cloud Carbon Footprint's coefficients for its
    microarchitecture, else their average."""
    name = _plain(cpu.model_name or "")
    if not cpu.virtual:
        for model_range in BOAVIZTA_PROFILES:
            if model_range.lower() in name:
                return Boavizta(model_range, cpu.sockets)
    for pattern, family in MICROARCHITECTURES:
        if pattern.search(name):
            return LinearPerVcpu(*CPU_PROFILES[family], family=family)
    return LinearPerVcpu(*CPU_PROFILES["unknown"])


def _plain(model_name: str) -> str:
    """A model name lowercased without its (R) and (TM): "intel xeon gold 6230 cpu @ 2.10ghz"."""
    return " ".join(re.sub(r"\((?:r|tm)\)", " ", model_name.lower()).split())


def load_model(path: str) -> CalibratedModel:
    """The model `wattprobe calibrate` wrote at `path`; SensorUnavailable if it cannot be read,
    UsageError if it is not such a model."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except OSError as error:
        raise SensorUnavailable(
            f"cannot read the model {path} ({error.strerror or error})", f"{CALIBRATE_FIX}, or drop --model"
        ) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise UsageError(f"the model {path} is not JSON ({error}): {CALIBRATE_FIX}") from None
    try:
        return _parse_model(data, os.path.basename(path))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UsageError(f"the model {path} is not a wattprobe model ({error}): {CALIBRATE_FIX}") from None


def _parse_model(data: Any, name: str) -> CalibratedModel:
    if not isinstance(data, dict):
        raise TypeError("not an object")
    if data.get("schema_version") != MODEL_SCHEMA:
        raise ValueError(f"schema_version {data.get('schema_version')!r}, expected {MODEL_SCHEMA}")
    curves = {}
    for domain, points in data["fit"]["domains"].items():
        pairs = [(float(load), float(watts)) for load, watts in points]
        if not pairs or any(not (0 <= x <= 1) or not math.isfinite(y) or y < 0 for x, y in pairs):
            raise ValueError(f"{domain}: loads must lie in 0..1 and watts be 0 or more")
        if any(x1 <= x0 or y1 < y0 for (x0, y0), (x1, y1) in itertools.pairwise(pairs)):
            raise ValueError(f"{domain}: the fit must rise with load")
        curves[str(domain)] = Curve(tuple(pairs))
    if not curves:
        raise ValueError("no curve in fit.domains")
    n_cpus = data["n_cpus"]
    if not isinstance(n_cpus, int) or n_cpus < 1:
        raise ValueError(f"n_cpus {n_cpus!r}")
    cpu_model = data.get("cpu_model")
    return CalibratedModel(name, str(cpu_model) if cpu_model else None, n_cpus, str(data["sensor"]), curves)


# -- the sensor -------------------------------------------------------------------------------------------
class EstimateSensor:
    """Integrates modelled CPU (and optionally memory) power into energy counters."""

    name = "estimate"
    estimated = True

    def __init__(
        self,
        procfs_root: str = "/proc",
        *,
        tdp: float | None = None,
        vcpu_watts: tuple[float, float] = CPU_PROFILES["unknown"],
        memory_watts: float = 0.0,
        power_model: PowerModel | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.procfs_root = procfs_root
        self.clock = clock  # monotonic ns: the time over which power is integrated
        self.power_model: PowerModel = power_model or (
            Teads(tdp) if tdp is not None else LinearPerVcpu(*vcpu_watts)
        )
        self.memory_watts = memory_watts
        self._uj: dict[Key, float] = {}
        self._last: tuple[int, MachineCpu] | None = None
        self._files = KeptFiles()  # /proc/stat, read at every tick as the /proc reader reads it

    @classmethod
    def from_settings(cls, settings: SourceSettings) -> EstimateSensor:
        memory_gb = _memory_gb(settings.procfs_root) if settings.memory_watts_per_gb else 0.0
        return cls(
            settings.procfs_root,
            memory_watts=settings.memory_watts_per_gb * memory_gb,
            power_model=choose_model(settings),
        )

    @property
    def model(self) -> str:
        """The model and its coefficients, in words (shown with every estimated figure)."""
        return self.power_model.description

    def cpu_watts(self, load: float, n_cpus: int) -> float:
        """Host power at `load`, as the pipeline makes it of the model's counters."""
        return host_watts(self.power_model.watts(load, n_cpus))

    def read(self) -> EnergyReading:
        now = self.clock()
        try:
            cpu = parse_machine_cpu(self._files.read(f"{self.procfs_root}/stat"))
        except (OSError, ValueError) as error:
            raise SensorReadError(f"cannot read {self.procfs_root}/stat: {error}") from error
        if self._last is not None:
            then, before = self._last
            busy, idle = cpu.busy - before.busy, cpu.idle - before.idle
            load = busy / (busy + idle) if busy + idle > 0 else 0.0
            seconds = (now - then) / 1e9
            watts = self.power_model.watts(load, cpu.n_cpus)
            if self.memory_watts:
                watts[(0, "dram")] = watts.get((0, "dram"), 0.0) + self.memory_watts
            for key, w in watts.items():
                self._uj[key] = self._uj.get(key, 0.0) + w * seconds * 1e6
        else:
            self._uj = dict.fromkeys(self.power_model.watts(0.0, cpu.n_cpus), 0.0)
            if self.memory_watts:
                self._uj[(0, "dram")] = 0.0
        self._last = (now, cpu)
        counters = tuple(Counter(socket, domain, round(uj)) for (socket, domain), uj in self._uj.items())
        return EnergyReading(now, counters)

    def close(self) -> None:
        self._files.close()


def choose_model(settings: SourceSettings) -> PowerModel:
    """The model the settings ask for, else the best known for this CPU (see the module's docstring).
    A calibrated model made on another CPU is used all the same, saying so in one line."""
    if settings.model is not None:
        model = load_model(settings.model)
        try:
            n_cpus = read_machine_cpu(settings.procfs_root).n_cpus
        except (OSError, ValueError):
            n_cpus = model.n_cpus  # said by open_sources, which reads the same file first
        differs = model.mismatch(read_cpu_identity(settings.procfs_root), n_cpus)
        if differs:
            log.warning("the model %s is another host's (%s): its estimates may be off; %s", settings.model,
                        differs, CALIBRATE_FIX)  # fmt: skip
        return model
    if settings.tdp is not None:
        return Teads(settings.tdp)
    if (
        settings.cpu_profile != "unknown"
        or settings.vcpu_min_watts is not None
        or settings.vcpu_max_watts is not None
    ):
        low, high = settings.vcpu_watts
        given = settings.vcpu_min_watts is not None or settings.vcpu_max_watts is not None
        return LinearPerVcpu(
            low, high, "" if given or settings.cpu_profile == "unknown" else settings.cpu_profile
        )
    known = best_known(read_cpu_identity(settings.procfs_root))
    log.info("estimating with the %s", known.description)
    return known


def _memory_gb(procfs_root: str) -> float:
    """MemTotal in GiB; SensorUnavailable when /proc/meminfo cannot say it (not a traceback at start)."""
    path = f"{procfs_root}/meminfo"
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(b"MemTotal:"):
                    kb = int(line.split()[1])
                    if kb < 0:
                        raise ValueError(f"negative: {kb}")
                    return kb / 1024**2
    except (OSError, ValueError, IndexError) as error:
        raise SensorUnavailable(f"cannot read MemTotal from {path} ({error})", MEMINFO_FIX) from None
    return 0.0
