"""A synthetic procfs tree: /proc/stat and /proc/<pid> as the kernel lays out the fields the reader uses.

Files are rewritten in place (same inode, from offset 0), as /proc changes under a reader that keeps
its descriptors open. Fields the reader does not use are zeros; see /proc/<pid>/stat in proc(5).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypedDict, Unpack

from wattprobe.sources.procfs import TICK_NS

CONTAINER_ID = "4b6d1f1c7f9d2e3a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2"
DOCKER_CGROUP = f"/system.slice/docker-{CONTAINER_ID}.scope"  # cgroup v2, systemd driver


class Times(TypedDict, total=False):
    """The keyword arguments of `write_times`."""

    comm: str | bytes
    ticks: tuple[int, int] | None
    sched_ns: int | None
    threads: int
    starttime: int | None
    ppid: int
    cticks: tuple[int, int]
    tids: dict[int, int] | None
    vsize: int
    rss_pages: int


def write_stat(
    root: Path, busy: int = 1000, idle: int = 3000, *, steal: int = 0, cpus: int = 4, forks: int | None = None
) -> None:
    """/proc/stat: the machine's busy (user + system), idle and steal ticks, spread evenly over `cpus`;
    with `forks`, its `processes` line (forks since boot)."""
    user, system = busy - busy // 2, busy // 2

    def line(name: str, share: int) -> str:
        return f"{name} {user // share} 0 {system // share} {idle // share} 0 0 0 {steal // share} 0 0"

    lines = [line("cpu ", 1), *(line(f"cpu{i}", cpus) for i in range(cpus)), "intr 0", "ctxt 0"]
    lines += [f"processes {forks}"] if forks is not None else []
    rewrite(root / "stat", "\n".join(lines) + "\n")


def write_process(
    root: Path,
    pid: int,
    *,
    cmdline: bytes = b"/usr/bin/worker\0--fast\0",
    cgroup: str = f"0::{DOCKER_CGROUP}\n",
    exe: str = "/usr/bin/worker",
    **times: Unpack[Times],
) -> None:
    """/proc/<pid>: its CPU times (see `write_times`) and its static facts. The exe link is made once."""
    write_times(root, pid, **times)
    directory = root / str(pid)
    rewrite(directory / "cmdline", cmdline)
    rewrite(directory / "cgroup", cgroup)
    if not (directory / "exe").is_symlink():
        (directory / "exe").symlink_to(exe)


def write_times(
    root: Path,
    pid: int,
    *,
    comm: str | bytes = "worker",
    ticks: tuple[int, int] | None = None,
    sched_ns: int | None = None,
    threads: int = 1,
    starttime: int | None = None,
    ppid: int = 1,
    cticks: tuple[int, int] = (0, 0),
    tids: dict[int, int] | None = None,
    vsize: int = 4_096_000,
    rss_pages: int = 250,
    flags: int = 0,
) -> None:
    """/proc/<pid>/stat and schedstat: what changes as a process runs.

    `ticks` (utime, stime) default to what `sched_ns` makes in whole clock ticks, as the kernel's
    trail its nanoseconds; `sched_ns` defaults to `ticks` in ns; with neither, 100 and 50 ticks.
    `starttime` defaults to the pid. `cticks` are the reaped children's (cutime, cstime). `tids`
    ({tid: schedstat ns}) writes task/ for a multi-threaded process; threads left out have ended.
    `comm` as bytes is written as it is (the kernel's is any 15 bytes but NUL). `flags` are the
    kernel's PF_* (0x00200000: a kernel thread).
    """
    if ticks is None:
        ticks = (100, 50) if sched_ns is None else (sched_ns // TICK_NS, 0)
    if sched_ns is None:
        sched_ns = (ticks[0] + ticks[1]) * TICK_NS
    fields = ["S"] + ["0"] * 50
    fields[1], fields[6], fields[11], fields[12], fields[13], fields[14] = map(
        str, (ppid, flags, *ticks, *cticks)
    )
    fields[17], fields[19], fields[20], fields[21] = map(str, (threads, starttime or pid, vsize, rss_pages))
    directory = root / str(pid)
    directory.mkdir(parents=True, exist_ok=True)
    name = comm if isinstance(comm, bytes) else comm.encode()
    rewrite(directory / "stat", b"%d (%s) %s\n" % (pid, name, " ".join(fields).encode()))
    rewrite(directory / "schedstat", f"{sched_ns} 0 0\n")
    if tids is not None:
        task = directory / "task"
        task.mkdir(exist_ok=True)
        for old in task.iterdir():
            if int(old.name) not in tids:
                (old / "schedstat").unlink()
                old.rmdir()
        for tid, ns in tids.items():
            (task / str(tid)).mkdir(exist_ok=True)
            rewrite(task / str(tid) / "schedstat", f"{ns} 0 0\n")


def rewrite(path: Path, content: str | bytes) -> None:
    """Overwrite from offset 0 in place, then cut what is left of a longer old content."""
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class FakeProc:
    """`n` single-threaded processes in `groups` cgroups; `advance()` gives every one of them CPU time.

    Real processes that all run between two measurements would load the machine being measured;
    these files cost nothing between reads.
    """

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
            write_process(
                root,
                pid,
                cmdline=f"/usr/bin/worker-{i % 200}\0--shard\0{i}\0--listen\0:{8000 + i}\0".encode(),
                cgroup=f"0::/system.slice/worker-{i % groups}.service\n",
                exe=f"/usr/bin/worker-{i % 200}",
                **self._times(pid),
            )
        write_stat(root, self.busy, self.idle, cpus=cpus)

    def advance(self, seconds: float) -> None:
        """Every process runs between 10 µs and 1 ms; the machine's counters move by `seconds`."""
        for i, pid in enumerate(self.pids):
            self.cpu_ns[pid] += 10_000 * (1 + i % 100)
            write_times(self.root, pid, **self._times(pid))
        ticks = round(seconds * self.cpus * 1e9 / TICK_NS)
        self.busy += ticks // 2
        self.idle += ticks - ticks // 2
        write_stat(self.root, self.busy, self.idle, cpus=self.cpus)

    def _times(self, pid: int) -> Times:
        ns = self.cpu_ns[pid]
        ticks = ns // TICK_NS
        return {
            "ticks": (ticks // 2, ticks - ticks // 2),
            "sched_ns": ns,
            "vsize": 123_456_789,
            "rss_pages": 2048,
        }


class ToldForks:
    """The kernel's fork events for a synthetic /proc (`ProcfsReader.events`): the births `tell()`
    queued since the last `born()`; `lose()` makes the next `born()` say that events were lost."""

    def __init__(self) -> None:
        self.closed = False
        self._born: dict[int, int] = {}
        self._lost = False

    def tell(self, pid: int, parent: int) -> None:
        self._born[pid] = parent

    def lose(self) -> None:
        self._lost = True

    def born(self) -> dict[int, int] | None:
        born, lost, self._born, self._lost = self._born, self._lost, {}, False
        return None if lost else born

    def close(self) -> None:
        self.closed = True
