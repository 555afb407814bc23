"""Attribution accuracy at short windows: schedstat against stat clock ticks.

Busy children burn CPU at known duty cycles (busy part of every 20 ms) and keep their own CPU time
(`time.process_time_ns`) in shared memory. Two samplers tick back to back every window, one with
schedstat (wattprobe's default) and one forced to `stat` utime+stime ticks (what Scaphandre and
psutil-based agents read). For each child and window, the error is the child's attributed CPU time
against what it measured itself over the same window, relative to the latter; it is also the
relative error of its share of host power, since both use the same machine time. The children's
own clocks are read just before and just after each pair of ticks (the midpoint is the truth; the
spread bounds its uncertainty). The samplers read a procfs root holding only the children and
`/proc/stat` (symlinks to /proc), so the scan takes microseconds and does not blur the windows.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import Result, median, percentile
from benchmarks.swarm import BusyChildren
from tests.powercap_tree import PowercapTree
from wattprobe.core.sampler import Sampler
from wattprobe.sources.powercap import PowercapSensor
from wattprobe.sources.procfs import ProcfsReader

DUTIES = (0.05, 0.2, 0.5, 0.9)


def bench(window_s: float = 0.1, windows: int = 300, duties: tuple[float, ...] = DUTIES) -> Result:
    with tempfile.TemporaryDirectory() as tmp, BusyChildren(list(duties)) as children:
        proc = Path(tmp) / "proc"
        proc.mkdir()
        (proc / "stat").symlink_to("/proc/stat")
        for pid in children.pids:
            (proc / str(pid)).symlink_to(f"/proc/{pid}")
        tree = PowercapTree(Path(tmp) / "powercap")
        samplers = {
            "schedstat": Sampler(PowercapSensor(str(tree.root)), ProcfsReader(str(proc))),
            "stat ticks": Sampler(PowercapSensor(str(tree.root)), ProcfsReader(str(proc), schedstat=False)),
        }
        errors: dict[str, list[float]] = {name: [] for name in samplers}
        per_duty: dict[tuple[str, float], list[float]] = {}
        achieved: dict[float, list[float]] = {duty: [] for duty in duties}
        spread = []
        time.sleep(0.2)  # let the children settle into their cycle
        before = children.cpu_ns()
        for sampler in samplers.values():
            sampler.tick()
        after = children.cpu_ns()
        truth_prev = [(a + b) / 2 for a, b in zip(before, after, strict=True)]
        implausible = 0
        due = t_prev = time.monotonic()
        for _ in range(windows):
            due += window_s
            time.sleep(max(0.0, due - time.monotonic()))
            tree.advance(window_s)
            before = children.cpu_ns()
            frames = {name: sampler.tick() for name, sampler in samplers.items()}
            after = children.cpu_ns()
            t_now = time.monotonic()
            elapsed_ns, t_prev = (t_now - t_prev) * 1e9, t_now
            truth = [(a + b) / 2 for a, b in zip(before, after, strict=True)]
            spread += [(b - a) / 2 for a, b in zip(before, after, strict=True)]
            for name, frame in frames.items():
                if frame is None:
                    continue
                by_pid = {c.info.pid: c.cpu_ns for c in frame.consumers}
                for pid, duty, now_ns, prev_ns in zip(children.pids, duties, truth, truth_prev, strict=True):
                    own = now_ns - prev_ns
                    if own <= 0:
                        continue
                    if own > 1.05 * elapsed_ns:  # more CPU than time from one thread: a bad reference
                        implausible += 1
                        continue
                    if name == "schedstat":
                        achieved[duty].append(own / (window_s * 1e9))
                    error = abs(by_pid.get(pid, 0) - own) / own
                    errors[name].append(error)
                    per_duty.setdefault((name, duty), []).append(error)
            truth_prev = truth
        for sampler in samplers.values():
            sampler.close()

    result = Result(
        "accuracy",
        f"Attribution accuracy at {window_s * 1e3:.0f} ms windows",
        __doc__.split("\n", 2)[2]
        + f"\n{windows} windows of {window_s * 1e3:.0f} ms, children at duty cycles "
        + ", ".join(f"{d:.0%}" for d in duties)
        + f"; clock ticks of {1000 // os.sysconf('SC_CLK_TCK')} ms.",
    )
    rows = [["CPU time from", "median error", "p95 error", "max error", "samples"]]
    for name, values in errors.items():
        rows.append(
            [
                name,
                f"{median(values):.2%}",
                f"{percentile(values, 95):.2%}",
                f"{max(values):.1%}",
                str(len(values)),
            ]
        )
        key = name.replace(" ", "_")
        result.numbers |= {f"{key}_median": median(values), f"{key}_p95": percentile(values, 95)}
    result.tables.append(rows)
    duty_rows = [["duty cycle", "CPU it got (mean)", *(f"{name}: median / p95" for name in errors)]]
    for duty in duties:
        got = achieved[duty]
        cells = [f"{duty:.0%}", f"{sum(got) / len(got):.0%}" if got else "n/a"]
        for name in errors:
            values = per_duty.get((name, duty), [])
            cells.append(f"{median(values):.1%} / {percentile(values, 95):.1%}" if values else "n/a")
        duty_rows.append(cells)
    result.tables.append(duty_rows)
    result.numbers["truth_uncertainty_ns"] = median(spread)
    result.numbers["implausible_references"] = implausible
    result.notes.append(
        f"The children's own clocks moved by {median(spread) / 1e3:.0f} µs (median) during a pair of ticks: "
        f"the uncertainty of the reference. Windows left out because a child's own clock moved more than the "
        f"wall clock: {implausible}."
    )
    return result
