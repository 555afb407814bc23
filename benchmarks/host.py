"""Host-only sampling rate: RAPL reads and host power, without the /proc scan.

A tick here is what host power needs: `PowercapSensor.read()` of a synthetic powercap tree (two
sockets with core, uncore and dram, and psys: 9 counters) judged by the sampler's `CounterGuard`
(per-counter deltas across wraps, bounds, host energy). Ticks run back to back for the given time.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import Budget, Result, fmt
from tests.support.powercap_tree import PowercapTree
from wattprobe.core.counters import CounterGuard, first_reading
from wattprobe.sources.powercap import PowercapSensor


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
    result.budgets.append(Budget("host-only ticks per second", rate, 1000, "/s", at_least=True))
    return result
