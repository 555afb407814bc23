"""Quiet cgroups: a cgroup whose CPU counter did not move holds no process that ran.

The kernel adds the time a task runs to its cgroup's counter (and its ancestors': cgroup v2
`cpu.stat` usage_usec, v1 `cpuacct.usage`) in the same step as to the task's own run time. While a
cgroup's counter stands still, none of its processes ran, so nothing a scan reads of them changed:
CPU time, threads, reaped children (reaping runs in the parent) and the process itself (exiting runs
too). A scan then reads one counter per cgroup instead of a file per process, which is what takes
it under the per-process floor on a machine whose idle processes sit in services and containers.

Membership has to be exact: a process moved out of its cgroup could run elsewhere. When a counter
stands still, the cgroup's `cgroup.procs` is read too, and the cgroup is quiet only if it lists the
same processes as the last time (a process that left or came makes it differ: its members are then
read one by one, and those it no longer lists leave it). A process joins once it is found idle, and
its cgroup is quiet again only after a listing read since. Multi-threaded processes join only in
cgroup v2, where a process's threads stay in its cgroup's subtree and the counter covers the
subtree; in v1 a thread can be moved anywhere on its own.

Where inotify watches the whole hierarchy (`sources.cgroup_moves`), the listings are read only in
the scans after a process was written to a cgroup or a cgroup was made, and every
`FULL_LISTING_EVERY` scans regardless: without a move, a cgroup lists what it listed last time, and
a still counter is enough.

What stays approximate, and only in time (no CPU time is ever lost, it is read later): v2 counts
µs, so processes that ran less than a µs in all between two scans may leave their cgroup looking
quiet, and a process moved out and back between two scans, having run elsewhere, is read late; both
are read at the next scan in which their cgroup's counter moves.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from wattprobe.sources.cgroup_moves import MoveWatch, open_watch
from wattprobe.sources.cgroupfs import cgroup_paths, counter_file

# A cgroup costs a counter read per scan (and a listing when it stands still): it is worth it from two
# processes on, which would cost a read each.
MIN_MEMBERS = 2
# With moves watched, the listings are read anyway at every this many scans: what a watch could miss
# (a move made where it cannot see) is read late by at most as many scans.
FULL_LISTING_EVERY = 64
_NO_FD = -1
# A read of a seq_file (cgroup.procs) stops at its buffer's end, a page at least; shorter by more
# than one pid's line, the list ended there and needs no second read (which would walk it again).
_PAGE_END = 4096 - 16


class Home:
    """A cgroup, its counter and listing as last read, and the processes of ours it holds."""

    __slots__ = (
        "counter",
        "counter_fd",
        "counter_file",
        "directory",
        "key",
        "listable",
        "listing",
        "listing_fd",
        "members",
        "quiet",
        "v2",
    )

    def __init__(self, key: tuple[str, bool], directory: str, v2: bool, counter_fd: int) -> None:
        self.key = key
        self.directory = directory
        self.counter_file = counter_file(directory, v2)
        self.v2 = v2
        self.counter_fd = counter_fd  # _NO_FD: unreadable, its members are read one by one
        self.counter: bytes | None = None  # as last read
        self.listing: bytes | None = None  # cgroup.procs as last read; None: to be read again
        self.listing_fd = _NO_FD  # v2: cgroup.procs kept open (pread at 0 lists it afresh)
        self.members: dict[int, object] = {}  # pid -> the reader's task
        self.listable = True  # False: its cgroup.procs cannot be read (a threaded v2 cgroup): never quiet
        self.quiet = False  # at this scan: nothing in it ran since the last scan


class Homes:
    """The cgroups the reader's idle processes sit in; `check()` at every scan says which are quiet.

    `v2_root` and `v1_root` are the v2 hierarchy and the v1 one that carries cpuacct (None: absent).
    `open_fd`/`close_fd` keep counters open within the reader's descriptor budget; `on_leave(task)`
    is called for each task its cgroup no longer lists (it calls `leave`). `procfs_root` is where the
    mounts are read, to know whether moves can be watched.
    """

    def __init__(
        self,
        v2_root: str | None,
        v1_root: str | None,
        open_fd: Callable[[str], int],
        close_fd: Callable[[int], None],
        on_leave: Callable[[object], None],
        procfs_root: str = "/proc",
    ) -> None:
        self.v2_root = v2_root
        self.v1_root = v1_root
        self._open = open_fd
        self._close = close_fd
        self._on_leave = on_leave
        self._homes: dict[tuple[str, bool], Home] = {}
        self._procfs_root = procfs_root
        self._moves: MoveWatch | None = None
        self._watching = False  # a watch was tried (opened at the first check with cgroups to check)
        self._checks = 0
        self.counters: dict[str, bytes] = {}  # each counter file the last check read, as it read it

    @property
    def enabled(self) -> bool:
        return self.v2_root is not None or self.v1_root is not None

    def home_of(self, cgroup_text: str, threaded: bool) -> tuple[str, bool] | None:
        """The cgroup (path, whether v2) whose counter covers a process, from /proc/PID/cgroup's text;
        None for the root (it is the machine: its counter always moves) or where no counter fits."""
        paths = cgroup_paths(cgroup_text)
        v2_path, v1_path = paths.get(""), paths.get("cpuacct")
        if self.v2_root is not None and v2_path and v2_path != "/" and "/.." not in v2_path:
            return v2_path, True
        if self.v1_root is not None and v1_path and v1_path != "/" and "/.." not in v1_path and not threaded:
            return v1_path, False
        return None

    def join(self, task: object, pid: int, path: str, v2: bool) -> Home:
        key = (path, v2)
        home = self._homes.get(key)
        if home is None:
            directory = f"{self.v2_root if v2 else self.v1_root}{path}"
            home = self._homes[key] = Home(key, directory, v2, _NO_FD)
            with contextlib.suppress(OSError):  # else gone already, or not ours to read: never quiet
                home.counter_fd = self._open(home.counter_file)
        home.members[pid] = task
        home.listing = None  # quiet again only once a listing read since shows it
        return home

    def leave(self, task: object, pid: int, home: Home) -> None:
        """`task` (of `pid`) is no longer in `home`: gone, moved, or its cgroup can no longer say."""
        if home.members.get(pid) is task:
            del home.members[pid]
        if not home.members and self._homes.get(home.key) is home:
            del self._homes[home.key]
            self._close(home.counter_fd)
            self._close(home.listing_fd)

    def check(self) -> None:
        """Read the counter of every cgroup with enough members (and its listing where the counter
        stands still, unless no process moved since it was last listed): set `quiet` on each."""
        if not self._watching and self._homes:
            self._watching = True
            self._moves = open_watch([r for r in (self.v2_root, self.v1_root) if r], self._procfs_root)
        self._checks += 1
        counters = self.counters = {}
        moves = self._moves
        relist = moves is None or moves.moved() or self._checks % FULL_LISTING_EVERY == 0
        pread = os.pread
        for home in list(self._homes.values()):
            home.quiet = False
            fd = home.counter_fd
            if fd == _NO_FD or not home.listable or len(home.members) < MIN_MEMBERS:
                home.counter = home.listing = None  # not followed: start afresh when it is
                continue
            try:
                # v2's cpu.stat whole: its other lines (user and system time, throttling) move only
                # with it, or after it (a quota's last periods): never quiet where it should not be.
                counter = pread(fd, 256, 0)
            except OSError:  # removed (ENODEV): its processes moved out, so they left it
                self._evict(home, set())
                continue
            counters[home.counter_file] = counter
            if counter != home.counter:
                home.counter = counter
                continue
            if not relist and home.listing is not None:  # listed since its last member joined
                home.quiet = True
                continue
            try:
                listing = self._listing(home)
            except OSError:
                home.listable = False  # its members stay, read one by one
                continue
            if listing == home.listing:
                home.quiet = True
                continue
            home.listing = listing
            try:
                listed = {int(pid) for pid in listing.split()}
            except ValueError:  # not a list of pids: it cannot vouch for its members, never quiet
                home.listable = False
                continue
            self._evict(home, listed)

    def _listing(self, home: Home) -> bytes:
        """The cgroup's process list now. A v2 list is read with pread on a descriptor kept open (each
        read at 0 walks the cgroup afresh); a v1 one from a new open (kept open, it is cached for a second)."""
        if home.v2 and home.listing_fd == _NO_FD:
            home.listing_fd = self._open(f"{home.directory}/cgroup.procs")  # _NO_FD: over the budget
        if home.listing_fd == _NO_FD:
            return _read_listing(f"{home.directory}/cgroup.procs")
        # A read gives at most a page of it (seq_file): read on to the end, from offset 0 (a new walk).
        chunk = os.pread(home.listing_fd, 65536, 0)
        if len(chunk) < _PAGE_END:
            return chunk
        chunks, offset = [chunk], len(chunk)
        while chunk := os.pread(home.listing_fd, 65536, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def moved(self) -> list[Home]:
        """The cgroups not quiet at the last `check()`: their members are read one by one."""
        return [home for home in self._homes.values() if not home.quiet]

    def _evict(self, home: Home, listed: set[int]) -> None:
        """Members the cgroup no longer lists leave it (all of them for an empty set)."""
        for pid, task in list(home.members.items()):
            if pid not in listed:
                self._on_leave(task)

    def close(self) -> None:
        for home in self._homes.values():
            self._close(home.counter_fd)
            self._close(home.listing_fd)
        self._homes = {}
        if self._moves is not None:
            self._moves.close()
            self._moves = None


def _read_listing(path: str) -> bytes:
    """A cgroup's whole process list, read from a new open (a v1 list kept open is cached for a second)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
