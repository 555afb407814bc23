"""Fast /proc reader: CPU time of the machine and of every process, once per tick.

The per-tick scan is the agent's hot path (docs/performance.md measures it). Each process keeps
its `stat` (and, while it is single-threaded, `schedstat`) file open, so a tick costs a pread per
file and no open/close; a dead process's file answers ESRCH, which also tells a reused pid from
the process we knew. A single-threaded process whose `schedstat` run time has not moved has not
run, so nothing else can have changed: that one 30-byte read is all a sleeper costs. Descriptors
are kept up to a budget (the soft fd limit less FD_RESERVE); processes beyond it are read by path.
Static facts (exe, cmdline, cgroup) are read lazily, once per (pid, starttime), and re-read
when the command name changes (an exec).

CPU time comes from `schedstat` (nanoseconds) while a process is single-threaded, else from
`stat` utime+stime (clock ticks, summed over all its threads, dead ones included): `schedstat`
of a pid only counts its main thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource

from wattprobe.core.model import Container, MachineCpu, ProcessInfo

TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_PID_BITS = 22  # pid_max is at most 2**22
_NO_FD = -1
# Descriptors the reader leaves to the rest of the agent (sockets, sensor files, reads by path).
FD_RESERVE = 256
# How far a stat-ticks delta may exceed the schedstat delta before we trust stat: rounding of
# utime and stime to ticks, at each end of the window. More means a short-lived thread ran.
_TICK_SLACK_NS = 3 * TICK_NS


def raise_fd_limit() -> None:
    """Lift the soft limit on open files to the hard one: the reader keeps up to two per process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        # If refused, the soft limit stays: processes beyond the fd budget are read by path.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def task_key(pid: int, starttime: int) -> int:
    """One int that names a process for its whole life: (starttime, pid)."""
    return (starttime << _PID_BITS) | pid


def key_pid(key: int) -> int:
    return key & ((1 << _PID_BITS) - 1)


def read_machine_cpu(root: str = "/proc") -> MachineCpu:
    """Whole-machine CPU time from /proc/stat."""
    with open(f"{root}/stat", "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    fields = [int(x) for x in lines[0].split()[1:]]
    fields += [0] * (8 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    n_cpus = sum(1 for line in lines if line[:3] == b"cpu" and line[3:4].isdigit())
    return MachineCpu(
        busy=user + nice + system + irq + softirq, idle=idle + iowait, steal=steal, n_cpus=max(n_cpus, 1)
    )


class _Task:
    """What the reader remembers of one live process between ticks."""

    __slots__ = (
        "comm",
        "cpu_ns",
        "info",
        "key",
        "pid",
        "rss",
        "sched_fd",
        "sched_ns",
        "stat_fd",
        "threads",
        "ticks",
        "vsize",
    )

    def __init__(self, pid: int, key: int, stat_fd: int) -> None:
        self.pid = pid
        self.key = key
        self.stat_fd = stat_fd
        self.sched_fd = _NO_FD
        self.comm = b""
        self.ticks = 0
        self.threads = 0
        self.sched_ns = -1  # -1: not read at the last scan (process was multi-threaded)
        self.cpu_ns = 0
        self.rss = 0
        self.vsize = 0
        self.info: ProcessInfo | None = None


def _parse_stat(data: bytes) -> tuple[bytes, int, int, int, int, int]:
    """comm, utime+stime ticks, threads, starttime, vsize, rss pages from /proc/<pid>/stat."""
    close = data.rindex(b")")
    f = data[close + 2 :].split(b" ", 22)
    return (
        data[data.index(b"(") + 1 : close],
        int(f[11]) + int(f[12]),
        int(f[17]),
        int(f[19]),
        int(f[20]),
        int(f[21]),
    )


class ProcfsReader:
    """Scans a procfs tree; `root` is a parameter so tests can point it elsewhere.

    `schedstat=False` forces `stat` clock ticks for every process, as agents that only read
    `stat` do (used to compare the two at short windows).
    """

    def __init__(self, root: str = "/proc", *, schedstat: bool = True) -> None:
        self.root = root
        self._tasks: dict[str, _Task] = {}  # by the pid's directory name
        self._by_key: dict[int, _Task] = {}  # the same, by task_key
        self._kept = 0  # descriptors held open across ticks
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._max_kept = (1 << 62) if soft == resource.RLIM_INFINITY else max(soft - FD_RESERVE, 0)
        self._use_schedstat = schedstat

    # -- the hot path -------------------------------------------------------------------------
    def scan(self) -> tuple[MachineCpu, dict[int, int]]:
        """Machine CPU time and cumulative CPU ns of every live process, keyed by task_key."""
        machine = read_machine_cpu(self.root)
        names = set(os.listdir(self.root))
        tasks = self._tasks
        pread, refresh = os.pread, self._refresh
        gone = []
        for name, task in tasks.items():
            if name not in names:
                gone.append(name)
                continue
            sched_ns = -1
            if task.sched_ns >= 0:
                # Single-threaded at the last scan: if its one thread has not run since, nothing
                # we track can have changed (CPU time, a new thread and an exec all need it to
                # run), so `stat` need not be read. Most processes sleep through most ticks.
                try:
                    data = pread(task.sched_fd, 128, 0)
                    sched_ns = int(data[: data.index(b" ")])
                except (OSError, ValueError):
                    sched_ns = -1  # gone, or read by path: _refresh tells
                if sched_ns == task.sched_ns:
                    continue
            if not refresh(task, sched_ns):
                gone.append(name)
        for name in gone:
            self._forget(tasks.pop(name))
        # New processes, and pids reused by a new process since the last scan.
        for name in names - tasks.keys():
            if name.isdigit():
                task = self._first_sight(int(name))
                if task is not None:  # else it vanished between listing and reading
                    tasks[name] = self._by_key[task.key] = task
        return machine, {task.key: task.cpu_ns for task in tasks.values()}

    def _refresh(self, task: _Task, sched_ns: int) -> bool:
        """Advance a known process's CPU time (`sched_ns`: schedstat if read); False when it is gone."""
        fd = task.stat_fd
        try:
            data = os.pread(fd, 1024, 0) if fd != _NO_FD else _read_file(f"{self.root}/{task.pid}/stat")
            comm, ticks, threads, starttime, task.vsize, rss = _parse_stat(data)
            if fd == _NO_FD and task_key(task.pid, starttime) != task.key:
                return False  # read by path: the pid now names another process
            if threads != 1:
                sched_ns = -1
            elif sched_ns < 0:
                sched_ns = self._schedstat(task)
        except (OSError, ValueError, IndexError):
            return False
        delta = (ticks - task.ticks) * TICK_NS
        if task.sched_ns >= 0 and sched_ns >= 0:
            sched_delta = sched_ns - task.sched_ns
            if delta <= sched_delta + _TICK_SLACK_NS:
                delta = sched_delta
        if delta > 0:
            task.cpu_ns += delta
        if comm != task.comm:
            task.comm = comm
            task.info = None  # exec'd: read exe, cmdline and cgroup again
        task.ticks, task.threads, task.sched_ns, task.rss = ticks, threads, sched_ns, rss
        return True

    def _first_sight(self, pid: int) -> _Task | None:
        path = f"{self.root}/{pid}/stat"
        try:
            fd = self._open(path)
        except OSError:
            return None
        try:
            comm, ticks, threads, starttime, vsize, rss = _parse_stat(self._read(fd, pid, "stat"))
        except (OSError, ValueError, IndexError):
            self._close(fd)
            return None
        task = _Task(pid, task_key(pid, starttime), fd)
        task.comm, task.ticks, task.threads, task.vsize, task.rss = comm, ticks, threads, vsize, rss
        task.cpu_ns = ticks * TICK_NS
        if threads == 1:
            try:
                sched_ns = self._schedstat(task)
            except (OSError, ValueError):
                return task
            if sched_ns >= 0:
                task.sched_ns = sched_ns
                if abs(task.cpu_ns - sched_ns) <= _TICK_SLACK_NS:
                    task.cpu_ns = sched_ns
        return task

    def _schedstat(self, task: _Task) -> int:
        """Run time of the process's (one) thread in ns; -1 when schedstat is off or absent."""
        if not self._use_schedstat:
            return -1
        try:
            if task.sched_fd == _NO_FD:
                task.sched_fd = self._open(f"{self.root}/{task.pid}/schedstat")
            data = self._read(task.sched_fd, task.pid, "schedstat")
        except FileNotFoundError:
            if os.path.exists(f"{self.root}/{task.pid}/stat"):
                self._use_schedstat = False  # a kernel without schedstat: stat ticks from now on
                return -1
            raise
        return int(data[: data.index(b" ")])

    def _read(self, fd: int, pid: int, name: str) -> bytes:
        return os.pread(fd, 1024, 0) if fd != _NO_FD else _read_file(f"{self.root}/{pid}/{name}")

    def _open(self, path: str) -> int:
        """An fd kept open across ticks, or _NO_FD (read by path each tick) when over the fd budget."""
        if self._kept >= self._max_kept:
            return _NO_FD
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            if error.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            self._max_kept = self._kept  # the limit is nearer than it said: keep no more
            return _NO_FD
        self._kept += 1
        return fd

    def _close(self, fd: int) -> None:
        if fd != _NO_FD:
            os.close(fd)
            self._kept -= 1

    def _forget(self, task: _Task) -> None:
        self._by_key.pop(task.key, None)
        self._close(task.stat_fd)
        self._close(task.sched_fd)
        task.stat_fd = task.sched_fd = _NO_FD

    # -- per consumer, off the hot path ---------------------------------------------------------
    def process(self, key: int) -> tuple[ProcessInfo, int, int] | None:
        """Static facts, RSS and virtual size (bytes) of a live process seen at the last scan."""
        task = self._by_key.get(key)
        if task is None:
            return None
        if task.info is None:
            task.info = self._read_info(task)
        return task.info, task.rss * PAGE_SIZE, task.vsize

    def _read_info(self, task: _Task) -> ProcessInfo:
        base = f"{self.root}/{task.pid}"
        try:
            exe = os.readlink(f"{base}/exe")
        except OSError:
            exe = ""  # kernel thread, or another user's process without privileges
        try:
            raw = _read_file(f"{base}/cmdline").rstrip(b"\0")
            argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0")) if raw else ()
            cgroup, container = parse_cgroup(_read_file(f"{base}/cgroup").decode(errors="replace"))
        except OSError:
            argv, cgroup, container = (), "/", None
        comm = task.comm.decode(errors="replace")
        return ProcessInfo(task.pid, comm, exe, " ".join(argv), cgroup, container, argv)

    @property
    def tracked(self) -> int:
        """Processes tracked at the last scan."""
        return len(self._tasks)

    def close(self) -> None:
        for task in self._tasks.values():
            self._forget(task)
        self._tasks = {}
        self._by_key = {}


def _read_file(path: str) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return f.read()


# -- cgroups and containers ----------------------------------------------------------------------
# Controllers whose path names the process's cgroup, in order of preference (v2 unified first).
_CGROUP_PREFERENCE = ("", "cpu", "cpuacct", "name=systemd")
_CONTAINER_ID = re.compile(
    r"(?:^|/)(?:(docker|cri-containerd|crio|libpod|nerdctl)-)?([0-9a-f]{64})(?:\.scope)?(?:/|$)"
)
_POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_RUNTIME_BY_PREFIX = {
    "docker": "docker",
    "cri-containerd": "containerd",
    "crio": "cri-o",
    "libpod": "podman",
    "nerdctl": "containerd",
}


def parse_cgroup(text: str) -> tuple[str, Container | None]:
    """The cgroup path of a process and the container it runs in, from /proc/<pid>/cgroup.

    Works for cgroup v1 (`N:controllers:/path`), v2 (`0::/path`) and hybrids; recognises docker,
    containerd (CRI and nerdctl), CRI-O and podman ids, with the cgroupfs or the systemd driver,
    under Kubernetes (kubepods, k3s) or not.
    """
    paths: dict[str, str] = {}
    for line in text.splitlines():
        _, controllers, path = line.partition(":")[2].partition(":")
        for controller in controllers.split(","):
            paths.setdefault(controller, path)
    cgroup = next((paths[c] for c in _CGROUP_PREFERENCE if paths.get(c, "/") != "/"), None)
    if cgroup is None:
        cgroup = next((p for p in paths.values() if p != "/"), "/")
    for path in (cgroup, *paths.values()):
        container = _container(path)
        if container is not None:
            return cgroup, container
    return cgroup, None


def _container(path: str) -> Container | None:
    match = _CONTAINER_ID.search(path)
    if match is None:
        return None
    prefix, container_id = match.groups()
    runtime = _RUNTIME_BY_PREFIX.get(prefix or "")
    if runtime is None and ("/docker/" in path or path.startswith("/docker")):
        runtime = "docker"
    elif runtime is None and "libpod_parent" in path:
        runtime = "podman"
    pod = _POD_UID.search(path)
    if "kubepods" in path:
        scheduler = "kubernetes"
    else:
        scheduler = {"podman": "podman", "containerd": "containerd", "cri-o": "cri-o"}.get(
            runtime or "", "docker"
        )
    return Container(container_id, runtime, scheduler, pod.group(1).replace("_", "-") if pod else None)
