"""One full tick with N extra processes alive, against the floor and against the psutil way.

The tick is `Sampler.tick()`: the RAPL read of a synthetic powercap tree, the /proc scan, the
attribution and the Frame. The floor, measured in the same run and interleaved with the ticks, is
the cost of only reading the /proc files the tick reads, in a tight loop, with no parsing:
`/proc/stat`, the /proc listing, and per process `schedstat` (single-threaded) or `stat`
(multi-threaded). It is measured twice: opening, reading and closing each file (what a reader
without kept descriptors must do), and pread on descriptors kept open (the bare syscalls).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import Budget, Result, median, ms, percentile
from benchmarks.swarm import Swarm
from tests.powercap_tree import PowercapTree
from tests.support.processes import stat_fields
from wattprobe.core.sampler import Sampler
from wattprobe.sources.powercap import PowercapSensor
from wattprobe.sources.procfs import ProcfsReader

PROC = "/proc"


def _cpu_file(name: str) -> str:
    """The file a tick reads for this pid when it slept: schedstat if single-threaded, else stat."""
    try:
        threads = int(stat_fields(int(name))[17])
    except (OSError, ValueError, IndexError):
        return "stat"
    return "schedstat" if threads == 1 else "stat"


def floor_open_read(files: dict[str, str]) -> None:
    """Open, read and close every file a tick reads: no parsing, no bookkeeping."""
    with open(f"{PROC}/stat", "rb", buffering=0) as f:
        f.read()
    for name in os.listdir(PROC):
        which = files.get(name)
        if which is None:
            continue
        try:
            fd = os.open(f"{PROC}/{name}/{which}", os.O_RDONLY)
        except OSError:
            continue
        try:  # noqa: SIM105 (a context manager would add its own cost to the floor)
            os.read(fd, 1024)
        except OSError:
            pass
        os.close(fd)


def floor_pread(stat_fd: int, fds: list[int]) -> None:
    """pread on descriptors kept open: the syscalls of a tick and nothing else."""
    os.pread(stat_fd, 65536, 0)
    os.listdir(PROC)
    pread = os.pread
    for fd in fds:
        try:  # noqa: SIM105 (as above)
            pread(fd, 1024, 0)
        except OSError:
            pass


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


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def measure(n: int, repeats: int, psutil_repeats: int) -> dict[str, float]:
    """Median times (s) of a tick, of both floors and of the psutil way, with `n` extra processes."""
    with tempfile.TemporaryDirectory() as tmp, Swarm(n):
        tree = PowercapTree(Path(tmp) / "powercap")
        sampler = Sampler(PowercapSensor(str(tree.root)), ProcfsReader())
        sampler.tick()
        tree.advance(0.1)
        sampler.tick()  # every descriptor is open now: the steady state
        files = {name: _cpu_file(name) for name in os.listdir(PROC) if name.isdigit()}
        fds = []
        for name, which in files.items():
            with contextlib.suppress(OSError):
                fds.append(os.open(f"{PROC}/{name}/{which}", os.O_RDONLY))
        stat_fd = os.open(f"{PROC}/stat", os.O_RDONLY)
        ticks, floors, preads, frames = [], [], [], 0
        try:
            for _ in range(repeats):
                tree.advance(0.1)
                floors.append(_timed(floor_open_read, files))
                start = time.perf_counter()
                frame = sampler.tick()
                ticks.append(time.perf_counter() - start)
                frames += frame is not None
                preads.append(_timed(floor_pread, stat_fd, fds))
            tracked = sampler.procfs.tracked
            psutil_agent = PsutilAgent(sampler.sensor)
            psutil_agent.tick()
            psutil_ticks = [_timed(psutil_agent.tick) for _ in range(psutil_repeats)]
        finally:
            for fd in [*fds, stat_fd]:
                os.close(fd)
            sampler.close()
    return {
        "processes": tracked,
        "tick": median(ticks),
        "tick_p90": percentile(ticks, 90),
        "floor": median(floors),
        "pread_floor": median(preads),
        "psutil": median(psutil_ticks),
        "frames": frames,
    }


def bench(sizes: tuple[int, ...] = (1000, 5000), repeats: int = 30, psutil_repeats: int = 7) -> Result:
    rows = [
        [
            "extra processes",
            "tracked",
            "tick (median)",
            "tick (p90)",
            "floor: open+read",
            "tick / floor",
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
        "of the processes that ran, with the same RAPL read.",
    )
    for n in sizes:
        m = measure(n, repeats, psutil_repeats)
        rows.append(
            [
                f"{n:,}",
                f"{m['processes']:,.0f}",
                ms(m["tick"]),
                ms(m["tick_p90"]),
                ms(m["floor"]),
                f"{m['tick'] / m['floor']:.2f}",
                ms(m["pread_floor"]),
                f"{m['tick'] / m['pread_floor']:.2f}",
                ms(m["psutil"]),
                f"{m['psutil'] / m['tick']:.1f}",
            ]
        )
        result.numbers |= {f"{key}_{n}": value for key, value in m.items()}
    result.tables.append(rows)
    big = max(sizes)
    result.budgets += [
        Budget(
            f"tick / floor, {big:,} processes",
            result.numbers[f"tick_{big}"] / result.numbers[f"floor_{big}"],
            1.5,
            "×",
        ),
        Budget(
            f"psutil way / tick, {big:,} processes",
            result.numbers[f"psutil_{big}"] / result.numbers[f"tick_{big}"],
            3.0,
            "×",
            at_least=True,
        ),
    ]
    return result
