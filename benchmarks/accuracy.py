"""Attribution accuracy: short windows, multi-threaded processes, and processes that live less than a step.

**Single-threaded, CPU clocks against stat clock ticks.** Busy children burn CPU at known duty
cycles (busy part of every 20 ms) and keep their own CPU time (`time.process_time_ns`) in shared
memory. Two samplers tick back to back every window, one reading each process's CPU clock in ns
(wattprobe's default) and one forced to `stat` utime+stime ticks (what Scaphandre and
psutil-based agents read). For each
child and window, the error is the child's attributed CPU time against what it measured itself
over the same window, relative to the latter; it is also the relative error of its share of host
power, since both use the same machine time. The children's own clocks are read just before and
just after each pair of ticks (the midpoint is the truth; the spread bounds its uncertainty). The
samplers read a procfs root holding only the children and `/proc/stat` (symlinks to /proc), so
the scan takes microseconds and does not blur the windows.

**Multi-threaded.** C processes whose threads burn CPU at a duty cycle (busy part of every 20 ms)
and write their own CPU time (`CLOCK_THREAD_CPUTIME_ID`) into shared memory, measured the same way,
in the same two samplers: a 4-thread process next to a single-threaded one, the same with every
thread busy all the time on a machine too small for them (saturated; these samplers read all of
/proc, so that the processes' sum meets the machine's time), and a process whose threads each live
30 ms (their time stays in the process's clock after they end; `stat` counts it in ticks). The error is
the process's share of all CPUs' time against its true share, in points (1 point = 1 % of the
machine); the total is its attributed CPU time over the run divided by the CPU time it measured.

**Short-lived processes.** The agent runs as users run it, `wattprobe -s powercap_rapl
--powercap-root TREE json -s 2 -m 100000`, on a synthetic 40 W tree advanced in real time, while
a workload runs: a bash loop starting `python3 -c` with about 50 ms of work each, and `make -j2` of
tiny C files (`cc -O1 -c`, cleaned and built again each round), each started by a shell that stays
1.5 steps after it ends (as the shell or CI runner that starts a build does: the process that
reaps it gets what it used since it was last seen). The truth is the workload's own CPU time, all
descendants included, from RUSAGE_CHILDREN; the attributed time is each document's share of host
power for the workload's processes (found by a marker in their command lines) × all CPUs × the
step, summed over the documents.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.common import Budget, Result, median, percentile
from tests.support import agents, attributed
from tests.support.attributed import SAMPLERS, thread_errors, two_samplers
from tests.support.powercap_tree import PowercapTree
from tests.support.waiting import holds_within, wait_for
from tests.support.workloads import (
    BusyChildren,
    build_threaded,
    compiler,
    make_project,
    make_rounds,
    run_counted,
    shell_loop,
    started_by,
)

DUTIES = (0.05, 0.2, 0.5, 0.9)
# (key, label, loads, whole /proc): each load is (threads, duty, period ms, thread life ms or 0 for
# threads that live on). Saturated, every process of the machine is read, so that the processes' sum
# meets the machine's time (as in real use) and the scaling that keeps it within shows.
THREAD_CASES = (
    ("mixed", "4 threads next to 1", [(4, 0.25, 20, 0), (1, 0.5, 20, 0)], False),
    ("saturated", "the same, all busy: saturated", [(4, 1.0, 20, 0), (1, 1.0, 20, 0)], True),
    ("churn", "threads living 30 ms", [(2, 0.5, 20, 30), (1, 0.5, 20, 0)], False),
)
FORTY_WATTS = {(0, "package"): 30.0, (0, "core"): 20.0, (0, "dram"): 5.0, (None, "psys"): 40.0}


def bench(
    window_s: float = 0.1,
    windows: int = 300,
    duties: tuple[float, ...] = DUTIES,
    *,
    thread_windows: int = 300,
    loop_s: float = 14.0,
    make_files: int = 200,
    make_times: int = 5,
    json_step_s: float = 2.0,
) -> Result:
    result = Result(
        "accuracy",
        f"Attribution accuracy at {window_s * 1e3:.0f} ms windows, threads, short-lived processes",
        __doc__.split("\n", 2)[2]
        + f"\n{windows} windows of {window_s * 1e3:.0f} ms, children at duty cycles "
        + ", ".join(f"{d:.0%}" for d in duties)
        + f"; clock ticks of {1000 // os.sysconf('SC_CLK_TCK')} ms. Threads: {thread_windows} windows"
        f" of {window_s * 1e3:.0f} ms per case. Short-lived: a {loop_s:.0f} s loop; make of {make_files}"
        f" files, {make_times} times.",
    )
    _duty_cycles(result, window_s, windows, duties)
    if compiler() is None:
        result.notes.append("No C compiler: the multi-threaded and make cases were not measured.")
    else:
        _threads(result, window_s, thread_windows)
    _short_lived(result, loop_s, make_files, make_times, json_step_s)
    return result


# -- single-threaded duty cycles -----------------------------------------------------------------
def _duty_cycles(result: Result, window_s: float, windows: int, duties: tuple[float, ...]) -> None:
    with tempfile.TemporaryDirectory() as tmp, BusyChildren(list(duties)) as children:
        tree, samplers = two_samplers(tmp, children.pids)
        errors: dict[str, list[float]] = {name: [] for name in samplers}
        per_duty: dict[tuple[str, float], list[float]] = {}
        achieved: dict[float, list[float]] = {duty: [] for duty in duties}
        spreads: list[float] = []
        implausible = 0
        time.sleep(0.2)  # let the children settle into their cycle
        for frames, owns, elapsed_ns, spread in attributed.windows(
            tree, samplers, children.cpu_ns, window_s, windows
        ):
            spreads += spread
            for name, frame in frames.items():
                if frame is None:
                    continue
                by_pid = {c.info.pid: c.cpu_ns for c in frame.consumers}
                for pid, duty, own in zip(children.pids, duties, owns, strict=True):
                    if own <= 0:
                        continue
                    if own > 1.05 * elapsed_ns:  # more CPU than time from one thread: a bad reference
                        implausible += 1
                        continue
                    if name == "CPU clock":
                        achieved[duty].append(own / (window_s * 1e9))
                    error = abs(by_pid.get(pid, 0) - own) / own
                    errors[name].append(error)
                    per_duty.setdefault((name, duty), []).append(error)
        for sampler in samplers.values():
            sampler.close()

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
    result.numbers["truth_uncertainty_ns"] = median(spreads)
    result.numbers["implausible_references"] = implausible
    result.notes.append(
        f"The children's own clocks moved by {median(spreads) / 1e3:.0f} µs (median) during a pair of ticks: "
        f"the uncertainty of the reference. Windows left out because a child's own clock moved more than the "
        f"wall clock: {implausible}."
    )


# -- multi-threaded ------------------------------------------------------------------------------
def _threads(result: Result, window_s: float, windows: int) -> None:
    rows = [
        [
            "case",
            "process",
            "CPU time from",
            "error per window: median",
            "p95",
            "max",
            "attributed / own CPU time",
        ]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        binary = build_threaded(Path(tmp))
        for case, label, loads, whole_proc in THREAD_CASES:
            measured = thread_errors(window_s, windows, binary, loads, whole_proc)
            for i, (threads, _, _, life_ms) in enumerate(loads):
                what = f"{threads} thread{'s' if threads > 1 else ''}" + (
                    f" of {life_ms} ms" if life_ms else ""
                )
                for name in SAMPLERS:
                    errors = measured[name][f"load {i}"]
                    own, attributed = measured[name][f"totals {i}"]
                    ratio = attributed / own if own else float("nan")
                    rows.append(
                        [
                            label,
                            what,
                            name,
                            f"{median(errors):.2f}",
                            f"{percentile(errors, 95):.2f}",
                            f"{max(errors):.2f}",
                            f"{ratio:.4f}",
                        ]
                    )
                    key = f"threads_{case}_{i}_{name.replace(' ', '_')}"
                    result.numbers |= {f"{key}_p95": percentile(errors, 95), f"{key}_ratio": ratio}
    result.tables.append(rows)
    mixed = [result.numbers[f"threads_mixed_{i}_CPU_clock_p95"] for i in (0, 1)]
    bias = [
        abs(result.numbers[f"threads_{case}_{i}_CPU_clock_ratio"] - 1)
        for case in ("mixed", "saturated")
        for i in (0, 1)
    ]
    result.budgets += [
        Budget("4-thread + 1-thread loads: share error per window, p95", max(mixed), 2.0, "points"),
        Budget("threaded loads, busy or saturated: total bias", max(bias) * 100, 0.5, "%"),
    ]


# -- short-lived processes -----------------------------------------------------------------------
def json_attribution(
    powercap_root: Path, out: Path, command: list[str], marker: str, step_s: float = 2.0
) -> dict[str, float]:
    """Run `command` under an agent writing JSON; CPU ns it used, and what the documents gave its processes."""
    agent = agents.start(
        agents.on_tree(powercap_root, "json", "-s", str(step_s), "-m", "100000", "-f", str(out)),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: "{" in out.read_text(), 30, "the agent's first document", alive=agent)
        own_ns = run_counted(started_by(marker, command, 1.5 * step_s))
        written = out.read_text().count('"host"')
        holds_within(lambda: out.read_text().count('"host"') >= written + 1, step_s * 3)
    finally:
        stderr = agents.stop(agent, timeout_s=30)
    documents = json.loads(out.read_text())
    n_cpus = os.cpu_count() or 1
    attributed = exited = tail = residual = 0.0
    for prev, doc in itertools.pairwise(documents):
        host = doc["host"]["consumption"]
        if host <= 0:
            continue
        machine_ns = n_cpus * (doc["host"]["timestamp"] - prev["host"]["timestamp"]) * 1e9
        for consumer in doc["consumers"]:
            if marker in consumer["cmdline"]:
                attributed += consumer["consumption"] / host * machine_ns
                exited += consumer.get("exited_consumption", 0.0) / host * machine_ns
        listed = sum(c["consumption"] for c in doc["consumers"])
        residual = max(residual, abs(host - listed - doc["host"]["unattributed_consumption"]) / host)
        tail = max(tail, sum(c["consumption"] for c in doc["consumers"][20:]) / host)
    return {
        "own_ns": own_ns,
        "attributed_ns": attributed,
        "exited_ns": exited,
        "residual": residual,
        "tail_20": tail,
        "agent_errors": len(stderr.strip()),
    }


def _short_lived(result: Result, loop_s: float, make_files: int, make_times: int, step_s: float) -> None:
    rows = [["workload", "its CPU time", "attributed to its processes", "of which from exited descendants"]]
    with tempfile.TemporaryDirectory() as tmp:
        tree = PowercapTree(Path(tmp) / "powercap", FORTY_WATTS)
        marker = f"wpmark-{uuid.uuid4().hex[:8]}"
        workloads = [
            (
                "loop",
                f"bash loop of `python3 -c` (~50 ms each), {loop_s:.0f} s",
                shell_loop(loop_s, 50, marker),
            )
        ]
        if compiler() is not None and make_files:
            project = Path(tmp) / marker
            make_project(project, make_files)
            workloads.append(
                (
                    "make",
                    f"`make -j2` of {make_files} tiny C files, {make_times} times",
                    make_rounds(project, make_times),
                )
            )
        with tree.running(period_s=0.01):
            for key, label, command in workloads:
                m = json_attribution(tree.root, Path(tmp) / f"{key}.json", command, marker, step_s)
                share = m["attributed_ns"] / m["own_ns"]
                rows.append(
                    [
                        label,
                        f"{m['own_ns'] / 1e9:.1f} CPU-s",
                        f"{share:.1%}",
                        f"{m['exited_ns'] / m['attributed_ns']:.1%}" if m["attributed_ns"] else "n/a",
                    ]
                )
                result.numbers |= {f"short_{key}_share": share, f"short_{key}_cpu_s": m["own_ns"] / 1e9}
                result.numbers[f"short_{key}_residual"] = m["residual"]
                result.numbers[f"short_{key}_tail_20"] = m["tail_20"]
    result.tables.append(rows)
    shares = [result.numbers[f"short_{key}_share"] for key, *_ in workloads]
    result.budgets.append(
        Budget("short-lived workloads: least share attributed", min(shares) * 100, 90, "%", at_least=True)
    )
    result.budgets.append(Budget("short-lived workloads: most share attributed", max(shares) * 100, 110, "%"))
    result.notes.append(
        "Conservation in those documents (listed consumers + unattributed = host, every consumer listed): "
        f"within {max(result.numbers[f'short_{k}_residual'] for k, *_ in workloads):.1e} of host power; "
        f"consumers beyond the top 20 held up to {max(result.numbers[f'short_{k}_tail_20'] for k, *_ in workloads):.1%}"
        " of it (what `-m 20` leaves out of the list)."
    )
