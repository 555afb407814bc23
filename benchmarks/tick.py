"""One full tick with N extra processes alive, against the floor and against the psutil way.

The tick is `Sampler.tick()`: the RAPL read of a synthetic powercap tree, the /proc scan, the
attribution and the Frame. The floor, measured in the same run and interleaved with the ticks, is
the cost of only reading the /proc files the tick reads for a sleeping process, in a tight loop, with
no parsing: `/proc/stat`, the /proc listing, and per process `schedstat` (single-threaded) or `stat`
(multi-threaded), each opened, read and closed (what a reader without kept descriptors must do).
Two more floors are measured alongside: the stat floor (the listing, then open, read and close each
process's `stat`: what psutil, Scaphandre or process-exporter pay per process), and pread on
descriptors kept open (the bare syscalls).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import Budget, Result, median, ms, percentile
from benchmarks.floor import PROC, open_read_floor, pread_floor, stat_floor, tick_files, wall_time
from benchmarks.swarm import Swarm, own_cgroup
from tests.support.powercap_tree import PowercapTree
from wattprobe.core.sampler import Sampler
from wattprobe.sources.powercap import PowercapSensor
from wattprobe.sources.procfs import ProcfsReader


class PsutilAgent:
    """A tick done the way psutil-based agents do it: process_iter with cpu_times, deltas, shares."""

    def __init__(self, sensor: PowercapSensor) -> None:
        import psutil

        self.psutil = psutil
        self.sensor = sensor
        self.prev: dict[int, float] = {}
        self.prev_t = time.monotonic()

    def tick(self) -> list[tuple[int, str, str, float]]:
        psutil = self.psutil
        self.sensor.read()
        psutil.cpu_times()
        now: dict[int, float] = {}
        procs = {}
        for proc in psutil.process_iter(["cpu_times"]):
            times = proc.info["cpu_times"]
            if times is not None:
                now[proc.pid] = times.user + times.system
                procs[proc.pid] = proc
        t = time.monotonic()
        machine_s = (t - self.prev_t) * (psutil.cpu_count() or 1)
        consumers = []
        for pid, seconds in now.items():
            used = seconds - self.prev.get(pid, 0.0)
            if used > 0:
                proc = procs[pid]
                with contextlib.suppress(psutil.Error):
                    consumers.append((pid, proc.exe(), " ".join(proc.cmdline()), used / machine_s))
        self.prev, self.prev_t = now, t
        return consumers


def measure(n: int, repeats: int, psutil_repeats: int, cgroup: Path | None = None) -> dict[str, float]:
    """Median times (s) of a tick, of the floors and of the psutil way, with `n` extra processes (in
    `cgroup`, a cgroup of their own, when given)."""
    with tempfile.TemporaryDirectory() as tmp, Swarm(n, cgroup=cgroup):
        tree = PowercapTree(Path(tmp) / "powercap")
        sampler = Sampler(PowercapSensor(str(tree.root)), ProcfsReader())
        sampler.tick()
        tree.advance(0.1)
        sampler.tick()  # every descriptor is open now: the steady state
        files = tick_files()
        fds = []
        for name, which in files.items():
            with contextlib.suppress(OSError):
                fds.append(os.open(f"{PROC}/{name}/{which}", os.O_RDONLY))
        stat_fd = os.open(f"{PROC}/stat", os.O_RDONLY)
        ticks, floors, stat_floors, preads, frames = [], [], [], [], 0
        try:
            for _ in range(repeats):
                tree.advance(0.1)
                floors.append(wall_time(open_read_floor, files))
                start = time.perf_counter()
                frame = sampler.tick()
                ticks.append(time.perf_counter() - start)
                frames += frame is not None
                preads.append(wall_time(pread_floor, stat_fd, fds))
                stat_floors.append(wall_time(stat_floor))
            tracked = sampler.procfs.tracked
            psutil_agent = PsutilAgent(sampler.sensor)
            psutil_agent.tick()
            psutil_ticks = [wall_time(psutil_agent.tick) for _ in range(psutil_repeats)]
        finally:
            for fd in [*fds, stat_fd]:
                os.close(fd)
            sampler.close()
    return {
        "processes": tracked,
        "tick": median(ticks),
        "tick_p90": percentile(ticks, 90),
        "floor": median(floors),
        "stat_floor": median(stat_floors),
        "pread_floor": median(preads),
        "psutil": median(psutil_ticks),
        "frames": frames,
    }


def bench(
    sizes: tuple[int, ...] = (1000, 5000),
    repeats: int = 30,
    psutil_repeats: int = 7,
    own_cgroup_size: int | None = 5000,
) -> Result:
    """`own_cgroup_size`: also that many processes in a cgroup of their own (None: not measured)."""
    rows = [
        [
            "extra processes",
            "tracked",
            "tick (median)",
            "tick (p90)",
            "floor: open+read",
            "tick / floor",
            "floor: stat",
            "tick / stat floor",
            "floor: pread",
            "tick / pread floor",
            "psutil way",
            "psutil / tick",
        ]
    ]
    result = Result(
        "tick",
        "Tick cost against the floor, and the psutil way",
        __doc__.split("\n", 2)[2]
        + f"\nMedians of {repeats} ticks (psutil: {psutil_repeats}), after a first tick that opens every "
        "descriptor. The psutil way is `psutil.process_iter(['cpu_times'])` plus `exe()` and `cmdline()` "
        "of the processes that ran, with the same RAPL read. The extra processes share the cgroup of "
        "the benchmark (and of the sampler), whose counter moves at every tick, unless the row says "
        "they have a cgroup of their own, as a service's or a container's processes do.",
    )
    runs: list[tuple[str, int, Path | None]] = [(f"{n:,}", n, None) for n in sizes]
    with own_cgroup() as cgroup:
        if own_cgroup_size and cgroup is not None:
            runs.append((f"{own_cgroup_size:,} in a cgroup of their own", own_cgroup_size, cgroup))
        elif own_cgroup_size:
            result.notes.append(
                "No cgroup could be made here (not root?): processes in a cgroup of their own not measured."
            )
        for label, n, where in runs:
            m = measure(n, repeats, psutil_repeats, where)
            key = f"{n}" if where is None else f"{n}_cgroup"
            rows.append(
                [
                    label,
                    f"{m['processes']:,.0f}",
                    ms(m["tick"]),
                    ms(m["tick_p90"]),
                    ms(m["floor"]),
                    f"{m['tick'] / m['floor']:.2f}",
                    ms(m["stat_floor"]),
                    f"{m['tick'] / m['stat_floor']:.2f}",
                    ms(m["pread_floor"]),
                    f"{m['tick'] / m['pread_floor']:.2f}",
                    ms(m["psutil"]),
                    f"{m['psutil'] / m['tick']:.1f}",
                ]
            )
            result.numbers |= {f"{name}_{key}": value for name, value in m.items()}
    result.tables.append(rows)
    big = max(sizes)
    numbers = result.numbers
    result.budgets += [
        Budget(
            f"tick / floor, {big:,} processes", numbers[f"tick_{big}"] / numbers[f"floor_{big}"], 1.5, "×"
        ),
        Budget(
            f"psutil way / tick, {big:,} processes",
            numbers[f"psutil_{big}"] / numbers[f"tick_{big}"],
            3.0,
            "×",
            at_least=True,
        ),
    ]
    return result
