"""The energy of one command (or one block of Python): the tallies, their carbon, and their JSON form."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from wattprobe import __version__
from wattprobe.commandenergy.carbon import Intensity
from wattprobe.commandenergy.meter import Tally
from wattprobe.commandenergy.stats import SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class Result:
    tally: Tally
    intensity: Intensity
    command: tuple[str, ...]  # the command line, or the measured function's name
    exit_code: int | None = None
    signal: str | None = None  # the signal that ended the command, if one did
    wattprobe_cpu_seconds: float | None = None  # what measuring cost (wattprobe's own CPU time)
    still_running: tuple[int, ...] = field(default=())  # the command's processes left running at its end
    idle_power_w: float | None = None  # the host's power before the runs, when measured (`run --baseline`)

    @property
    def error(self) -> str | None:
        """Why the energy figures are None (the sensor gave no energy for the span), else None."""
        return self.tally.error

    @property
    def carbon_g(self) -> float | None:
        return _grams(self.intensity, self.tally.energy_j)

    @property
    def host_carbon_g(self) -> float | None:
        return _grams(self.intensity, self.tally.host_energy_j)

    @property
    def energy_above_idle_j(self) -> float | None:
        """The host's energy over the run less its idle power over the same windows: what running the
        command added to the machine's draw. Noise can make it negative: its sign is kept."""
        host, idle = self.tally.host_energy_j, self.idle_power_w
        if host is None or idle is None:
            return None
        return host - idle * self.tally.windows_s

    def summary(self) -> str:
        """The figures in one line (what `measure().summary()` says), carbon in g as everywhere."""
        from wattprobe.commandenergy.report import grams, seconds

        t = self.tally
        cpu = f"{seconds(t.cpu_seconds)} CPU"
        if t.error is not None or t.energy_j is None or t.host_energy_j is None:
            return f"no energy figure ({t.error}); {seconds(t.duration_s)} ({cpu})"
        est = " (estimated)" if t.estimated else ""
        return (
            f"{t.energy_j:.2f} J{est} in {seconds(t.duration_s)} ({cpu}), {grams(self.carbon_g)} CO2e; "
            f"host {t.host_energy_j:.2f} J"
        )

    def save_json(self, path: str) -> None:
        """Write `to_json()` to `path` as a shell's `>` would (WattprobeError when it cannot)."""
        from wattprobe.sinks.kit.files import write_whole

        write_whole(path, (json.dumps(self.to_json(), indent=2) + "\n").encode())

    def save_html(self, path: str) -> None:
        """Write the self-contained HTML report to `path` (needs wattprobe[report], for matplotlib)."""
        from wattprobe.commandenergy import report
        from wattprobe.sinks.kit.files import write_whole

        report.check_available()
        write_whole(path, report.html(self).encode())

    def to_json(self) -> dict[str, Any]:
        """The document `wattprobe run -o` writes: figures in J, W, s and g CO2e."""
        t = self.tally
        return {
            "schema_version": SCHEMA_VERSION,
            "command": list(self.command),
            "exit_code": self.exit_code,
            "signal": self.signal,
            "error": t.error,
            "energy_j": _r(t.energy_j),
            "host_energy_j": _r(t.host_energy_j),
            "share": _r(t.share),
            "duration_s": _r(t.duration_s),
            "cpu_seconds": _r(t.cpu_seconds),
            "average_power_w": _r(t.average_power_w),
            "peak_power_w": _r(t.peak_power_w),
            "host_average_power_w": _r(t.host_average_power_w),
            "host_peak_power_w": _r(t.host_peak_power_w),
            "idle_power_w": _r(self.idle_power_w),
            "energy_above_idle_j": _r(self.energy_above_idle_j),
            "carbon_g": _r(self.carbon_g),
            "host_carbon_g": _r(self.host_carbon_g),
            "carbon_intensity_g_per_kwh": self.intensity.g_per_kwh,
            "carbon_intensity_source": self.intensity.source,
            "sensor": t.sensor,
            "estimated": t.estimated,
            "model": t.model,
            "host_source": t.host_source,
            "measured_by": t.measured_by,
            "n_cpus": t.n_cpus or None,
            "step_s": t.step_s,
            "started_at": round(t.started_at, 3),
            "unknown_gaps": t.skipped,
            "timeline": [
                {
                    "t_s": _r(s.t_s),
                    "window_s": _r(s.window_s),
                    "command_w": _r(s.command_w),
                    "host_w": _r(s.host_w),
                }
                for s in t.steps
            ],
            "top_processes": [
                {
                    "pid": p.pid,
                    "exe": p.exe,
                    "cmdline": p.cmdline,
                    "energy_j": _r(p.energy_j),
                    "cpu_seconds": _r(p.cpu_seconds),
                }
                for p in t.top
            ],
            "still_running": list(self.still_running),
            "wattprobe_cpu_seconds": _r(self.wattprobe_cpu_seconds),
            "wattprobe_version": __version__,
        }


def _grams(intensity: Intensity, joules: float | None) -> float | None:
    return None if joules is None else intensity.grams(joules)


def _r(value: float | None) -> float | None:
    """Seven significant digits: far finer than any figure here is known to, and short to read."""
    return None if value is None else float(f"{value:.7g}")
