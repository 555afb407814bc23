"""Host-only sampling rate: RAPL reads and host power, without the /proc scan.

A tick here is what host power needs: `PowercapSensor.read()` of a synthetic powercap tree (two
sockets with core, uncore and dram, and psys: 9 counters) judged by the sampler's `CounterGuard`
(per-counter deltas across wraps, bounds, host energy). Ticks run back to back for the given time.

Then what a read costs where the counters are sysfs files, as RAPL's are: the same tree with each
counter's file a link to a number sysfs gives (the file the table names), read through descriptors
kept open (what the sensor does on sysfs) and opened anew at each read (what it does elsewhere,
where a tree may be rewritten by rename); the median of 5 runs of reads back to back.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import Budget, Result, fmt, median
from tests.support.powercap_tree import PowercapTree
from wattprobe.core.counters import CounterGuard, first_reading
from wattprobe.sources.powercap import PowercapSensor

# Numbers sysfs gives on most machines: a counter's file linked to one is read as sysfs reads it.
SYSFS_NUMBERS = (
    "/sys/devices/virtual/net/lo/mtu",
    "/sys/devices/system/cpu/kernel_max",
    "/sys/kernel/mm/ksm/full_scans",
)


def _sysfs_reads(tmp: Path, reads: int) -> tuple[str, float, float] | None:
    """The sysfs number used, and the seconds a read of the tree's counters linked to it takes, through
    kept descriptors and opened anew (the median of 5 runs of `reads` reads); None without one."""
    target = next((p for p in SYSFS_NUMBERS if _number(p)), None)
    if target is None:
        return None
    tree = PowercapTree(tmp / "on-sysfs")
    for path in tree.paths.values():
        path.unlink()
        path.symlink_to(target)
    times: dict[bool, list[float]] = {True: [], False: []}
    sensors = {keep: PowercapSensor(str(tree.root), keep_open=keep) for keep in times}
    try:
        for _ in range(5):
            for keep, sensor in sensors.items():
                start = time.perf_counter()
                for _ in range(reads):
                    sensor.read()
                times[keep].append((time.perf_counter() - start) / reads)
    finally:
        for sensor in sensors.values():
            sensor.close()
    return target, median(times[True]), median(times[False])


def _number(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read().strip().isdigit()
    except OSError:
        return False


def bench(seconds: float = 3.0) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        tree = PowercapTree(Path(tmp) / "powercap")
        sensor = PowercapSensor(str(tree.root))
        guard = CounterGuard(sensor)
        prev = first_reading(sensor)
        ticks = 0
        start = time.perf_counter()
        deadline = start + seconds
        while (now := time.perf_counter()) < deadline:
            accepted = guard.next(prev)  # read, judged against the last reading
            if accepted is not None:
                prev = accepted.reading
            ticks += 1
        rate = ticks / (now - start)
        counters = len(prev.counters)
        on_sysfs = _sysfs_reads(Path(tmp), max(100, round(2000 * seconds)))
    result = Result(
        "host",
        "Host-only sampling rate (RAPL)",
        __doc__.split("\n", 2)[2] + f"\n{seconds:g} s of ticks.",
    )
    result.tables.append(
        [
            ["counters", "ticks per second", "time per tick"],
            [str(counters), fmt(rate), f"{1e6 / rate:.1f} µs"],
        ]
    )
    result.numbers = {"ticks_per_s": rate, "counters": counters}
    if on_sysfs is None:
        result.notes.append(f"No sysfs number to link counters to here (none of {', '.join(SYSFS_NUMBERS)}).")
    else:
        target, kept, anew = on_sysfs
        result.tables.append(
            [
                [f"a read of {counters} counters on sysfs (each a link to {target})", "time per read"],
                ["through descriptors kept open (the sensor on sysfs)", f"{kept * 1e6:.1f} µs"],
                ["each opened, read and closed (the sensor elsewhere)", f"{anew * 1e6:.1f} µs"],
            ]
        )
        result.numbers |= {"sysfs_kept_s": kept, "sysfs_anew_s": anew}
    result.budgets.append(Budget("host-only ticks per second", rate, 1000, "/s", at_least=True))
    return result
