"""The agent as users run it, measured from outside through /proc: CPU per scrape, memory, a churn soak.

The agent is `python -m wattprobe -s powercap_rapl --powercap-root TREE prometheus` with its
defaults (top 20 per-process series, `--min-interval 0.25`, the exact attribution of exited
children, threads and cgroups that is always on), on a synthetic powercap tree advanced in real
time, scraped once a second as a Prometheus server would: every scrape is a fresh measurement (a
scrape whose body repeats the last one would be a shared Frame; the results count them). CPU is the
agent's utime+stime (all threads) over the measured span, after a warm-up; memory is its VmRSS (and
VmHWM, the peak) from /proc/<pid>/status. Where the tree has no Prometheus exporter, the json
exporter ticks every second (`-s 1`) into /dev/null instead, and the result says so.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import (
    Budget,
    Result,
    count_processes,
    cpu_seconds,
    has_prometheus,
    median,
    memory,
    ms,
    open_fds,
    scratch_dir,
)
from benchmarks.floor import cpu_time, stat_floor
from benchmarks.swarm import Swarm, own_cgroup
from tests.support import agents
from tests.support.powercap_tree import PowercapTree

MB = 1e6


class RunningAgent:
    """The agent on its exporter; `poke()` scrapes when it serves Prometheus (else it ticks every second)."""

    def __init__(self, powercap_root: str, log_path: Path) -> None:
        self.prometheus = has_prometheus()
        exporter = (
            ["prometheus", "-a", "127.0.0.1", "-p", "0"]
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
        self.scrapes = self.fresh = self.scrape_bytes = 0
        self._last = b""

    def poke(self) -> None:
        """What a Prometheus server does every second (the json exporter measures every second itself)."""
        if self.url is None:
            self.scrapes += 1
            self.fresh += 1
            return
        with urllib.request.urlopen(self.url, timeout=30) as response:
            body = response.read()
        self.scrape_bytes += len(body)
        self.scrapes += 1
        self.fresh += body != self._last  # a shared Frame gives the same body again
        self._last = body

    def stop(self) -> str:
        agents.stop(self.process, timeout_s=15)
        self._log.close()
        return self.log_path.read_text()


def _every_second(agent: RunningAgent, seconds: float, sample: Callable[[float], None]) -> None:
    """Poke the agent once a second for `seconds`, calling `sample(elapsed)` after each poke."""
    start = time.monotonic()
    due = start
    while (now := time.monotonic()) - start < seconds:
        due += 1.0
        agent.poke()
        sample(now - start)
        time.sleep(max(0.0, due - time.monotonic()))


def steady_state(
    extra: int, seconds: float, warmup_s: float = 5.0, cgroup: Path | None = None
) -> dict[str, float | str]:
    """CPU per scrape, % of one core and memory of the agent scraped once a second with `extra` idle
    processes (in `cgroup` when given); the stat floor is measured between the scrapes."""
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp, Swarm(extra, cgroup=cgroup):
        tree = PowercapTree(Path(tmp) / "powercap")
        with tree.running(period_s=0.05):
            agent = RunningAgent(str(tree.root), Path(tmp) / "agent.log")
            try:
                _every_second(agent, warmup_s, lambda _: None)
                rss: list[int] = []
                floors: list[float] = []

                def sample(_: float) -> None:
                    rss.append(memory(agent.pid)[0])
                    floors.append(cpu_time(stat_floor))  # the agent is idle until the next scrape

                scrapes0, fresh0 = agent.scrapes, agent.fresh
                cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
                _every_second(agent, seconds, sample)
                cpu1, t1 = cpu_seconds(agent.pid), time.monotonic()
                peak = memory(agent.pid)[1]
                processes = count_processes()
                fds = open_fds(agent.pid)
            finally:
                log = agent.stop()
    if agent.process.returncode not in (0, None):
        raise RuntimeError(f"the agent failed: {log[-2000:]}")
    scrapes, fresh = agent.scrapes - scrapes0, agent.fresh - fresh0
    return {
        "processes": processes,
        "cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0),
        "scrapes": scrapes,
        "fresh": fresh,
        "cpu_per_scrape": (cpu1 - cpu0) / max(fresh, 1),
        "stat_floor": median(floors),
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
    big_seconds: float = 30.0,
    sizes: tuple[int, int] = (1000, 5000),
    warmup_s: float = 5.0,
    own_cgroup_size: int | None = 5000,
) -> Result:
    small, big = sizes
    result = Result(
        "steady",
        "Steady-state overhead of the agent",
        __doc__.split("\n", 2)[2]
        + f"\nWith {small:,} extra idle processes for {seconds:g} s (the CPU budget of a core), and with "
        f"{big:,} for {big_seconds:g} s (the memory budget), after {warmup_s:g} s of warm-up; the extra "
        "processes share the agent's cgroup, whose counter moves at every scrape, unless the row says they "
        "have a cgroup of their own, as a service's or a container's processes do. The stat floor, "
        "measured by the benchmark between the scrapes (CPU time, this thread), is what listing /proc "
        "and opening, reading and closing every process's `stat` costs: what an agent that reads each "
        "process's CPU time at every scrape, keeping no descriptors, cannot go below.",
    )
    rows = [
        [
            "extra processes",
            "processes on the machine",
            "scrapes (fresh)",
            "agent CPU per scrape",
            "stat floor",
            "per scrape / floor",
            "agent CPU (% of one core)",
            "RSS mean",
            "RSS max",
            "peak RSS (VmHWM)",
            "open fds",
            "span",
        ]
    ]
    runs: list[tuple[str, str, int, float, Path | None]] = [
        (f"{small:,} processes", f"{small}", small, seconds, None),
        (f"{big:,} processes", f"{big}", big, big_seconds, None),
    ]
    with own_cgroup() as cgroup:
        if own_cgroup_size and cgroup is not None:
            label = f"{own_cgroup_size:,} processes in a cgroup of their own"
            runs.append((label, f"{own_cgroup_size}_cgroup", own_cgroup_size, big_seconds, cgroup))
        elif own_cgroup_size:
            result.notes.append(
                "No cgroup could be made here (not root?): processes in a cgroup of their own not measured."
            )
        measured = {}
        for label, key, n, span, where in runs:
            m = steady_state(n, span, warmup_s, where)
            measured[key] = m
            rows.append(
                [
                    label,
                    f"{m['processes']:,}",
                    f"{m['scrapes']} ({m['fresh']})",
                    ms(float(m["cpu_per_scrape"])),
                    ms(float(m["stat_floor"])),
                    f"{float(m['cpu_per_scrape']) / float(m['stat_floor']):.2f}",
                    f"{m['cpu_percent']:.2f} %",
                    f"{float(m['rss_mean']) / MB:.1f} MB",
                    f"{float(m['rss_max']) / MB:.1f} MB",
                    f"{float(m['hwm']) / MB:.1f} MB",
                    f"{m['fds']:,}",
                    f"{m['seconds']:.0f} s",
                ]
            )
            result.numbers |= {f"{k}_{key}": v for k, v in m.items() if isinstance(v, (int, float))}
    result.tables.append(rows)
    first = measured[f"{small}"]
    result.notes.append(f"Exporter: {first['exporter']}.")
    if first["scrape_bytes"]:
        result.notes.append(f"Each scrape returned {float(first['scrape_bytes']) / 1e3:.1f} kB on average.")
    for label, key, *_rest in runs:
        m = measured[key]
        result.budgets.append(
            Budget(
                f"agent CPU per fresh scrape / stat floor, {label}",
                float(m["cpu_per_scrape"]) / float(m["stat_floor"]),
                1.5,
                "×",
            )
        )
    result.budgets += [
        Budget(
            f"agent CPU, 1 s scrapes, {small:,} processes", float(first["cpu_percent"]), 1.0, "% of a core"
        ),
        Budget(f"agent RSS, {big:,} processes", float(measured[f"{big}"]["hwm"]) / MB, 60, "MB"),
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
            "at most three per live process (its stat and schedstat, and its io once it was a consumer), "
            "so the per-process caches (descriptors, static facts) follow the live processes and are "
            "bounded by them."
            if max(fds) <= 3 * max(alive) + 64
            else "**more than three per live process: a leak**."
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
