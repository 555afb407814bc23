"""Helpers for the PowerSpy2 tests: emulators on ptys and `wattprobe` run as a real subprocess."""

from __future__ import annotations

import itertools
import math
import subprocess
from pathlib import Path
from typing import TypedDict, Unpack

from tests.support import agents
from wattprobe.sources.powerspy2.emulator import PowerSpy2Emulator


class EmulatorOptions(TypedDict, total=False):
    """PowerSpy2Emulator's options the tests set."""

    watts: float
    volts: float
    line_hz: float
    v1: bool
    streaming: bool
    periods: int


def emulator(tmp_path: Path, name: str = "rfcomm", **options: Unpack[EmulatorOptions]) -> PowerSpy2Emulator:
    """A started emulator whose link lies in `tmp_path`."""
    return PowerSpy2Emulator(str(tmp_path / name), **options).start()


def wattprobe(*args: str) -> subprocess.Popen[str]:
    """`python -m wattprobe ARGS` with stdout and stderr piped (text)."""
    return agents.start(agents.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def gmt_rows(
    stdout: str, interval_ms: int, unit: str, no_load: bool = False, lossy: bool = False
) -> list[tuple[int, int]]:
    """Read a provider's output the way the Green Metrics Tool does, asserting what it rejects.

    `lossy`: packets were destroyed on purpose, so the gaps are not checked.
    """
    rows = []
    for line in stdout.splitlines():
        fields = line.split(" ")
        assert len(fields) == 2 and all(f.isdigit() for f in fields), f"not two integer columns: {line!r}"
        rows.append((int(fields[0]), int(fields[1])))
    assert len(rows) >= 3, f"too few readings: {stdout!r}"
    stamps = [t for t, _ in rows]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) > 0, "timestamps not strictly increasing"
    assert lossy or 0.8 * interval_ms * 1000 <= percentile(gaps, 0.95) <= 1.2 * interval_ms * 1000, gaps
    if unit == "uJ" and not no_load:
        assert all(value > 1 for _, value in rows)
    return rows
