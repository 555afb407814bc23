"""A synthetic procfs tree of many processes that all use CPU between two measurements.

Real processes that all run every second would load the machine being measured; these files
cost nothing between reads. The layout is the kernel's for the fields the reader uses (see
/proc/<pid>/stat in proc(5)); every file is rewritten in place, as /proc changes, and never gets
shorter, so a reader holding it open sees the new values.
"""

from __future__ import annotations

import os
from pathlib import Path

TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


class FakeProc:
    """`n` single-threaded processes in `groups` cgroups; `advance()` gives each some CPU time."""

    def __init__(
        self, root: Path, n: int, *, cpus: int = 2, groups: int = 50, first_pid: int = 10_000
    ) -> None:
        self.root = root
        self.cpus = cpus
        self.pids = list(range(first_pid, first_pid + n))
        self.cpu_ns = dict.fromkeys(self.pids, 10**9)
        self.busy = self.idle = 10**6
        root.mkdir(parents=True, exist_ok=True)
        for i, pid in enumerate(self.pids):
            d = root / str(pid)
            d.mkdir()
            (d / "cmdline").write_bytes(
                f"/usr/bin/worker-{i % 200}\0--shard\0{i}\0--listen\0:{8000 + i}\0".encode()
            )
            (d / "cgroup").write_text(f"0::/system.slice/worker-{i % groups}.service\n")
            (d / "exe").symlink_to(f"/usr/bin/worker-{i % 200}")
            self._write(pid)
        self._write_stat()

    def advance(self, seconds: float) -> None:
        """Every process runs between 10 µs and 1 ms; the machine's counters move by `seconds`."""
        for i, pid in enumerate(self.pids):
            self.cpu_ns[pid] += 10_000 * (1 + i % 100)
            self._write(pid)
        ticks = round(seconds * self.cpus * 1e9 / TICK_NS)
        self.busy += ticks // 2
        self.idle += ticks - ticks // 2
        self._write_stat()

    def _write(self, pid: int) -> None:
        ns = self.cpu_ns[pid]
        ticks = ns // TICK_NS
        fields = ["S", "1", str(pid), str(pid), "0", "-1", "4194560", "100", "0", "0", "0"]
        fields += [
            str(ticks // 2),
            str(ticks - ticks // 2),
            "0",
            "0",
            "20",
            "0",
            "1",
            "0",
            str(pid),
            "123456789",
            "2048",
        ]
        fields += ["0"] * 30
        d = self.root / str(pid)
        _rewrite(d / "stat", f"{pid} (worker) {' '.join(fields)}\n")
        _rewrite(d / "schedstat", f"{ns} 12345 {ns // 1_000_000}\n")

    def _write_stat(self) -> None:
        lines = [f"cpu  {self.busy} 0 0 {self.idle} 0 0 0 0 0 0"]
        lines += [
            f"cpu{c} {self.busy // self.cpus} 0 0 {self.idle // self.cpus} 0 0 0 0 0 0"
            for c in range(self.cpus)
        ]
        _rewrite(
            self.root / "stat", "\n".join([*lines, "intr 0", "ctxt 0", f"processes {len(self.pids)}"]) + "\n"
        )


def _rewrite(path: Path, text: str) -> None:
    """Overwrite in place from offset 0: same inode, as procfs files are."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, text.encode(), 0)
    finally:
        os.close(fd)
