"""The agent as users run it, measured from outside through /proc: steady-state overhead and a churn soak.

The agent is `python -m wattprobe -s powercap_rapl --powercap-root TREE EXPORTER` on a synthetic
powercap tree advanced in real time. With the Prometheus exporter, the benchmark scrapes
/metrics every second (`--min-interval 1`: a fresh measurement per scrape); where that exporter
is not in the tree, the json exporter ticks every second (`-s 1`) into /dev/null instead, and the
result says so. CPU is the agent's utime+stime (all threads) over the measured span, after a
warm-up; memory is its VmRSS (and VmHWM, the peak) from /proc/<pid>/status.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.common import (
    Budget,
    Result,
    count_processes,
    cpu_seconds,
    has_prometheus,
    memory,
    open_fds,
    scratch_dir,
)
from benchmarks.swarm import Swarm
from tests.powercap_tree import PowercapTree
from tests.support import agents

MB = 1e6


class RunningAgent:
    """The agent on its exporter, one tick per second; `poke()` scrapes when it serves Prometheus."""

    def __init__(self, powercap_root: str, log_path: Path) -> None:
        self.prometheus = has_prometheus()
        exporter = (
            ["prometheus", "-a", "127.0.0.1", "-p", "0", "--min-interval", "1"]
            if self.prometheus
            else ["json", "-s", "1", "-f", os.devnull]
        )
        self.exporter = (
            "prometheus, scraped every 1 s" if self.prometheus else "json -s 1 (no prometheus exporter)"
        )
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in stop())
        self.process = agents.start(
            agents.on_tree(powercap_root, *exporter),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self.pid = self.process.pid
        try:
            self.url = agents.wait_for_url(self.process, log_path) if self.prometheus else None
        except BaseException:
            self.stop()
            raise
        self.scrapes = 0
        self.scrape_bytes = 0

    def poke(self) -> None:
        """What a Prometheus server does every second (nothing for the json exporter)."""
        if self.url is None:
            return
        with urllib.request.urlopen(self.url, timeout=30) as response:
            self.scrape_bytes += len(response.read())
        self.scrapes += 1

    def stop(self) -> str:
        agents.stop(self.process, timeout_s=15)
        self._log.close()
        return self.log_path.read_text()


def _every_second(agent: RunningAgent, seconds: float, sample) -> None:
    """Poke the agent once a second for `seconds`, calling `sample(elapsed)` after each poke."""
    start = time.monotonic()
    due = start
    while (now := time.monotonic()) - start < seconds:
        due += 1.0
        agent.poke()
        sample(now - start)
        time.sleep(max(0.0, due - time.monotonic()))


def steady_state(extra: int, seconds: float, warmup_s: float = 5.0) -> dict[str, float]:
    """CPU % of one core and memory of the agent ticking once a second with `extra` idle processes."""
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp, Swarm(extra):
        tree = PowercapTree(Path(tmp) / "powercap")
        with tree.running(period_s=0.05):
            agent = RunningAgent(str(tree.root), Path(tmp) / "agent.log")
            try:
                _every_second(agent, warmup_s, lambda _: None)
                rss: list[int] = []
                cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
                _every_second(agent, seconds, lambda _: rss.append(memory(agent.pid)[0]))
                cpu1, t1 = cpu_seconds(agent.pid), time.monotonic()
                peak = memory(agent.pid)[1]
                processes = count_processes()
                fds = open_fds(agent.pid)
            finally:
                log = agent.stop()
    if agent.process.returncode not in (0, None):
        raise RuntimeError(f"the agent failed: {log[-2000:]}")
    return {
        "processes": processes,
        "cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0),
        "rss_mean": sum(rss) / len(rss),
        "rss_max": max(rss),
        "hwm": peak,
        "fds": fds,
        "seconds": t1 - t0,
        "scrape_bytes": agent.scrape_bytes / max(agent.scrapes, 1),
        "exporter": agent.exporter,
    }


def bench_steady(
    seconds: float = 60.0,
    big_seconds: float = 20.0,
    sizes: tuple[int, int] = (1000, 5000),
    warmup_s: float = 5.0,
) -> Result:
    small, big = sizes
    result = Result(
        "steady",
        "Steady-state overhead of the agent",
        __doc__.split("\n", 2)[2]
        + f"\nWith {small:,} extra idle processes for {seconds:g} s (CPU budget), and with {big:,} for "
        f"{big_seconds:g} s (memory budget), after {warmup_s:g} s of warm-up.",
    )
    rows = [
        [
            "extra processes",
            "processes on the machine",
            "agent CPU (% of one core)",
            "RSS mean",
            "RSS max",
            "peak RSS (VmHWM)",
            "open fds",
            "span",
        ]
    ]
    runs = {}
    for n, span in ((small, seconds), (big, big_seconds)):
        m = steady_state(n, span, warmup_s)
        runs[n] = m
        rows.append(
            [
                f"{n:,}",
                f"{m['processes']:,}",
                f"{m['cpu_percent']:.2f} %",
                f"{m['rss_mean'] / MB:.1f} MB",
                f"{m['rss_max'] / MB:.1f} MB",
                f"{m['hwm'] / MB:.1f} MB",
                f"{m['fds']:,}",
                f"{m['seconds']:.0f} s",
            ]
        )
        result.numbers |= {f"{k}_{n}": v for k, v in m.items() if isinstance(v, (int, float))}
    result.tables.append(rows)
    result.notes.append(f"Exporter: {runs[small]['exporter']}.")
    if runs[small]["scrape_bytes"]:
        result.notes.append(f"Each scrape returned {runs[small]['scrape_bytes'] / 1e3:.1f} kB on average.")
    result.budgets += [
        Budget(f"agent CPU, 1 s ticks, {small:,} processes", runs[small]["cpu_percent"], 1.0, "% of a core"),
        Budget(f"agent RSS, {big:,} processes", runs[big]["hwm"] / MB, 60, "MB"),
    ]
    return result


def soak(
    extra: int, churn_per_s: float, seconds: float, sample_every_s: float, churn_alive: int = 100
) -> dict:
    """Processes born and SIGKILLed at `churn_per_s` while the agent ticks every second."""
    samples: list[tuple[float, int, int, int]] = []  # elapsed, RSS, agent fds, processes alive
    with (
        tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp,
        Swarm(extra, churn_per_s=churn_per_s, churn_alive=churn_alive) as swarm,
    ):
        tree = PowercapTree(Path(tmp) / "powercap")
        with tree.running(period_s=0.05):
            agent = RunningAgent(str(tree.root), Path(tmp) / "agent.log")
            next_sample = [0.0]
            start = time.monotonic()

            def sample(elapsed: float, force: bool = False) -> None:
                if elapsed >= next_sample[0] or force:
                    samples.append((elapsed, memory(agent.pid)[0], open_fds(agent.pid), count_processes()))
                    next_sample[0] += sample_every_s

            try:
                _every_second(agent, seconds, sample)
                sample(time.monotonic() - start, force=True)
                cpu = cpu_seconds(agent.pid)
                peak = memory(agent.pid)[1]
            finally:
                log = agent.stop()
    if agent.process.returncode not in (0, None):
        raise RuntimeError(f"the agent failed: {log[-2000:]}")
    return {
        "samples": samples,
        "born": swarm.born,
        "killed": swarm.killed,
        "cpu": cpu,
        "hwm": peak,
        "exporter": agent.exporter,
    }


def bench_soak(
    seconds: float = 600.0, extra: int = 1000, churn_per_s: float = 100.0, churn_alive: int = 100
) -> Result:
    sample_every = max(seconds / 20, 1.0)
    m = soak(extra, churn_per_s, seconds, sample_every, churn_alive)
    samples = m["samples"]
    # "Start" is after the first tenth of the run: imports done, every cache filled once.
    start = next(s for s in samples if s[0] >= seconds / 10)
    end = samples[-1]
    growth = (end[1] - start[1]) / start[1]
    fds = [s[2] for s in samples]
    alive = [s[3] for s in samples]
    result = Result(
        "soak",
        "Churn soak",
        __doc__.split("\n", 2)[2]
        + f"\n{extra:,} idle processes, plus processes forked and SIGKILLed at {churn_per_s:g}/s ({churn_alive} "
        f"alive at a time) for {seconds:g} s while the agent ticks every second. RSS growth is measured "
        "from the first sample after a tenth of the run (imports done, caches filled) to the end.",
    )
    rows = [["elapsed", "agent RSS", "agent open fds", "processes on the machine"]]
    rows += [[f"{s[0]:.0f} s", f"{s[1] / MB:.1f} MB", f"{s[2]:,}", f"{s[3]:,}"] for s in samples]
    result.tables.append(rows)
    result.notes += [
        f"Exporter: {m['exporter']}.",
        f"Processes born: {m['born']:,}; killed: {m['killed']:,}. Agent CPU over the run: {m['cpu']:.1f} s "
        f"({100 * m['cpu'] / seconds:.2f} % of a core). Peak RSS (VmHWM): {m['hwm'] / MB:.1f} MB.",
        f"The agent's open fds stayed between {min(fds):,} and {max(fds):,} while {min(alive):,} to "
        f"{max(alive):,} processes were alive: "
        + (
            "at most two per live process, so the per-process caches (descriptors, static facts) follow "
            "the live processes and are bounded by them."
            if max(fds) <= 2 * max(alive) + 64
            else "**more than two per live process: a leak**."
        ),
    ]
    result.numbers = {
        "rss_start": start[1],
        "rss_end": end[1],
        "growth": growth,
        "fds_min": min(fds),
        "fds_max": max(fds),
        "born": m["born"],
        "killed": m["killed"],
    }
    result.budgets.append(Budget(f"RSS growth over {seconds:g} s of churn", growth * 100, 5.0, "%"))
    return result
