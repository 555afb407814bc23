"""An idle host's cost: CPU per scrape with 1,000 idle processes, next to node_exporter's RAPL collector.

An energy agent runs on every machine of a fleet, idle ones included, so what it costs on an idle
host is what it costs everywhere. Four layouts of the same 1,000 idle processes, each measured in
rounds, every figure of a round taken in the same seconds:

- **in 50 cgroups of 20** (a host's services, each a top-level cgroup): wattprobe `prometheus` with
  its defaults (host power from a synthetic powercap tree and every process's share of it, a fresh
  measurement at every scrape) next to node_exporter with only its RAPL collector
  (`--collector.disable-defaults --collector.rapl`, `--path.sysfs` at a directory whose
  `class/powercap` is the same tree: the same counters, no processes), both running at once and
  scraped in turn once a second;
- **in 50 services of one slice** (as systemd lays out a host's services, in system.slice): the same
  cgroups below one top-level cgroup, the agent and node_exporter each in a service of that slice
  too, as their packages' units run them; measured as above;
- **in 50 cgroups of 20, one starting 2 processes a second** (as a timer or a probe does: something
  forks every second on most hosts): the first layout, with a shell in one of the services that runs
  `/bin/true` then `sleep 1`, over and over. Measured as above, without a budget: where the kernel
  tells the agent of each fork, it finds the new processes from those events; where it does not, it
  lists /proc after each fork;
- **in one cgroup with the agent** (a child cgroup of theirs holds the agent, so their counter moves
  at every scrape and no cgroup is quiet): wattprobe against the stat floor, one pass that lists
  /proc and opens, reads and closes each process's `stat` (measured by the benchmark between the
  scrapes, CPU time of its thread), and node_exporter's RAPL collector again.

Each exporter sits in a cgroup of its own, whose CPU counter gives its CPU time to the ns (threads
that ended included); scrapes go over one kept-alive connection per exporter, as Prometheus keeps
its connections, each exporter first in turn. The ratio of a round is its CPU per scrape over the
reference's in the same round; the tables give the median over the rounds (and the lowest and
highest ratio).

Where a scrape's CPU goes, in the 50 cgroups, after the rounds: a second agent, alone, asked once a
second for its index page (the HTTP exchange alone), then for /metrics with `--min-interval 3600`
(one Frame kept for every scrape: the HTTP exchange and the exposition), against a fresh scrape from
the rounds (the measurement too).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import Budget, Result, count_processes, median, ms, scratch_dir
from benchmarks.floor import cpu_time, stat_floor
from benchmarks.peers import NODE_EXPORTER, setup
from benchmarks.swarm import Swarm
from tests.support import agents
from tests.support.cgroups import new_cgroup, usage_ns
from tests.support.net import free_port
from tests.support.powercap_tree import PowercapTree
from tests.support.waiting import wait_for

BUDGET = 1.5


class Exporter:
    """A running exporter in a cgroup of its own (`cgroup`: that directory), scraped over one connection."""

    def __init__(self, name: str, argv: list[str], port: int, cgroup: Path, log_path: Path) -> None:
        self.name = name
        self.port = port
        self.cgroup = cgroup
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in stop())
        self.process = agents.start(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        (cgroup / "cgroup.procs").write_text(str(self.process.pid))
        self._connection: http.client.HTTPConnection | None = None
        self.latencies: list[float] = []  # wall time of each scrape, to the end of the body
        wait_for(
            lambda: self.scrape() > 0,
            60,
            lambda: f"{name} to serve: {log_path.read_text()}",
            alive=self.process,
        )

    def scrape(self, path: str = "/metrics") -> int:
        """GET `path` on the kept connection (a new one if it broke); the body's size."""
        started = time.perf_counter()
        for attempt in (0, 1):
            if self._connection is None:
                self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self._connection.request("GET", path)
                response = self._connection.getresponse()
                body = response.read()
                break
            except (OSError, http.client.HTTPException):
                self._connection.close()
                self._connection = None
                if attempt or self.process.poll() is not None:
                    raise
        self.latencies.append(time.perf_counter() - started)
        return len(body)

    def cpu_ns(self) -> int:
        return usage_ns(self.cgroup)

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
        agents.stop(self.process, timeout_s=15)
        self._log.close()


@dataclass
class Rounds:
    """Per round: each exporter's CPU per scrape (s) and the stat floor's median (s)."""

    cpu: dict[str, list[float]] = field(default_factory=dict)
    floor: list[float] = field(default_factory=list)
    scrapes: int = 0


def measure(exporters: list[Exporter], rounds: int, seconds: float, warmup_s: float) -> Rounds:
    """Scrape every exporter in turn once a second; per round, CPU per scrape and the stat floor."""
    for _ in range(max(1, round(warmup_s))):
        for exporter in exporters:
            exporter.scrape()
        time.sleep(1.0)
    for exporter in exporters:
        exporter.latencies.clear()
    out = Rounds({e.name: [] for e in exporters})
    for _ in range(rounds):
        before = [e.cpu_ns() for e in exporters]
        floors: list[float] = []
        scrapes = 0
        start = due = time.monotonic()
        while time.monotonic() - start < seconds:
            # Each first in turn: the one scraped second costs more (node_exporter 11 % more, wattprobe
            # 3 %, in runs of one order and the other), so a fixed order would favour the first.
            for exporter in exporters if scrapes % 2 == 0 else exporters[::-1]:
                exporter.scrape()
            scrapes += 1
            floors.append(cpu_time(stat_floor))  # the exporters are idle until the next scrape
            due += 1.0
            time.sleep(max(0.0, due - time.monotonic()))
        for exporter, cpu0 in zip(exporters, before, strict=True):
            out.cpu[exporter.name].append((exporter.cpu_ns() - cpu0) / 1e9 / scrapes)
        out.floor.append(median(floors))
        out.scrapes += scrapes
    return out


def per_request(exporter: Exporter, path: str, requests: int) -> float:
    """The exporter's CPU per GET of `path` (s), asked once a second, after two to warm up."""
    for _ in range(2):
        exporter.scrape(path)
        time.sleep(1.0)
    before = exporter.cpu_ns()
    due = time.monotonic()
    for _ in range(requests):
        exporter.scrape(path)
        due += 1.0
        time.sleep(max(0.0, due - time.monotonic()))
    return (exporter.cpu_ns() - before) / 1e9 / requests


@contextlib.contextmanager
def _cgroups(n: int, prefix: str) -> Iterator[list[Path]]:
    """`n` new cgroups for the block (their directories); [] where none can be made here."""
    with contextlib.ExitStack() as stack:
        made = []
        for _ in range(n):
            cgroup = stack.enter_context(new_cgroup(prefix))
            if cgroup is None:
                yield []
                return
            made.append(Path(cgroup.directory))
        yield made


@contextlib.contextmanager
def _timer(cgroup: Path) -> Iterator[None]:
    """A shell in `cgroup` that starts two short processes a second for the block, as a timer or a
    probe does: `/bin/true`, then `sleep 1`."""
    with subprocess.Popen(
        ["sh", "-c", "while :; do /bin/true; sleep 1; done"], start_new_session=True
    ) as shell:
        try:
            (cgroup / "cgroup.procs").write_text(str(shell.pid))  # its children are born there
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGKILL)


@contextlib.contextmanager
def _child(parent: Path, name: str) -> Iterator[Path]:
    """A cgroup below `parent` for the block; what runs in it at the end goes back to `parent`."""
    child = parent / name
    child.mkdir()
    try:
        yield child
    finally:
        for pid in (child / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (parent / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            child.rmdir()


def _exporters(
    tree: PowercapTree, tmp: Path, wattprobe_cgroup: Path, node_cgroup: Path, stack: contextlib.ExitStack
) -> list[Exporter]:
    sysfs = tmp / "sys"
    (sysfs / "class").mkdir(parents=True, exist_ok=True)
    if not (sysfs / "class" / "powercap").exists():
        (sysfs / "class" / "powercap").symlink_to(tree.root)
    ours, theirs = free_port(), free_port()
    started: list[Exporter] = []
    for name, argv, port, cgroup in (
        (
            "wattprobe",
            agents.on_tree(tree.root, "prometheus", "-a", "127.0.0.1", "-p", str(ours)),
            ours,
            wattprobe_cgroup,
        ),
        (
            "node_exporter, RAPL only",
            [
                NODE_EXPORTER,
                "--collector.disable-defaults",
                "--collector.rapl",
                f"--path.sysfs={sysfs}",
                f"--web.listen-address=127.0.0.1:{theirs}",
            ],
            theirs,
            node_cgroup,
        ),
    ):
        exporter = Exporter(name, argv, port, cgroup, tmp / f"{port}.log")
        stack.callback(exporter.stop)
        started.append(exporter)
    return started


def _breakdown(
    tree: PowercapTree, tmp: Path, cgroup: Path, stack: contextlib.ExitStack, requests: int
) -> dict[str, float]:
    """A second agent's CPU per request, alone: its index page, then /metrics from one kept Frame."""
    port = free_port()
    argv = agents.on_tree(
        tree.root, "prometheus", "-a", "127.0.0.1", "-p", str(port), "--min-interval", "3600"
    )
    agent = Exporter("wattprobe, one Frame kept", argv, port, cgroup, tmp / f"{port}.log")
    stack.callback(agent.stop)
    return {
        "groups_http": per_request(agent, "/", requests),
        "groups_kept_frame": per_request(agent, "/metrics", requests),
    }


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f} to {max(values):.2f}"


def bench(
    processes: int = 1000, groups: int = 50, rounds: int = 15, seconds: float = 10.0, warmup_s: float = 3.0
) -> Result:
    per_group = processes // groups
    result = Result(
        "idle",
        f"An idle host: {processes:,} idle processes, next to node_exporter's RAPL collector",
        __doc__.split("\n", 2)[2]
        .replace("1,000", f"{processes:,}")
        .replace("50 cgroups of 20", f"{groups} cgroups of {per_group}")
        .replace("50 services", f"{groups} services"),
    )
    why_not = setup()
    if why_not is not None:
        result.notes.append(why_not.capitalize() + ".")
        return result
    rows = [
        [
            "layout",
            "processes on the machine",
            "scrapes",
            "wattprobe CPU per scrape",
            "node_exporter RAPL CPU per scrape",
            "wattprobe / node_exporter",
            "stat floor",
            "wattprobe / stat floor",
            "scrape latency, wattprobe (median)",
            "scrape latency, node_exporter (median)",
        ]
    ]

    spare: list[Path] = []  # the cgroup of the second agent, in the 50 cgroups' layout

    def in_groups(stack: contextlib.ExitStack, timer: bool = False) -> tuple[Path, Path] | None:
        homes = stack.enter_context(_cgroups(groups + 3, "wattprobe-bench"))
        if not homes:
            return None
        for home in homes[3:]:
            stack.enter_context(Swarm(per_group, cgroup=home))
        if timer:  # in the first service, beside its idle processes
            stack.enter_context(_timer(homes[3]))
        spare.append(homes[2])
        return homes[0], homes[1]

    def in_slice(stack: contextlib.ExitStack) -> tuple[Path, Path] | None:
        top = stack.enter_context(_cgroups(1, "wattprobe-bench"))
        if not top:
            return None
        homes = [stack.enter_context(_child(top[0], f"s{i}.service")) for i in range(groups + 2)]
        for home in homes[2:]:
            stack.enter_context(Swarm(per_group, cgroup=home))
        return homes[0], homes[1]

    def in_one(stack: contextlib.ExitStack) -> tuple[Path, Path] | None:
        homes = stack.enter_context(_cgroups(2, "wattprobe-bench"))
        if not homes:
            return None
        stack.enter_context(Swarm(per_group * groups, cgroup=homes[0]))
        return stack.enter_context(_child(homes[0], "agent")), homes[1]

    layouts: list[tuple[str, str, Callable[[contextlib.ExitStack], tuple[Path, Path] | None]]] = [
        (f"in {groups} cgroups of {per_group}", "groups", in_groups),
        (f"in {groups} services of {per_group} in one slice, the exporters' too", "slice", in_slice),
        (
            f"in {groups} cgroups of {per_group}, one starting 2 processes a second",
            "forks",
            lambda stack: in_groups(stack, timer=True),
        ),
        ("in one cgroup with the agent", "one", in_one),
    ]
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp_name:
        tmp = Path(tmp_name)
        tree = PowercapTree(tmp / "powercap")
        with tree.running(period_s=0.05):
            for label, key, arrange in layouts:
                with contextlib.ExitStack() as stack:
                    where = arrange(stack)
                    if where is None:
                        result.notes.append("No cgroup could be made here (not root?): not measured.")
                        return result
                    exporters = _exporters(tree, tmp, *where, stack)
                    alive = count_processes()
                    m = measure(exporters, rounds, seconds, warmup_s)
                    ours, theirs = (m.cpu[e.name] for e in exporters)
                    versus_node = [a / b for a, b in zip(ours, theirs, strict=True) if b > 0]
                    versus_floor = [a / b for a, b in zip(ours, m.floor, strict=True) if b > 0]
                    latency = [median(e.latencies) for e in exporters]
                    if key == "groups":
                        for exporter in exporters:
                            exporter.stop()
                        result.numbers |= _breakdown(tree, tmp, spare[0], stack, max(3, round(2 * seconds)))
                result.numbers |= {
                    f"{key}_wattprobe": median(ours),
                    f"{key}_node_exporter": median(theirs),
                    f"{key}_stat_floor": median(m.floor),
                    f"{key}_versus_node": median(versus_node),
                    f"{key}_versus_floor": median(versus_floor),
                    f"{key}_latency": latency[0],
                    f"{key}_node_latency": latency[1],
                    f"{key}_scrapes": m.scrapes,
                }
                rows.append(
                    [
                        label,
                        f"{alive:,}",
                        f"{m.scrapes} in {rounds} rounds",
                        ms(median(ours)),
                        ms(median(theirs)),
                        f"{median(versus_node):.2f} ({_spread(versus_node)})",
                        ms(median(m.floor)),
                        f"{median(versus_floor):.2f} ({_spread(versus_floor)})",
                        ms(latency[0]),
                        ms(latency[1]),
                    ]
                )
    result.tables.append(rows)
    fresh, kept, http = (result.numbers[f"groups_{part}"] for part in ("wattprobe", "kept_frame", "http"))
    result.tables.append(
        [
            [f"a scrape in {groups} cgroups of {per_group}", "CPU per request", "of which"],
            ["the index page (the HTTP exchange alone)", ms(http), ""],
            ["/metrics, one Frame kept for every scrape", ms(kept), f"the exposition: {ms(kept - http)}"],
            ["/metrics, a fresh measurement (the rounds)", ms(fresh), f"the measurement: {ms(fresh - kept)}"],
        ]
    )
    result.budgets += [
        Budget(
            f"wattprobe CPU per scrape / node_exporter's RAPL collector's, {processes:,} idle processes "
            f"in {groups} cgroups",
            result.numbers["groups_versus_node"],
            BUDGET,
            "×",
        ),
        Budget(
            f"wattprobe CPU per scrape / node_exporter's RAPL collector's, {processes:,} idle processes "
            f"in {groups} services of one slice",
            result.numbers["slice_versus_node"],
            BUDGET,
            "×",
        ),
        Budget(
            f"wattprobe CPU per scrape / stat floor, {processes:,} idle processes in the agent's cgroup",
            result.numbers["one_versus_floor"],
            BUDGET,
            "×",
        ),
    ]
    return result
