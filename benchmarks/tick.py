"""One full tick with N extra processes alive, against the floor and against the psutil way.

The tick is `Sampler.tick()`: the RAPL read of a synthetic powercap tree, the /proc scan, the
attribution and the Frame. The floor, measured in the same run and interleaved with the ticks, is
the cost of only reading the /proc files the tick reads for a sleeping process, in a tight loop, with
no parsing: `/proc/stat`, the /proc listing, and per process `schedstat` (single-threaded) or `stat`
(multi-threaded), each opened, read and closed (what a reader without kept descriptors must do).
Two more floors are measured alongside: the stat floor (the listing, then open, read and close each
process's `stat`: what psutil, Scaphandre or process-exporter pay per process), and pread on
descriptors kept open (the bare syscalls).

Long arguments: the tick that first reads the facts (exe, command line, cgroup) of processes with
long arguments, all of them new to the sampler and all of them run in its window, against the same
tick with processes whose arguments are short; and the tick after it (facts known).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import Budget, Result, median, ms, percentile
from benchmarks.floor import PROC, open_read_floor, pread_floor, stat_floor, tick_files, wall_time
from benchmarks.swarm import MAX_ARG, Swarm, long_argument, own_cgroup
from tests.support.powercap_tree import PowercapTree
from wattprobe.core.sampler import Sampler
from wattprobe.sources.identity.redaction import Redactor
from wattprobe.sources.powercap import PowercapSensor
from wattprobe.sources.procfs import ProcfsReader, key_pid


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


WAKE_S = 0.2  # how often the processes with long arguments wake: each runs in every window


def measure_long_arguments(n: int, arg_bytes: int, big_bytes: int, repeats: int) -> dict[str, float]:
    """With `n` processes carrying an argument of `arg_bytes` characters and one of `big_bytes` (0: a
    short command line), all woken in every window, the least times (s) of: the tick that first reads
    their facts (a new sampler's first Frame), the tick after it, reading the facts of the `n`
    (`facts`) and of the one (`facts_big`) with a new reader, and redacting one argv of each kind."""
    first: list[float] = []
    next_: list[float] = []
    facts: list[float] = []
    facts_big: list[float] = []
    frames = 0
    with (
        tempfile.TemporaryDirectory() as tmp,
        Swarm(n, arg_bytes=arg_bytes, wake_s=WAKE_S) as swarm,
        Swarm(1, arg_bytes=big_bytes, wake_s=WAKE_S) as big,
    ):
        tree = PowercapTree(Path(tmp) / "powercap")
        for _ in range(repeats):
            sampler = Sampler(PowercapSensor(str(tree.root)), ProcfsReader())
            try:
                for times in (first, next_):
                    for _attempt in range(10):  # the ticks before the first Frame make baselines
                        time.sleep(1.5 * WAKE_S)  # every process ran in the window
                        tree.advance(1.5 * WAKE_S)
                        start = time.perf_counter()
                        frame = sampler.tick()
                        if frame is not None:
                            times.append(time.perf_counter() - start)
                            frames += 1
                            break
                tracked = sampler.procfs.tracked
            finally:
                sampler.close()
            facts.append(_facts_time(swarm.pids))
            facts_big.append(_facts_time(big.pids))
    return {
        "first": min(first),
        "next": min(next_),
        "redaction": _redaction_time(arg_bytes),
        "redaction_big": _redaction_time(big_bytes),
        "facts": min(facts),
        "facts_big": min(facts_big),
        "processes": tracked,
        "frames": frames,
    }


def _redaction_time(arg_bytes: int, runs: int = 20) -> float:
    """The least time of `runs` redactions of an argv with one argument of `arg_bytes` characters."""
    argv = [
        "/usr/bin/python3",
        "-c",
        "import time; time.sleep(9)",
        long_argument(arg_bytes) if arg_bytes else "x",
    ]
    redactor, best = Redactor(), float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        redactor.argv(argv)
        best = min(best, time.perf_counter() - start)
    return best


def _facts_time(pids: list[int]) -> float:
    """The time a new reader takes to read the static facts of `pids` (exe, command line, cgroup)."""
    reader = ProcfsReader()
    try:
        _, tasks = reader.scan()
        keys = [key for key in tasks if key_pid(key) in set(pids)]
        start = time.perf_counter()
        for key in keys:
            reader.process(key)
        return time.perf_counter() - start
    finally:
        reader.close()


def bench(
    sizes: tuple[int, ...] = (1000, 5000),
    repeats: int = 30,
    psutil_repeats: int = 7,
    own_cgroup_size: int | None = 5000,
    long_arguments: tuple[int, int, int] | None = (1000, 4096, MAX_ARG),
    long_repeats: int = 5,
) -> Result:
    """`own_cgroup_size`: also that many processes in a cgroup of their own (None: not measured);
    `long_arguments`: (N, A, B), N processes with an argument of A characters and one of B (None: not
    measured), `long_repeats` times."""
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
    if long_arguments is not None:
        _long_arguments(result, *long_arguments, long_repeats)
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


def _long_arguments(result: Result, n: int, arg_bytes: int, big_bytes: int, repeats: int) -> None:
    short = measure_long_arguments(n, 0, 0, repeats)
    long = measure_long_arguments(n, arg_bytes, big_bytes, repeats)
    result.tables.append(
        [
            [
                "extra processes, run in every window",
                "tracked",
                "first tick (facts read)",
                "next tick",
                f"facts of the {n:,}",
                "facts of the one",
                "redacting one argv / the one",
            ],
            *(
                [
                    label,
                    f"{m['processes']:,.0f}",
                    ms(m["first"]),
                    ms(m["next"]),
                    ms(m["facts"]),
                    ms(m["facts_big"]),
                    f"{ms(m['redaction'])} / {ms(m['redaction_big'])}",
                ]
                for label, m in (
                    (f"{n:,} + 1, short arguments", short),
                    (f"{n:,} with {arg_bytes:,} B arguments + 1 with {big_bytes:,} B", long),
                )
            ),
        ]
    )
    result.numbers |= {f"long_args_{k}": v for k, v in long.items()}
    result.numbers |= {f"short_args_{k}": v for k, v in short.items()}
    result.budgets += [
        Budget(
            "first tick, added by each process with a long argument",
            (long["first"] - short["first"]) / (n + 1) * 1e6,
            250,
            "µs",
        ),
        Budget("next tick, long arguments / short ones", long["next"] / short["next"], 1.5, "×"),
        Budget(f"redacting a {arg_bytes:,} B argument", long["redaction"] * 1e6, 200, "µs"),
        Budget(f"redacting a {big_bytes:,} B argument", long["redaction_big"] * 1e3, 50, "ms"),
    ]
    result.notes.append(
        "Long arguments: least times of the repeats. A process's facts (exe, command line, cgroup; the "
        "command line redacted) are read once per life; the first tick of a new sampler reads those of "
        "every process that ran, the rest of the machine's included. Before redaction was linear (its "
        "URL pattern backtracked), one 4,096 B argument of this kind took 0.27 s to redact (4.5 minutes "
        "for 1,000) and the 131,071 B one 8.5 s (131,071 letters: 3 minutes), on a 2-core machine under load."
    )
