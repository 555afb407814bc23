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
read one by one, and those it no longer lists leave it). A process joins at its second scan, idle
or not, and its cgroup is quiet again only after a listing read since. Multi-threaded processes join
only in cgroup v2, where a process's threads stay in its cgroup's subtree and the counter covers the
subtree; in v1 a thread can be moved anywhere on its own.

Where inotify watches the whole hierarchy (`sources.cgroup_moves`), the listings are read only in
the scans after a process was written to a cgroup or a cgroup was made, and every
`FULL_LISTING_EVERY` scans regardless: without a move, a cgroup lists what it listed last time, and
a still counter is enough.

With moves watched, the cgroups below one top-level cgroup (a slice: `/system.slice`,
`/kubepods.slice`) are not even read one by one. A slice's counter is the sum of everything below it,
so a scan reads the homes of the slice that moved at the last scan or are new, then the slice's
counter: if it moved by as much as they did, every other home of the slice stood still, and is not
read. Else (something else ran), and at every scan that lists, each home is read. On a host whose
services sit in system.slice, the agent and the services that ran cost a read each, the idle ones
none, and a service of one process is worth a home too.

What stays approximate, and only in time (no CPU time is ever lost, it is read later): v2 counts
µs, so processes that ran less than a µs in all between two scans (in a slice, less than a µs for
each home read there) may leave their cgroup looking quiet, and a process moved out and back between
two scans, having run elsewhere, is read late; both are read at the next scan that reads their
cgroup's counter and finds it moved (in a slice, at the latest the next that lists).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from wattprobe.sources.cgroup_moves import MoveWatch, open_watch
from wattprobe.sources.cgroupfs import cgroup_paths, counter_file, counter_ns

# A cgroup costs a counter read per scan (and a listing when it stands still): it is worth it from two
# processes on, which would cost a read each.
MIN_MEMBERS = 2
# With moves watched, the listings are read anyway at every this many scans: what a watch could miss
# (a move made where it cannot see) is read late by at most as many scans.
FULL_LISTING_EVERY = 64
_NO_FD = -1
_UNOPENED = -2
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
        "group",
        "key",
        "listable",
        "listing",
        "listing_fd",
        "members",
        "quiet",
        "usage",
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
        self.usage: int | None = None  # its counter as last read, in ns (in a slice: see _Slice)
        self.group: _Slice | None = None  # the top-level cgroup it is in, if not itself one


class _Slice:
    """A top-level cgroup (`/system.slice`, `/kubepods.slice`) and the homes below it. Its counter is
    the sum of theirs, and of anything else below it: when it moved by as much as the homes that
    moved last time (read again) did, every other home below it stood still, unread."""

    __slots__ = ("counter_fd", "counter_file", "homes", "key", "unsettled", "usage", "v2")

    def __init__(self, key: tuple[str, bool], directory: str, v2: bool) -> None:
        self.key = key
        self.counter_file = counter_file(directory, v2)
        self.v2 = v2
        self.counter_fd = _UNOPENED
        self.homes: dict[tuple[str, bool], Home] = {}
        self.unsettled: set[Home] = set()  # to be read at the next check: moved, new or never quiet
        self.usage: int | None = None  # its counter at the last check


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
        self._alone: dict[tuple[str, bool], Home] = {}  # the homes in no slice (top-level ones)
        self._slices: dict[tuple[str, bool], _Slice] = {}
        self._procfs_root = procfs_root
        self._moves: MoveWatch | None = None
        self._watching = False  # a watch was tried (opened at the first check with cgroups to check)
        self._checks = 0
        self._moved: list[Home] = []
        self.counters: dict[str, bytes] = {}  # each home's counter file as last read, while it is followed

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
            root = self.v2_root if v2 else self.v1_root
            home = self._homes[key] = Home(key, f"{root}{path}", v2, _NO_FD)
            with contextlib.suppress(OSError):  # else gone already, or not ours to read: never quiet
                home.counter_fd = self._open(home.counter_file)
            end = path.find("/", 1)
            if end > 0:  # below a top-level cgroup: in its slice
                top = path[:end]
                group = self._slices.get((top, v2))
                if group is None:
                    group = self._slices[(top, v2)] = _Slice((top, v2), f"{root}{top}", v2)
                group.homes[key] = home
                home.group = group
            else:
                self._alone[key] = home
        home.members[pid] = task
        home.listing = None  # quiet again only once a listing read since shows it
        if home.group is not None:
            home.group.unsettled.add(home)
        return home

    def leave(self, task: object, pid: int, home: Home) -> None:
        """`task` (of `pid`) is no longer in `home`: gone, moved, or its cgroup can no longer say."""
        if home.members.get(pid) is task:
            del home.members[pid]
        if not home.members and self._homes.get(home.key) is home:
            del self._homes[home.key]
            self._alone.pop(home.key, None)
            self.counters.pop(home.counter_file, None)
            self._close(home.counter_fd)
            self._close(home.listing_fd)
            group = home.group
            if group is not None:
                del group.homes[home.key]
                group.unsettled.discard(home)
                if not group.homes:
                    del self._slices[group.key]
                    if group.counter_fd >= 0:
                        self._close(group.counter_fd)

    def check(self) -> None:
        """Read the counter of every cgroup with enough members (and its listing where the counter
        stands still, unless no process moved since it was last listed): set `quiet` on each. Where
        moves are watched, the homes in a slice are read only when the slice's counter says that
        more than the homes read ran (see _Slice)."""
        if not self._watching and self._homes:
            self._watching = True
            self._moves = open_watch([r for r in (self.v2_root, self.v1_root) if r], self._procfs_root)
        self._checks += 1
        moves = self._moves
        relist = moves is None or moves.moved() or self._checks % FULL_LISTING_EVERY == 0
        moved = self._moved = []
        if moves is None:  # every home is listed at every check: one by one, as many as are worth it
            self._check_all(list(self._homes.values()), relist, MIN_MEMBERS, moved)
            return
        self._check_all(list(self._alone.values()), relist, MIN_MEMBERS, moved)
        for group in list(self._slices.values()):
            self._check_slice(group, relist, moved)

    def _check_slice(self, group: _Slice, relist: bool, moved: list[Home]) -> None:
        """Read the homes of a slice that moved or are new, then the slice's counter: if it moved by as
        much as they did (to the rounding of each counter to a µs), the others stood still. Else, and
        at a check that lists every home, read them all. In a slice a home of one process is worth it
        too, quiet it costs nothing; not at a check that lists (they may come at every check where
        cgroups are made all the time), where such a home is read one by one, as elsewhere."""
        shortcut = not relist and group.usage is not None
        least = MIN_MEMBERS if relist else 1
        read = list(group.unsettled) if shortcut else list(group.homes.values())
        ran = self._check_all(read, relist, least, moved)
        if group.counter_fd == _UNOPENED:
            try:
                group.counter_fd = self._open(group.counter_file)
            except OSError:
                group.counter_fd = _NO_FD
        usage = None
        with contextlib.suppress(OSError):
            usage = _usage(os.pread(group.counter_fd, 256, 0), group.v2) if group.counter_fd >= 0 else None
        before = group.usage
        # Each counter is rounded down to its unit (v2: a µs): the sums may differ by one for each.
        unit = 1000 if group.v2 else 1
        rest_still = (
            ran is not None
            and usage is not None
            and before is not None
            and abs(usage - before - ran) <= (len(read) + 1) * unit
        )
        if shortcut and not rest_still:
            done = set(read)
            self._check_all([h for h in list(group.homes.values()) if h not in done], relist, least, moved)
            read = list(group.homes.values())
        group.usage = usage
        homes = group.homes
        group.unsettled = {home for home in read if not home.quiet and homes.get(home.key) is home}

    def _check_all(self, homes: list[Home], relist: bool, least: int, moved: list[Home]) -> int | None:
        """Check each of `homes` (`least`: the members that make a home worth a check); add those not
        quiet to `moved`. How much their counters moved in all, None where one cannot say."""
        ran: int | None = 0
        for home in homes:
            change = self._check_home(home, relist, least)
            if not home.quiet:
                moved.append(home)
            ran = None if ran is None or change is None else ran + change
        return ran

    def _check_home(self, home: Home, relist: bool, least: int) -> int | None:
        """Set `quiet` on a home; how much its counter moved since it was last read (None: unknown)."""
        home.quiet = False
        fd = home.counter_fd
        # In a slice (moves watched), a home that cannot be quiet still counts in the slice's sum.
        grouped = home.group is not None and self._moves is not None
        if fd == _NO_FD or len(home.members) < least or not (home.listable or grouped):
            home.counter = home.listing = home.usage = None  # not followed: start afresh when it is
            self.counters.pop(home.counter_file, None)
            return None
        try:
            # v2's cpu.stat whole: its other lines (user and system time, throttling) move only
            # with it, or after it (a quota's last periods): never quiet where it should not be.
            counter = os.pread(fd, 256, 0)
        except OSError:  # removed (ENODEV): its processes moved out, so they left it
            self._evict(home, set())
            return None
        self.counters[home.counter_file] = counter
        change = None
        if grouped:
            before, home.usage = home.usage, _usage(counter, home.v2)
            change = None if before is None or home.usage is None else home.usage - before
        if not home.listable:
            return change
        if counter != home.counter:
            home.counter = counter
            return change
        if not relist and home.listing is not None:  # listed since its last member joined
            home.quiet = True
            return change
        try:
            listing = self._listing(home)
        except OSError:
            home.listable = False  # its members stay, read one by one
            return change
        if listing == home.listing:
            home.quiet = True
            return change
        home.listing = listing
        try:
            listed = {int(pid) for pid in listing.split()}
        except ValueError:  # not a list of pids: it cannot vouch for its members, never quiet
            home.listable = False
            return change
        self._evict(home, listed)
        return change

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
        return self._moved

    def _evict(self, home: Home, listed: set[int]) -> None:
        """Members the cgroup no longer lists leave it (all of them for an empty set)."""
        for pid, task in list(home.members.items()):
            if pid not in listed:
                self._on_leave(task)

    def close(self) -> None:
        for home in self._homes.values():
            self._close(home.counter_fd)
            self._close(home.listing_fd)
        for group in self._slices.values():
            if group.counter_fd >= 0:
                self._close(group.counter_fd)
        self._homes, self._alone, self._slices, self._moved = {}, {}, {}, []
        self.counters = {}
        if self._moves is not None:
            self._moves.close()
            self._moves = None


def _usage(counter: bytes, v2: bool) -> int | None:
    """A counter file's CPU time in ns (see counter_ns); None if it is no counter."""
    try:
        return counter_ns(counter, v2)
    except ValueError:
        return None


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
