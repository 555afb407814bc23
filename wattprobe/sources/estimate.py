"""Power estimated from CPU load where no energy counter exists (cloud VMs, CI runners).

Two documented models (see README, "Estimation"):
- `ccf` (default, needs no input): Cloud Carbon Footprint's linear model per vCPU,
  W = n_vcpu x (Wmin + u x (Wmax - Wmin)), with SPECpower-derived coefficients per CPU family.
- `teads` (chosen by --tdp): the Teads curve, a fraction of TDP interpolated between measured
  points at 0, 10, 50 and 100 % load.
Load u = busy / (busy + idle) CPU time from /proc/stat over the window (steal counts for neither).
The power is integrated into a µJ counter, so the rest of the pipeline sees a sensor like any other.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable
from typing import TYPE_CHECKING

from wattprobe.core.model import Counter, EnergyReading, MachineCpu
from wattprobe.errors import SensorReadError, SensorUnavailable
from wattprobe.sources.procfs import read_machine_cpu

if TYPE_CHECKING:
    from wattprobe.sources import SourceSettings

# Watts per vCPU at idle and at full load (Cloud Carbon Footprint, SPECpower averages).
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


def teads_fraction(load: float) -> float:
    """Fraction of TDP drawn at `load` (0..1), linear between the Teads points."""
    load = min(max(load, 0.0), 1.0)
    i = min(bisect_right(TEADS_LOAD, load), len(TEADS_LOAD) - 1)
    x0, x1, y0, y1 = TEADS_LOAD[i - 1], TEADS_LOAD[i], TEADS_TDP_FRACTION[i - 1], TEADS_TDP_FRACTION[i]
    return y0 + (y1 - y0) * (load - x0) / (x1 - x0)


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
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.procfs_root = procfs_root
        self.clock = clock  # monotonic ns: the time over which power is integrated
        self.tdp = tdp
        self.vcpu_watts = vcpu_watts
        self.memory_watts = memory_watts
        self._cpu_uj = 0.0
        self._dram_uj = 0.0
        self._last: tuple[int, MachineCpu] | None = None

    @classmethod
    def from_settings(cls, settings: SourceSettings) -> EstimateSensor:
        memory_gb = _memory_gb(settings.procfs_root) if settings.memory_watts_per_gb else 0.0
        return cls(
            settings.procfs_root,
            tdp=settings.tdp,
            vcpu_watts=settings.vcpu_watts,
            memory_watts=settings.memory_watts_per_gb * memory_gb,
        )

    @property
    def model(self) -> str:
        """The model and its coefficients, in words."""
        if self.tdp is not None:
            return f"Teads curve, TDP {self.tdp:g} W"
        low, high = self.vcpu_watts
        return f"linear per vCPU, {low:g}-{high:g} W"

    def cpu_watts(self, load: float, n_cpus: int) -> float:
        if self.tdp is not None:
            return self.tdp * teads_fraction(load)
        low, high = self.vcpu_watts
        return n_cpus * (low + min(max(load, 0.0), 1.0) * (high - low))

    def read(self) -> EnergyReading:
        now = self.clock()
        try:
            cpu = read_machine_cpu(self.procfs_root)
        except (OSError, ValueError) as error:
            raise SensorReadError(f"cannot read {self.procfs_root}/stat: {error}") from error
        if self._last is not None:
            then, before = self._last
            busy, idle = cpu.busy - before.busy, cpu.idle - before.idle
            load = busy / (busy + idle) if busy + idle > 0 else 0.0
            seconds = (now - then) / 1e9
            self._cpu_uj += self.cpu_watts(load, cpu.n_cpus) * seconds * 1e6
            self._dram_uj += self.memory_watts * seconds * 1e6
        self._last = (now, cpu)
        counters = [Counter(0, "package", round(self._cpu_uj))]
        if self.memory_watts:
            counters.append(Counter(0, "dram", round(self._dram_uj)))
        return EnergyReading(now, tuple(counters))

    def close(self) -> None:
        pass


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
