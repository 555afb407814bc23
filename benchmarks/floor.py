"""The floors the agent's costs are held against: only reading /proc, with no parsing and no bookkeeping.

- `stat_floor`: list /proc, then open, read and close every process's `stat` (what a reader that keeps
  no descriptors pays to learn each process's CPU time: psutil, Scaphandre, process-exporter);
- `open_read_floor`: /proc/stat, the listing, and per process the file a tick reads while it sleeps
  (`schedstat` when single-threaded, `stat` otherwise), opened, read and closed;
- `pread_floor`: the same reads with pread on descriptors kept open: the bare syscalls.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from tests.support.processes import stat_fields

PROC = "/proc"


def cpu_file(name: str) -> str:
    """The file a tick reads for this pid when it slept: schedstat if single-threaded, else stat."""
    try:
        threads = int(stat_fields(int(name))[17])
    except (OSError, ValueError, IndexError):
        return "stat"
    return "schedstat" if threads == 1 else "stat"


def tick_files() -> dict[str, str]:
    """Every pid of /proc now, with the file a tick reads for it."""
    return {name: cpu_file(name) for name in os.listdir(PROC) if name.isdigit()}


def stat_floor() -> int:
    """List /proc, then open, read and close each process's `stat`; the number of files read."""
    read = 0
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"{PROC}/{name}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            os.read(fd, 1024)
            read += 1
        except OSError:
            pass
        os.close(fd)
    return read


def open_read_floor(files: dict[str, str]) -> None:
    """Open, read and close every file a tick reads: no parsing, no bookkeeping."""
    with open(f"{PROC}/stat", "rb", buffering=0) as f:
        f.read()
    for name in os.listdir(PROC):
        which = files.get(name)
        if which is None:
            continue
        try:
            fd = os.open(f"{PROC}/{name}/{which}", os.O_RDONLY)
        except OSError:
            continue
        try:  # noqa: SIM105 (a context manager would add its own cost to the floor)
            os.read(fd, 1024)
        except OSError:
            pass
        os.close(fd)


def pread_floor(stat_fd: int, fds: list[int]) -> None:
    """pread on descriptors kept open: the syscalls of a tick and nothing else."""
    os.pread(stat_fd, 65536, 0)
    os.listdir(PROC)
    pread = os.pread
    for fd in fds:
        try:  # noqa: SIM105 (as above)
            pread(fd, 1024, 0)
        except OSError:
            pass


def cpu_time(fn: Callable[..., object], *args: object) -> float:
    """CPU seconds (user + system) this thread spent in `fn(*args)`."""
    start = time.thread_time()
    fn(*args)
    return time.thread_time() - start


def wall_time(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start
