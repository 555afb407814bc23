"""Fast /proc reader: CPU time of the machine and of every process, once per tick.

The per-tick scan is the agent's hot path (docs/performance.md measures it). Each process keeps
its `stat` file open (and, on another namespace's procfs, its `schedstat` while it is
single-threaded), so a read is a pread and no open/close; a dead process's file answers ESRCH,
which also tells a reused pid from the process we knew. A process whose CPU clock (or one
thread's `schedstat`) has not moved has not run, so nothing else can have changed: that one read
is all a sleeper costs. (A pid reused by a process whose clock happens to read the same ns as the
one we knew is told at its next run, when its stat answers ESRCH.) Reaping a child counts too:
wait4 runs in the parent, so a parent whose children's time grew has run. Descriptors are kept up
to a budget (the soft fd limit less FD_RESERVE); processes beyond it are read by path. Static
facts (exe, cmdline, cgroup) are read lazily, once per (pid, starttime), and re-read when the
command name of a user process changes (an exec; a kernel thread's name only says what it works on).

A process's CPU time has two parts, both cumulative and in ns:
- its own: where the pids under the root are this agent's (its own /proc), the process's CPU-time
  clock (clock_gettime of its pid's CPUCLOCK_SCHED, which any process may read): the run time of
  all its threads, those that ended included, exact to the ns, in one syscall and no descriptor.
  Elsewhere (another pid namespace's procfs, a synthetic tree), `schedstat` (ns) while it is
  single-threaded; for a multi-threaded one, the sum over its threads' `task/<tid>/schedstat`,
  read only when its `stat` ticks moved, with the time of threads that died unseen taken from the
  `stat` remainder (utime+stime of all threads, dead ones included, in clock ticks). Both sources
  only ever undercount, so the larger one is kept.
- its exited descendants': the kernel adds a reaped child's whole time (its own and its reaped
  descendants') to the parent's cutime+cstime. The increase of those, less what was already
  counted for the children that vanished (their last-seen cumulative time), is the parent's; see
  lineage.py for how a scan lines the two up.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import time

from wattprobe.core.model import DiskIo, MachineCpu, ProcessInfo
from wattprobe.sources.cgroupfs import CgroupReader
from wattprobe.sources.identity.redaction import Redactor
from wattprobe.sources.kept_files import KeptFiles
from wattprobe.sources.process_events import open_fork_events
from wattprobe.sources.procfs.facts import Facts
from wattprobe.sources.procfs.files import _NO_FD, TICK_NS, _read_file
from wattprobe.sources.procfs.lineage import Lineage
from wattprobe.sources.quiet_cgroups import Home, Homes

_PID_BITS = 22  # pid_max is at most 2**22
# Descriptors the reader leaves to the rest of the agent (sockets, sensor files, reads by path).
FD_RESERVE = 256
# How far `stat` may run ahead of the schedstat sum before we trust it: its utime and stime are
# each rounded down to a tick, so it trails the true time by less than two. More means threads
# that we never saw ran and died.
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


def process_clock_ns(pid: int) -> int:
    """The CPU time of every thread of process `pid`, ended ones included, in ns (its CPU-time clock:
    glibc's clock_getcpuclockid, CPUCLOCK_SCHED). OSError when no process has that pid."""
    return time.clock_gettime_ns(((~pid) << 3) | 2)


def clocks_readable(root: str) -> bool:
    """Whether the processes under `root` are named by this agent's pids (its own pid namespace), so
    that their CPU clocks can be read by pid."""
    try:
        return os.readlink(f"{root}/self") == str(os.getpid()) and process_clock_ns(os.getpid()) > 0
    except OSError:
        return False


# /proc/stat's scheduler lines -> MachineCpu's fields.
_SCHEDULER = {
    b"ctxt": "context_switches",
    b"processes": "forks",
    b"procs_running": "running",
    b"procs_blocked": "blocked",
}


def read_machine_cpu(root: str = "/proc") -> MachineCpu:
    """Whole-machine CPU time from /proc/stat, and the scheduler's counters in it."""
    with open(f"{root}/stat", "rb") as f:
        return parse_machine_cpu(f.read())


def parse_machine_cpu(data: bytes) -> MachineCpu:
    """What read_machine_cpu gives, from /proc/stat's text."""
    lines = data.split(b"\n")
    fields = [int(x) for x in lines[0].split()[1:]]
    fields += [0] * (8 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    n_cpus = 0
    counts = {}
    for line in lines:
        if line[:3] == b"cpu" and line[3:4].isdigit():
            n_cpus += 1
        else:
            key, _, value = line.partition(b" ")
            if key in _SCHEDULER and value.strip().isdigit():
                counts[_SCHEDULER[key]] = int(value)
    return MachineCpu(
        busy=user + nice + system + irq + softirq,
        idle=idle + iowait,
        steal=steal,
        n_cpus=max(n_cpus, 1),
        **counts,
    )


class _Task:
    """What the reader remembers of one live process between ticks."""

    __slots__ = (
        "cgroups",
        "comm",
        "cpu_ns",
        "credit_scan",
        "cticks",
        "exited_ns",
        "home",
        "homed",
        "info",
        "io",
        "io_fd",
        "io_raw",
        "kernel",
        "key",
        "owed",
        "own_ns",
        "pid",
        "ppid",
        "rss",
        "scan_exited",
        "sched_fd",
        "sched_ns",
        "stat_fd",
        "threads",
        "ticks",
        "tids",
        "vsize",
    )

    def __init__(self, pid: int, key: int, stat_fd: int) -> None:
        self.pid = pid
        self.key = key
        self.stat_fd = stat_fd
        self.sched_fd = _NO_FD
        self.comm = b""
        self.ppid = -1
        self.ticks = 0  # utime+stime, all threads
        self.cticks = 0  # cutime+cstime: reaped children
        self.threads = 0
        self.sched_ns = -1  # its clock, or its one thread's schedstat, at the last scan; -1: not read
        self.tids: dict[int, list[int]] | None = None  # multi-threaded: tid -> [fd, schedstat ns]
        self.own_ns = 0
        self.exited_ns = 0  # cumulative time of exited descendants, kernel-consistent (see _settle)
        self.owed = 0  # vanished children's counted time not yet seen in cticks
        self.credit_scan = 0  # the scan of the last cticks credit, and exited_ns before it
        self.scan_exited = 0
        self.cpu_ns = 0  # own_ns + exited_ns: what a snapshot carries
        self.rss = 0
        self.vsize = 0
        self.io_fd = _NO_FD  # /proc/PID/io, opened once the process is a consumer
        self.io: DiskIo | None = None  # its disk I/O at the last read of /proc/PID/io
        self.io_raw = b""  # that file as then read
        self.info: ProcessInfo | None = None
        self.kernel = False  # a kernel thread (PF_KTHREAD: for its whole life)
        self.cgroups: tuple[str, ...] = ()  # cgroup counters tracked for this process
        self.home: Home | None = None  # the cgroup whose quiet counter says it did not run
        self.homed = False  # its cgroup was looked up (found or not)

    @property
    def start(self) -> int:
        return self.key >> _PID_BITS

    def accounted(self) -> int:
        """What its parent's cutime will bring once it is reaped that we already counted somewhere."""
        return self.own_ns + self.cticks * TICK_NS + self.owed


def _parse_stat(data: bytes) -> tuple[bytes, int, int, int, int, int, int, int]:
    """comm, ppid, utime+stime, cutime+cstime (ticks), threads, starttime, vsize, rss pages."""
    close = data.rindex(b")")
    f = data[close + 2 :].split(b" ", 22)
    return (
        data[data.index(b"(") + 1 : close],
        int(f[1]),
        int(f[11]) + int(f[12]),
        int(f[13]) + int(f[14]),
        int(f[17]),
        int(f[19]),
        int(f[20]),
        int(f[21]),
    )


_PF_KTHREAD = 0x00200000  # in stat's flags: a kernel thread (include/linux/sched.h)


def _kernel_thread(stat: bytes) -> bool:
    """Whether a `stat` is a kernel thread's (its flags, the 7th field after the command name); a stat
    too garbled to tell is not."""
    try:
        return bool(int(stat[stat.rindex(b")") + 2 :].split(b" ", 7)[6]) & _PF_KTHREAD)
    except (ValueError, IndexError):
        return False


def _worker_name(comm: bytes) -> bytes:
    """A kernel thread's own name. To a work queue's worker's (`kworker/0:1`) the kernel adds the queue
    whose work it runs (`+events`) or last ran (`-events`): what it served last, not what a window's
    time went to, and a new name at nearly every run. A rescuer's queue is its own name (`kworker/R-md`)."""
    if not comm.startswith(b"kworker/") or comm.startswith(b"kworker/R-"):
        return comm
    marks = [at for at in (comm.find(b"+", 8), comm.find(b"-", 8)) if at >= 0]
    return comm[: min(marks)] if marks else comm


def _run_ns(data: bytes) -> int:
    return int(data[: data.index(b" ")])


class ProcfsReader(Lineage, Facts):
    """Scans a procfs tree; `root` and `cgroupfs_root` are parameters so tests can point them elsewhere.

    `schedstat=False` forces `stat` clock ticks for every process, as agents that only read
    `stat` do (used to compare the two at short windows). `cgroupfs_root=None` reads no cgroup.
    """

    def __init__(
        self,
        root: str = "/proc",
        *,
        schedstat: bool = True,
        cgroupfs_root: str | None = "/sys/fs/cgroup",
        redactor: Redactor | None = None,
        process_events: bool = True,
    ) -> None:
        self.root = root
        self.redactor = redactor or Redactor()
        self._tasks: dict[str, _Task] = {}  # by the pid's directory name
        self._loose: dict[int, _Task] = {}  # by task_key: those in no cgroup that can vouch for them
        self._cpu: dict[int, int] = {}  # task_key -> cpu_ns, kept up to date
        # The keys whose cpu_ns changed since the last changed(), each with its cpu_ns then (0: new since).
        self._changed: dict[int, int] = {}
        self._changes = 0  # calls of changed()
        self._forks = -1  # the machine's fork counter at the last scan (-1: none yet)
        self.listings = 0  # scans that listed /proc (the others found no fork, or were told of them)
        self._by_key: dict[int, _Task] = {}  # the same, by task_key
        self._kids: dict[int, dict[int, _Task]] = {}  # parent pid -> its children we know, by key
        self._exited: dict[int, int] = {}  # task key -> exited_ns, for the processes where it is not 0
        self._kept = 0  # descriptors held open across ticks
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._max_kept = (1 << 62) if soft == resource.RLIM_INFINITY else max(soft - FD_RESERVE, 0)
        self._use_schedstat = schedstat
        own = clocks_readable(root)  # the agent's own procfs
        self._clock = schedstat and own  # own CPU time from the process's clock
        # New processes told by the kernel, where it tells this agent: /proc is not listed after a fork.
        self.events = open_fork_events() if process_events and own else None
        self._scan = 0
        self._reaped: list[_Task] = []  # tasks whose cticks moved in this scan
        self._files = KeptFiles()  # the machine's files read at every scan: /proc/stat, our own statm
        self.cgroups = CgroupReader(cgroupfs_root)
        self.homes = Homes(self.cgroups.v2, self.cgroups.v1, self._open, self._close, self._leave_home, root)

    # -- the hot path -------------------------------------------------------------------------
    def scan(self) -> tuple[MachineCpu, dict[int, int]]:
        """Machine CPU time and cumulative CPU ns of every live process (exited descendants
        included), keyed by task_key; `exited()` and `cgroup_ns()` give the rest of the same scan."""
        machine, _ = self.scan_changed()
        return machine, self._cpu.copy()

    def scan_changed(self) -> tuple[MachineCpu, dict[int, int]]:
        """What `scan` gives, for the live processes whose time changed since the last `changed()`
        only (every one at the first scan): what a tick needs. A copy of every process's time cost an
        idle host's tick as much as all it read, and grew with the processes that exist, not with
        those that ran."""
        self._scan += 1
        try:
            machine = parse_machine_cpu(self._files.read(f"{self.root}/stat"))
        except ValueError as error:  # as unreadable for this scan: the sampler skips the sample, goes on
            raise OSError(errno.EIO, f"{self.root}/stat is garbled: {error}") from None
        tasks = self._tasks
        # No fork since the last scan: no new process (nor reused pid) can be there, and one that
        # exited ran (its cgroup's counter moved) or answers ESRCH when read below. Where the kernel
        # tells of each fork, the new processes are those it told of (read after /proc/stat when the
        # counter moved: a fork after that read is counted, and told, at the next scan). Else, and
        # without the counter (a synthetic tree), /proc is listed.
        forked = machine.forks <= 0 or machine.forks != self._forks
        self._forks = machine.forks
        events = self.events
        born: dict[int, int] | None = None  # the processes the kernel told of (None: not told)
        if events is not None:
            born = events.born() if forked else {}  # no fork counted, none to be told of: not even a poll
            if events.closed:
                self.events = events = None
        names: set[str] | None = None
        gone: list[_Task] = []
        # A kernel thread that ran may have reaped a child only if it is the parent of one we know, or
        # of one born since the last scan: those we were told of, or any where a fork went untold.
        untold = born is None and (events is not None or forked)
        parents = set(born.values()) if born is not None else set()
        if not self.listings or untold:
            names = set(os.listdir(self.root))
            self.listings += 1
            vanished = tasks.keys() - names
            gone = [tasks[name] for name in vanished]
        skip = {task.key for task in gone}
        self.homes.check()  # the cgroups whose counter stood still: their processes did not run
        # Only the processes that may have run: those outside a followed cgroup, and the members of
        # the cgroups whose counter moved; a quiet cgroup's members are not even walked.
        active = list(self._loose.values())
        for moving in self.homes.moved():
            active += moving.members.values()  # type: ignore[arg-type]
        pread, refresh, clock, clock_ns = os.pread, self._refresh, self._clock, time.clock_gettime_ns
        kids = self._kids
        for task in active:
            if skip and task.key in skip:
                continue
            home = task.home
            sched_ns = -1
            if task.sched_ns >= 0:
                # Its clock, or its one thread's schedstat: if it has not run since the last scan,
                # nothing we track can have changed (CPU time, a new thread, an exec and reaping a
                # child all need it to run), so `stat` need not be read. Most processes sleep most ticks.
                try:
                    if clock:
                        sched_ns = clock_ns(((~task.pid) << 3) | 2)  # process_clock_ns, inlined
                    else:
                        data = pread(task.sched_fd, 128, 0)
                        sched_ns = int(data[: data.index(b" ")])
                except (OSError, ValueError):
                    sched_ns = -1  # gone, or read by path: _refresh tells
                if sched_ns == task.sched_ns:
                    if not task.homed:
                        self._find_home(task)  # idle: from now on, its cgroup's counter may speak for it
                    continue
                if (
                    task.kernel
                    and not untold
                    and sched_ns >= 0
                    and task.pid not in kids
                    and task.pid not in parents
                ):
                    self._kernel_ran(task, sched_ns)  # no child of its can have been reaped: see there
                    continue
            if not refresh(task, sched_ns):
                gone.append(task)
            elif not task.homed:
                # It ran: its cgroup is looked up all the same (multi-threaded ones' stat is read at every
                # scan otherwise), for a slice's counter to be told apart from what ran in it (quiet_cgroups).
                self._find_home(task)
            elif home is not None and not home.v2 and task.threads > 1:
                self._leave_home(task)  # in cgroup v1 a thread can move alone: read it one by one
        self._settle(gone)
        # New processes, and pids reused by a new process since the last scan.
        if names is not None:
            arrived = names - tasks.keys()
        else:  # not `- tasks.keys()`: that walks every key
            arrived = {name for pid in born or () if (name := str(pid)) not in tasks}
        for name in arrived:
            if name.isdigit():
                new = self._first_sight(int(name))
                if new is not None:  # else it vanished between listing and reading
                    tasks[name] = self._by_key[new.key] = self._loose[new.key] = new
                    self._set_cpu(new.key, new.cpu_ns)
        self.cgroups.read(self.homes.counters)
        cpu = self._cpu
        return machine, {key: cpu[key] for key in self._changed if key in cpu}

    def exited(self) -> dict[int, int]:
        """Cumulative ns of exited descendants at the last scan, for the processes that have any."""
        return dict(self._exited)

    def changed(self) -> tuple[int, dict[int, int]]:
        """A number one more than at the last call, and the keys whose CPU time changed since it, each
        with its CPU time then (0 for a process new since)."""
        self._changes += 1
        changed, self._changed = self._changed, {}
        return self._changes, changed

    def _set_cpu(self, key: int, ns: int) -> None:
        old = self._cpu.get(key)
        if old != ns:
            self._cpu[key] = ns
            if key not in self._changed:
                self._changed[key] = 0 if old is None else old

    def cgroup_ns(self) -> dict[str, int]:
        """Cumulative CPU ns of the tracked cgroups at the last scan, by cgroup path."""
        return self.cgroups.usage()

    def watch(self, path: str, *, v2: bool) -> bool:
        """Read the counter of the cgroup at `path` at every scan (see `CgroupReader.watch`)."""
        return self.cgroups.watch(path, v2=v2)

    def unwatch(self, path: str) -> None:
        self.cgroups.unwatch(path)

    def _refresh(self, task: _Task, sched_ns: int) -> bool:
        """Advance a known process's CPU time (`sched_ns`: its clock or schedstat if read); False when
        it is gone."""
        fd = task.stat_fd
        try:
            data = os.pread(fd, 1024, 0) if fd != _NO_FD else _read_file(f"{self.root}/{task.pid}/stat")
            comm, ppid, ticks, cticks, threads, starttime, task.vsize, rss = _parse_stat(data)
            if fd == _NO_FD and task_key(task.pid, starttime) != task.key:
                return False  # read by path: the pid now names another process
            if self._clock:
                own = sched_ns = sched_ns if sched_ns >= 0 else process_clock_ns(task.pid)
            elif threads == 1 and task.tids is None:
                if sched_ns < 0:
                    sched_ns = self._schedstat(task)
                own = task.own_ns
                if task.sched_ns >= 0 and sched_ns >= 0:
                    own += sched_ns - task.sched_ns
                    if ticks * TICK_NS - own > _TICK_SLACK_NS:
                        own = ticks * TICK_NS  # a thread we never saw ran and died
                elif ticks > task.ticks:
                    own += (ticks - task.ticks) * TICK_NS
            else:
                own, sched_ns = self._threaded(task, ticks, threads)
        except (OSError, ValueError, IndexError):
            return False
        task.own_ns = own
        if cticks != task.cticks:
            self._credit(task, cticks)
        task.cpu_ns = own + task.exited_ns
        self._set_cpu(task.key, task.cpu_ns)
        if ppid != task.ppid:
            self._adopt(task, ppid)
        if task.kernel:
            comm = _worker_name(comm)
        if comm != task.comm:
            task.comm = comm
            if task.kernel:
                self._renamed(task)  # a kernel thread does not exec: nothing else to read
            else:
                self._drop_info(task)  # exec'd: read exe, cmdline and cgroup again
        task.ticks, task.threads, task.sched_ns, task.rss = ticks, threads, sched_ns, rss
        return True

    def _kernel_ran(self, task: _Task, sched_ns: int) -> None:
        """A kernel thread ran, with no child we know of and none born since the last scan (no process
        made, or none of its own among those the kernel told of): of what its `stat` says, only its
        run time can have changed, and its clock (or schedstat) says that. It has no memory, one thread
        and kthreadd for parent; its name stands (see _worker_name; a rare rename is seen at its next
        `stat`); a kworker reaps the user-mode helpers it starts, but a child to reap was born before
        the last scan (we know it) or since (a fork). Most of what runs on an idle host is kernel
        threads, and a `stat` costs the kernel 14 µs cold."""
        task.own_ns = sched_ns if self._clock else task.own_ns + sched_ns - task.sched_ns
        task.sched_ns = sched_ns
        self._publish(task)

    def _first_sight(self, pid: int) -> _Task | None:
        path = f"{self.root}/{pid}/stat"
        try:
            fd = self._open(path)
        except OSError:
            return None
        try:
            data = self._read(fd, pid, "stat")
            comm, ppid, ticks, cticks, threads, starttime, vsize, rss = _parse_stat(data)
            if (ppid | ticks | cticks | threads | starttime | vsize | rss) < 0:
                raise ValueError("a negative count")  # no kernel writes one: not a process's stat
        except (OSError, ValueError, IndexError):
            self._close(fd)
            return None
        task = _Task(pid, task_key(pid, starttime), fd)
        task.kernel = _kernel_thread(data)
        task.comm = _worker_name(comm) if task.kernel else comm
        task.ticks, task.threads, task.vsize, task.rss = ticks, threads, vsize, rss
        # Born since the last scan (or this is the first): all it and its reaped children used is new.
        task.cticks = cticks
        task.exited_ns = cticks * TICK_NS
        if task.exited_ns:
            self._exited[task.key] = task.exited_ns
        task.own_ns = ticks * TICK_NS
        self._adopt(task, ppid)
        if self._clock:
            with contextlib.suppress(OSError):  # else gone already: the next scan tells
                task.sched_ns = task.own_ns = process_clock_ns(pid)
        elif threads == 1:
            with contextlib.suppress(OSError, ValueError):
                sched_ns = self._schedstat(task)
                if sched_ns >= 0:
                    task.sched_ns = sched_ns
                    if task.own_ns - sched_ns <= _TICK_SLACK_NS:
                        task.own_ns = sched_ns
        task.cpu_ns = task.own_ns + task.exited_ns
        return task

    def _publish(self, task: _Task) -> None:
        super()._publish(task)
        if task.key in self._cpu:  # else not yet seen whole (its first sight sets it)
            self._set_cpu(task.key, task.cpu_ns)

    # -- threads ----------------------------------------------------------------------------
    def _threaded(self, task: _Task, ticks: int, threads: int) -> tuple[int, int]:
        """Own CPU ns of a process that is, or was at its last read, multi-threaded; and its
        schedstat ns when it is single-threaded again (else -1)."""
        own, stat_ns = task.own_ns, ticks * TICK_NS
        if not self._use_schedstat:
            return own + max(ticks - task.ticks, 0) * TICK_NS, -1
        if ticks == task.ticks and threads == task.threads:
            return own, -1  # no thread ran a tick's worth: read them when one has
        if task.tids is None and task.sched_ns >= 0:
            task.tids = {task.pid: [_NO_FD, task.sched_ns]}  # single-threaded until now: its one thread
        baseline = task.tids is None
        found = self._read_threads(task, threads)
        if found is None:  # no task directory (a synthetic tree): stat ticks, as before
            self._close_threads(task)
            return own + max(ticks - task.ticks, 0) * TICK_NS, -1
        ran, changed = found
        if baseline:  # the first read of its threads: this window from stat, the next ones exact
            own += max(ticks - task.ticks, 0) * TICK_NS
        else:
            own += ran
            if changed or stat_ns - own > _TICK_SLACK_NS:
                # Threads came or went: those that died since the last read ran for a time only
                # stat knows. Both only undercount, so the larger is nearer the truth.
                own = max(own, stat_ns)
        sched_ns = -1
        if threads == 1:  # single-threaded again: back to the pid's schedstat
            main = task.tids.get(task.pid) if task.tids else None
            sched_ns = main[1] if main is not None else self._schedstat(task)
            self._close_threads(task)
        return own, sched_ns

    def _read_threads(self, task: _Task, threads: int) -> tuple[int, bool] | None:
        """ns the known threads ran since their last read plus all of new threads' time, and
        whether the set of threads changed; None when the task directory cannot be listed."""
        tids = task.tids if task.tids is not None else {}
        baseline = task.tids is None
        ran, lost = 0, False
        for tid, entry in tids.items():
            try:
                ns = self._thread_ns(task, tid, entry)
            except (OSError, ValueError):
                entry[1] = -1  # it ended: what it ran since its last read is in stat's remainder
                lost = True
                continue
            ran += ns - entry[1]
            entry[1] = ns
        changed = lost or baseline
        if lost or baseline or len(tids) != threads:
            try:
                listed = {int(name) for name in os.listdir(f"{self.root}/{task.pid}/task")}
            except (OSError, ValueError):
                return None
            for tid in [t for t, entry in tids.items() if entry[1] < 0 or t not in listed]:
                if tid != task.pid:
                    self._close(tids[tid][0])
                del tids[tid]
                changed = True
            for tid in listed - tids.keys():
                entry = [_NO_FD, 0]
                if tid != task.pid:
                    with contextlib.suppress(OSError):
                        entry[0] = self._open(f"{self.root}/{task.pid}/task/{tid}/schedstat")
                try:
                    entry[1] = self._thread_ns(task, tid, entry)
                except (OSError, ValueError):
                    if entry[0] != _NO_FD:
                        self._close(entry[0])
                    continue  # gone already: stat's remainder has it
                tids[tid] = entry
                ran += entry[1]  # born since the last read: all of it is new
                changed = True
        task.tids = tids
        return ran, changed

    def _thread_ns(self, task: _Task, tid: int, entry: list[int]) -> int:
        if tid == task.pid:  # the main thread: the pid's own schedstat descriptor
            if task.sched_fd == _NO_FD:
                task.sched_fd = self._open(f"{self.root}/{task.pid}/schedstat")
            return _run_ns(self._read(task.sched_fd, task.pid, "schedstat"))
        return _run_ns(self._read(entry[0], task.pid, f"task/{tid}/schedstat"))

    def _close_threads(self, task: _Task) -> None:
        for tid, (fd, _) in (task.tids or {}).items():
            if tid != task.pid:
                self._close(fd)
        task.tids = None

    def _alive(self, task: _Task) -> bool:
        """Not yet reaped (a zombie is alive: its parent has not collected it)."""
        try:
            if task.stat_fd != _NO_FD:
                os.pread(task.stat_fd, 1024, 0)
                return True
            return task_key(task.pid, _parse_stat(_read_file(f"{self.root}/{task.pid}/stat"))[5]) == task.key
        except (OSError, ValueError, IndexError):
            return False

    # -- quiet cgroups (see sources/quiet_cgroups.py) ---------------------------------------------
    def _find_home(self, task: _Task) -> None:
        """Join the cgroup whose counter covers the process, once, where it has one."""
        task.homed = True
        if not self.homes.enabled:
            return
        try:
            text = _read_file(f"{self.root}/{task.pid}/cgroup").decode(errors="replace")
        except OSError:
            return
        found = self.homes.home_of(text, threaded=task.sched_ns < 0 or task.threads > 1)
        if found is not None:
            task.home = self.homes.join(task, task.pid, *found)
            self._loose.pop(task.key, None)

    def _leave_home(self, task: object) -> None:
        assert isinstance(task, _Task)
        home = task.home
        if home is not None:
            task.home, task.homed = None, False
            self.homes.leave(task, task.pid, home)
            self._loose[task.key] = task

    # -- files ------------------------------------------------------------------------------
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
        return _run_ns(data)

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
        if fd >= 0:
            os.close(fd)
            self._kept -= 1

    def _forget(self, task: _Task) -> None:
        self._leave_home(task)
        self._loose.pop(task.key, None)
        self._cpu.pop(task.key, None)
        self._by_key.pop(task.key, None)
        self._exited.pop(task.key, None)
        siblings = self._kids.get(task.ppid)
        if siblings is not None:
            siblings.pop(task.key, None)
            if not siblings:
                del self._kids[task.ppid]
        self._close_threads(task)
        self._close(task.stat_fd)
        self._close(task.sched_fd)
        self._close(task.io_fd)
        task.stat_fd = task.sched_fd = task.io_fd = _NO_FD
        self._drop_info(task)

    @property
    def tracked(self) -> int:
        """Processes tracked at the last scan."""
        return len(self._tasks)

    def close(self) -> None:
        for task in self._tasks.values():
            self._forget(task)
        self._tasks = {}
        self._by_key = {}
        self._loose = {}
        self._cpu = {}
        self._kids = {}
        self.homes.close()
        self.cgroups.close()
        self._files.close()
        if self.events is not None:
            self.events.close()
