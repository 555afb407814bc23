"""What samplers attribute to real workloads, against the CPU time the workloads measured themselves.

Tests judge attribution with these on short runs; benchmarks/accuracy.py on long ones.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support.powercap_tree import PowercapTree
from tests.support.workloads import ThreadedLoads, children_cpu_ns, started_by
from wattprobe.core.model import Frame
from wattprobe.core.sampler import Sampler
from wattprobe.sources.powercap import PowercapSensor
from wattprobe.sources.procfs import ProcfsReader

SAMPLERS = ("CPU clock", "stat ticks")  # wattprobe's reader, and one forced to stat's clock ticks
Load = tuple[int, float, float, float]  # threads, duty, period ms, thread life ms (0: threads live on)


def attributed_while(
    sampler: Sampler, tree: PowercapTree, command: list[str], marker: str, step_s: float = 0.5
) -> dict[str, float]:
    """Run `command` while `sampler` ticks every `step_s` (its synthetic tree advanced by the real time).

    Returns the workload's own CPU ns (RUSAGE_CHILDREN: it and every descendant), what the Frames
    gave the processes whose command line carries `marker` (share × all CPUs' time) and the part
    of that which came from exited descendants. The workload is started by a marked shell that
    outlives it by two steps (`started_by`).
    """
    out = {"own_ns": 0.0, "attributed_ns": 0.0, "exited_ns": 0.0}
    last = time.monotonic()

    def tick() -> None:
        nonlocal last
        now = time.monotonic()
        tree.advance(now - last)
        last = now
        frame = sampler.tick()
        if frame is None:
            return
        machine_ns = frame.n_cpus * frame.window_s * 1e9
        for consumer in frame.consumers:
            if marker in consumer.info.cmdline:
                out["attributed_ns"] += consumer.cpu_share * machine_ns
                if consumer.watts > 0:
                    out["exited_ns"] += (
                        consumer.cpu_share * machine_ns * consumer.exited_watts / consumer.watts
                    )

    tick()
    before = children_cpu_ns()
    workload = subprocess.Popen(started_by(marker, command, 2 * step_s), stdout=subprocess.DEVNULL)
    while workload.poll() is None:
        time.sleep(step_s)
        tick()
    out["own_ns"] = children_cpu_ns() - before
    tick()  # the window in which it ended
    return out


def two_samplers(tmp: str, pids: list[int] | None) -> tuple[PowercapTree, dict[str, Sampler]]:
    """wattprobe's sampler (processes' CPU clocks, in ns) and a stat-ticks one on a procfs root that
    holds only `pids` and /proc/stat (None: all of /proc), so that a scan takes microseconds and does
    not blur short windows. Its `self` is this process, as in /proc: its pids are this namespace's."""
    proc = Path(tmp) / "proc"
    if pids is None:
        proc = Path("/proc")
    else:
        proc.mkdir()
        (proc / "stat").symlink_to("/proc/stat")
        (proc / "self").symlink_to(str(os.getpid()))
        for pid in pids:
            (proc / str(pid)).symlink_to(f"/proc/{pid}")
    tree = PowercapTree(Path(tmp) / "powercap")
    samplers = {
        "CPU clock": Sampler(PowercapSensor(str(tree.root)), ProcfsReader(str(proc))),
        "stat ticks": Sampler(PowercapSensor(str(tree.root)), ProcfsReader(str(proc), schedstat=False)),
    }
    return tree, samplers


Window = tuple[dict[str, Frame | None], list[float], float, list[float]]


def windows(
    tree: PowercapTree,
    samplers: dict[str, Sampler],
    clock: Callable[[], list[int]],
    window_s: float,
    count: int,
) -> Iterator[Window]:
    """Tick every sampler every window, in real time; yield the frames by sampler, each workload's true
    CPU ns in the window (`clock`: their own CPU time, read just before and just after the ticks), the
    elapsed ns, and the half-spread of those two reads.

    Two ticks come first: the baseline, and one a window later in which a multi-threaded process's
    threads are read for the first time (that window is measured from stat ticks)."""
    for sampler in samplers.values():
        sampler.tick()
    time.sleep(window_s)
    before = clock()
    for sampler in samplers.values():
        sampler.tick()
    after = clock()
    truth_prev = [(a + b) / 2 for a, b in zip(before, after, strict=True)]
    due = t_prev = time.monotonic()
    for _ in range(count):
        due += window_s
        time.sleep(max(0.0, due - time.monotonic()))
        tree.advance(window_s)
        before = clock()
        frames = {name: sampler.tick() for name, sampler in samplers.items()}
        after = clock()
        t_now = time.monotonic()
        truth = [(a + b) / 2 for a, b in zip(before, after, strict=True)]
        spread = [(b - a) / 2 for a, b in zip(before, after, strict=True)]
        yield frames, [n - p for n, p in zip(truth, truth_prev, strict=True)], (t_now - t_prev) * 1e9, spread
        truth_prev, t_prev = truth, t_now


def thread_errors(
    window_s: float,
    count: int,
    binary: Path,
    loads: list[Load],
    whole_proc: bool = False,
    only: tuple[str, ...] = SAMPLERS,
) -> dict[str, dict[str, list[float]]]:
    """Threaded C loads measured by the samplers of `only` over `count` windows: per sampler, per load
    ("load 0", ...), the share errors in points of the machine per window, and ("totals 0", ...) the
    load's own and attributed CPU ns over the run."""
    out: dict[str, dict[str, list[float]]] = {name: {} for name in only}
    with tempfile.TemporaryDirectory() as tmp, ThreadedLoads(binary, loads) as procs:
        tree, samplers = two_samplers(tmp, None if whole_proc else procs.pids)
        for name in set(samplers) - set(only):
            samplers.pop(name).close()
        time.sleep(0.2)  # the threads settle into their cycle
        for frames, owns, _, _ in windows(tree, samplers, procs.cpu_ns, window_s, count):
            for name, frame in frames.items():
                if frame is None:
                    continue
                machine_ns = frame.n_cpus * frame.window_s * 1e9  # the window the shares are of
                shares = {c.info.pid: c.cpu_share for c in frame.consumers}
                for i, (pid, own) in enumerate(zip(procs.pids, owns, strict=True)):
                    attributed = shares.get(pid, 0.0) * machine_ns
                    cell = out[name].setdefault(f"load {i}", [])
                    cell.append(abs(attributed - own) / machine_ns * 100)
                    totals = out[name].setdefault(f"totals {i}", [0.0, 0.0])
                    totals[0] += own
                    totals[1] += attributed
        for sampler in samplers.values():
            sampler.close()
    return out
