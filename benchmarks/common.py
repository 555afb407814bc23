"""What every benchmark shares: results and budgets, statistics, and measuring a process from /proc."""

from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import dataclass, field

from tests.support.processes import stat_fields

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass
class Budget:
    """A target: `value` must stay at or below `limit` (at or above with `at_least`)."""

    name: str
    value: float
    limit: float
    unit: str = ""
    at_least: bool = False

    @property
    def ok(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def row(self) -> list[str]:
        sign = "≥" if self.at_least else "≤"
        return [
            self.name,
            f"{fmt(self.value)} {self.unit}".strip(),
            f"{sign} {fmt(self.limit)} {self.unit}".strip(),
            "met" if self.ok else "**missed**",
        ]


@dataclass
class Result:
    """One benchmark's outcome: a method paragraph, tables of numbers, the budgets it checks."""

    key: str
    title: str
    method: str
    tables: list[list[list[str]]] = field(default_factory=list)  # each: header row, then rows
    budgets: list[Budget] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)  # the raw figures, for tests and tooling

    def markdown(self) -> str:
        parts = [f"### {self.title}", "", self.method.strip(), ""]
        for table in self.tables:
            parts += [markdown_table(table), ""]
        if self.budgets:
            parts += [
                markdown_table([["budget", "measured", "target", ""], *(b.row() for b in self.budgets)]),
                "",
            ]
        parts += [f"- {note}" for note in self.notes]
        return "\n".join(parts).rstrip() + "\n"


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def fmt(value: float) -> str:
    """A number with three significant digits, without exponent for everyday magnitudes."""
    if value == 0 or value != value:
        return str(value if value != value else 0)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return percentile(values, 50)


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    try:
        import psutil

        psutil_version = psutil.__version__
    except ImportError:
        psutil_version = "absent"
    return {
        "cpu": f"{model or platform.processor() or 'unknown'}, {os.cpu_count()} CPUs",
        "memory": f"{mem_kb / 2**20:.1f} GiB",
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "psutil": psutil_version,
        "clock ticks": f"{os.sysconf('SC_CLK_TCK')} Hz",
    }


# -- another process, seen from /proc -------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads, dead ones included (clock-tick resolution)."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) * TICK_S


def memory(pid: int) -> tuple[int, int]:
    """Resident set size now and at its peak, bytes."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return rss, hwm


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def count_processes() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


def has_prometheus() -> bool:
    """Whether this tree has the Prometheus exporter (older trees measured without it)."""
    return importlib.util.find_spec("wattprobe.sinks.prometheus.sink") is not None


def scratch_dir() -> str | None:
    """A tmpfs for synthetic trees where there is one: rewriting their files then costs no disk I/O."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
