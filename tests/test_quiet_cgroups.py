"""A cgroup whose CPU counter stood still holds no process that ran: the reader reads its counter (and,
then, its process list) instead of each of its processes' files, and misses no CPU time.

On a synthetic procfs and cgroupfs, a process's files can change while its cgroup's counter stands
still (which the kernel never does): that shows which files a scan read. In a real cgroup, where one
can be made, real processes run, sleep and move between cgroups, and the reader's CPU time for each
is its schedstat's.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.cgroups import new_cgroup
from tests.support.processes import schedstat_ns, stat_fields
from tests.support.procfs import rewrite, write_process, write_stat, write_times
from tests.support.waiting import wait_for
from wattprobe.sources.procfs import ProcfsReader, task_key
from wattprobe.sources.quiet_cgroups import Homes

MS = 1_000_000
SERVICE = "/system.slice/app.service"


class Tree:
    """/proc with processes in SERVICE (and elsewhere), and a cgroupfs whose counters are written by hand."""

    def __init__(self, root: Path, *, v2: bool = True) -> None:
        self.proc, self.cgroupfs, self.v2 = root / "proc", root / "cgroup", v2
        self.proc.mkdir()
        write_stat(self.proc)
        if v2:
            self.cgroupfs.mkdir()
            (self.cgroupfs / "cgroup.controllers").write_text("cpu\n")
            self.service = self.cgroupfs / SERVICE.lstrip("/")
        else:
            (self.cgroupfs / "cpuacct").mkdir(parents=True)
            (self.cgroupfs / "cpuacct" / "cpuacct.usage").write_text("0\n")
            self.service = self.cgroupfs / "cpuacct" / SERVICE.lstrip("/")
        self.service.mkdir(parents=True)
        self.ns: dict[int, int] = {}
        self.members: list[int] = []
        self.counter(0)

    def add(self, pid: int, *, cgroup: str = SERVICE, threads: int = 1) -> None:
        self.ns[pid] = 1_000 * MS
        text = f"0::{cgroup}\n" if self.v2 else f"3:cpuacct:{cgroup}\n0::/\n"
        write_process(self.proc, pid, sched_ns=self.ns[pid], threads=threads, cgroup=text)
        if cgroup == SERVICE:
            self.members.append(pid)
            self.listing()

    def run(self, pid: int, ms: int) -> None:
        """Its CPU time grows (its cgroup's counter is moved apart, or not, by `counter`)."""
        self.ns[pid] += ms * MS
        write_times(self.proc, pid, sched_ns=self.ns[pid], threads=int(self.threads(pid)))

    def threads(self, pid: int) -> str:
        return (self.proc / str(pid) / "stat").read_text().rpartition(")")[2].split()[17]

    def counter(self, ns: int) -> None:
        if self.v2:
            rewrite(self.service / "cpu.stat", f"usage_usec {ns // 1000}\nuser_usec 0\nsystem_usec 0\n")
        else:
            rewrite(self.service / "cpuacct.usage", f"{ns}\n")

    def listing(self) -> None:
        rewrite(self.service / "cgroup.procs", "".join(f"{pid}\n" for pid in self.members))

    def reader(self) -> ProcfsReader:
        return ProcfsReader(str(self.proc), cgroupfs_root=str(self.cgroupfs))


def cpu(reader: ProcfsReader, pid: int) -> int:
    return reader.scan()[1][task_key(pid, pid)]


def scans(reader: ProcfsReader, n: int) -> dict[int, int]:
    for _ in range(n - 1):
        reader.scan()
    return reader.scan()[1]


def test_a_quiet_cgroup_s_processes_are_not_read_and_nothing_is_lost(tmp_path):
    tree = Tree(tmp_path)
    for pid in (10, 11, 12):
        tree.add(pid)
    tree.add(20, cgroup="/system.slice/other.service")  # alone in its cgroup: read one by one
    reader = tree.reader()
    scans(reader, 4)  # seen, found idle (cgroup looked up), counter read, then its process list
    # A change the counter does not show is not read: the scan took the cgroup's word for it.
    tree.run(11, 5)
    tree.run(20, 5)
    times = scans(reader, 1)
    assert times[task_key(11, 11)] == 1_000 * MS
    assert times[task_key(20, 20)] == 1_005 * MS
    # Once the counter moves, every process of the cgroup is read: its time comes whole, a scan late.
    tree.counter(5 * MS)
    assert cpu(reader, 11) == 1_005 * MS
    # A process that left (the list differs) is read although the counter stood still: it may have
    # run elsewhere, and it did.
    scans(reader, 2)
    tree.members.remove(12)
    tree.listing()
    tree.run(12, 7)
    assert cpu(reader, 12) == 1_007 * MS
    # One that came (a process we read one by one) makes the list differ too.
    tree.run(10, 3)
    scans(reader, 1)  # quiet again: 10 not read
    tree.add(13)  # a new process of the cgroup, listed: the list differs from the last one read
    assert cpu(reader, 10) == 1_003 * MS
    reader.close()


def test_cgroup_v1_takes_no_multi_threaded_process(tmp_path):
    """In v1 a thread can be moved to another cgroup alone; a multi-threaded process is read each scan."""
    tree = Tree(tmp_path, v2=False)
    for pid in (10, 11, 12):
        tree.add(pid, threads=2 if pid == 12 else 1)
    reader = tree.reader()
    scans(reader, 4)
    tree.run(11, 5)
    tree.run(12, 30)  # 3 clock ticks: read from stat
    times = scans(reader, 1)
    assert times[task_key(11, 11)] == 1_000 * MS  # single-threaded, quiet cgroup: not read
    assert times[task_key(12, 12)] == 1_030 * MS
    reader.close()


def test_a_cgroup_whose_process_list_cannot_be_read_is_never_quiet(tmp_path):
    tree = Tree(tmp_path)
    for pid in (10, 11):
        tree.add(pid)
    (tree.service / "cgroup.procs").unlink()  # as a threaded v2 cgroup answers EOPNOTSUPP
    reader = tree.reader()
    scans(reader, 4)
    tree.run(10, 5)
    assert cpu(reader, 10) == 1_005 * MS
    reader.close()


class Slice:
    """/proc with processes in services of /system.slice; every service's counter and the slice's (the
    sum of theirs) written by hand."""

    def __init__(self, root: Path, services: list[str]) -> None:
        self.proc, cgroupfs = root / "proc", root / "cgroup"
        self.proc.mkdir()
        write_stat(self.proc)
        cgroupfs.mkdir()
        (cgroupfs / "cgroup.controllers").write_text("cpu\n")
        self.root = cgroupfs
        self.slice = cgroupfs / "system.slice"
        self.used = dict.fromkeys(services, 0)  # µs
        self.members: dict[str, list[int]] = {name: [] for name in services}
        self.ns: dict[int, int] = {}
        for name in services:
            (self.slice / name).mkdir(parents=True)
        self.write()

    def add(self, pid: int, service: str) -> None:
        self.ns[pid] = 1_000 * MS
        write_process(self.proc, pid, sched_ns=self.ns[pid], cgroup=f"0::/system.slice/{service}\n")
        self.members[service].append(pid)
        rewrite(self.slice / service / "cgroup.procs", "".join(f"{p}\n" for p in self.members[service]))

    def run(self, pid: int, ms: int, *, counted: bool = True) -> None:
        """Its CPU time grows, and (`counted`) its service's counter and the slice's with it."""
        self.ns[pid] += ms * MS
        write_times(self.proc, pid, sched_ns=self.ns[pid])
        if counted:
            service = next(name for name, pids in self.members.items() if pid in pids)
            self.used[service] += ms * 1000
            self.write()

    def write(self) -> None:
        for name, us in self.used.items():
            rewrite(self.slice / name / "cpu.stat", f"usage_usec {us}\nuser_usec 0\nsystem_usec 0\n")
        total = sum(self.used.values())
        rewrite(self.slice / "cpu.stat", f"usage_usec {total}\nuser_usec 0\nsystem_usec 0\n")


class _NoMove:
    """A watch of moves that saw none (the real one needs real cgroups: see the tests below)."""

    def moved(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _scan_reading(reader: ProcfsReader, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[int, int], set[str]]:
    """One scan: every process's time, and the counter files it read."""
    read, files = os.pread, set()

    def pread(fd: int, size: int, offset: int) -> bytes:
        files.add(os.readlink(f"/proc/self/fd/{fd}"))
        return read(fd, size, offset)

    monkeypatch.setattr(os, "pread", pread)
    try:
        times = reader.scan()[1]
    finally:
        monkeypatch.undo()
    return times, {f for f in files if f.endswith("cpu.stat")}


def test_a_home_is_in_the_slice_of_its_top_level_cgroup(tmp_path):
    """The root's counter is the machine's (interrupts too), no sum of its cgroups': a top-level cgroup is
    in no slice."""
    homes = Homes(str(tmp_path), None, lambda path: -1, lambda fd: None, lambda task: None)
    assert homes.join(object(), 1, "/docker", True).group is None
    service = homes.join(object(), 2, "/system.slice/a.service", True)
    deeper = homes.join(object(), 3, "/system.slice/b.service/sub", True)
    assert service.group is not None and service.group is deeper.group
    assert service.group.counter_file == f"{tmp_path}/system.slice/cpu.stat"
    homes.close()


def test_in_a_slice_only_the_homes_that_ran_are_read_and_nothing_is_lost(tmp_path, monkeypatch):
    """With moves watched, a scan reads the homes of a slice that moved at the last scan, then the slice's
    counter: while it moved by as much as they did, no other home of the slice is read, a home of one
    process included; when it moved by more, every home is read, and what ran is measured whole."""
    tree = Slice(tmp_path, ["a.service", "b.service", "c.service", "d.service"])
    for pid, service in ((10, "a"), (11, "a"), (20, "b"), (21, "b"), (30, "c"), (31, "c"), (40, "d")):
        tree.add(pid, f"{service}.service")
    reader = ProcfsReader(str(tree.proc), cgroupfs_root=str(tree.root))
    reader.homes._moves, reader.homes._watching = _NoMove(), True  # type: ignore[assignment]
    scans(reader, 5)  # seen, found idle (cgroups looked up), counters read, process lists, then quiet
    slice_counter, counter = str(tree.slice / "cpu.stat"), lambda s: str(tree.slice / s / "cpu.stat")
    # Nothing ran: the slice's counter alone.
    assert _scan_reading(reader, monkeypatch)[1] == {slice_counter}
    # One of b's ran: the slice moved by more than no home, so every home is read; its time is whole.
    tree.run(20, 5)
    times, files = _scan_reading(reader, monkeypatch)
    assert times[task_key(20, 20)] == 1_005 * MS
    assert files == {slice_counter, *(counter(s) for s in tree.used)}
    # b moved last time: it is read again, and the slice moved by as much as b did, so no other home is.
    tree.run(21, 3)
    times, files = _scan_reading(reader, monkeypatch)
    assert times[task_key(21, 21)] == 1_003 * MS
    assert files == {slice_counter, counter("b.service")}
    # A change no counter shows (the kernel never makes one) is not read: the scan took the slice's word,
    # for c's two processes and for d's one.
    tree.run(30, 7, counted=False)
    tree.run(40, 2, counted=False)
    times, files = _scan_reading(reader, monkeypatch)
    assert (times[task_key(30, 30)], times[task_key(40, 40)]) == (1_000 * MS, 1_000 * MS)
    assert files == {slice_counter, counter("b.service")}
    # Once their counters and the slice's move, they are read: their time comes whole, a scan late.
    tree.used["c.service"] += 7_000
    tree.used["d.service"] += 2_000
    tree.write()
    times = reader.scan()[1]
    assert (times[task_key(30, 30)], times[task_key(40, 40)]) == (1_007 * MS, 1_002 * MS)
    reader.close()


# -- real cgroups ----------------------------------------------------------------------------------
# Burns `ms` of CPU for every byte it reads on stdin; waits otherwise.
_BURNER = """
import sys, time
while sys.stdin.buffer.read(1):
    end = time.process_time() + {ms} / 1000
    while time.process_time() < end:
        pass
    sys.stdout.buffer.write(b".")
    sys.stdout.flush()
"""


@contextmanager
def real_cgroup() -> Iterator[Path]:
    """A new v2 cgroup (or skip), removed at the end."""
    with new_cgroup("wattprobe-test", v1=False) as made:
        if made is None:
            pytest.skip("no writable cgroup v2 hierarchy under /sys/fs/cgroup (not root?)")
        yield Path(made.directory)


def burner(ms: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-S", "-c", _BURNER.format(ms=ms)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )


def burn(process: subprocess.Popen[bytes]) -> None:
    """One burst, to its end: it waits on its stdin again."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"x")
    process.stdin.flush()
    assert process.stdout.read(1) == b"."
    wait_for(lambda: stat_fields(process.pid)[0] == "S", 10, "the burner to wait again", every_s=0.005)


@contextmanager
def burners_in(cgroup: Path, n: int) -> Iterator[tuple[list[subprocess.Popen[bytes]], dict[int, int]]]:
    """`n` burners in `cgroup` for the block, and their task keys by pid; killed at the end."""
    procs = [burner(20) for _ in range(n)]
    try:
        for p in procs:
            (cgroup / "cgroup.procs").write_text(str(p.pid))
        yield procs, {p.pid: task_key(p.pid, int(stat_fields(p.pid)[19])) for p in procs}
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_real_processes_that_sleep_run_and_move_are_measured_exactly():
    with (
        real_cgroup() as service,
        real_cgroup() as elsewhere,
        burners_in(service, 4) as (procs, keys),
    ):
        reader = ProcfsReader()
        wait_for(
            lambda: (reader.scan(), _quiet(reader, procs[0].pid))[1],
            10,
            "their cgroup to be quiet",
            every_s=0.1,
        )
        # One runs: its cgroup's counter moves, and the scan reads its time.
        burn(procs[1])
        assert reader.scan()[1][keys[procs[1].pid]] == schedstat_ns(procs[1].pid)
        wait_for(lambda: (reader.scan(), _quiet(reader, procs[0].pid))[1], 10, "quiet again", every_s=0.1)
        # One moves to another cgroup and runs there: its old cgroup's counter stands still, but its
        # process list changed, so the scan reads it.
        (elsewhere / "cgroup.procs").write_text(str(procs[2].pid))
        burn(procs[2])
        times = reader.scan()[1]
        assert times[keys[procs[2].pid]] == schedstat_ns(procs[2].pid)
        for p in procs:  # and nothing is behind for any of them
            assert times[keys[p.pid]] == schedstat_ns(p.pid)
        reader.close()


def test_with_moves_watched_a_quiet_cgroup_is_listed_only_after_a_move():
    """Where inotify sees every write to a cgroup's process list, a cgroup whose counter stood still is
    quiet without reading its list; a move anywhere has the next scan list it again, and misses nothing."""
    with (
        real_cgroup() as service,
        real_cgroup() as elsewhere,
        burners_in(service, 3) as (procs, keys),
    ):
        reader = ProcfsReader()
        listed: list[str] = []
        listing = reader.homes._listing
        reader.homes._listing = lambda home: (listed.append(home.directory), listing(home))[1]
        wait_for(lambda: (reader.scan(), _quiet(reader, procs[0].pid))[1], 10, "quiet", every_s=0.1)
        if reader.homes._moves is None:
            pytest.skip("the cgroup hierarchies are not mounted whole here: no watch")
        listed.clear()
        reader.homes._checks = 1  # the next scans are not one of the every-64th that list anyway
        for _ in range(5):
            reader.scan()
            assert _quiet(reader, procs[0].pid)
        assert str(service) not in listed
        (elsewhere / "cgroup.procs").write_text(str(procs[2].pid))
        burn(procs[2])
        times = reader.scan()[1]
        assert str(service) in listed
        for p in procs:
            assert times[keys[p.pid]] == schedstat_ns(p.pid)
        reader.close()


def test_real_services_of_a_slice_are_measured_exactly_and_the_quiet_ones_not_read(monkeypatch):
    """Real services below a cgroup of their own, as system.slice holds a host's: while none runs, a scan
    reads none of their counters (where that cgroup is top-level, a slice of its own); one that runs,
    and one that moves to another service and runs there, are measured exactly."""
    with real_cgroup() as top:
        services = [top / f"s{i}.service" for i in range(4)]
        for service in services:
            service.mkdir()
        try:
            with (
                burners_in(services[0], 2) as (first, keys),
                burners_in(services[1], 2) as (second, more),
                burners_in(services[2], 1) as (third, most),
            ):
                keys |= more | most
                procs = [*first, *second, *third]
                reader = ProcfsReader()
                wait_for(
                    lambda: (reader.scan(), all(_quiet(reader, p.pid) for p in procs))[1],
                    10,
                    "every service quiet",
                    every_s=0.1,
                )
                if reader.homes._moves is None:
                    pytest.skip("the cgroup hierarchies are not mounted whole here: no watch")
                reader.homes._checks = 1  # the next scans are not one of the every-64th that list anyway
                counters = {str(service / "cpu.stat") for service in services}
                if reader.cgroups.v2 is not None and str(top.parent) == reader.cgroups.v2:
                    assert not _scan_reading(reader, monkeypatch)[1] & counters
                burn(second[0])
                times = reader.scan()[1]
                assert times[keys[second[0].pid]] == schedstat_ns(second[0].pid)
                (services[3] / "cgroup.procs").write_text(str(first[1].pid))
                burn(first[1])
                burn(third[0])
                times = reader.scan()[1]
                for p in procs:
                    assert times[keys[p.pid]] == schedstat_ns(p.pid)
                reader.close()
        finally:
            for service in services:
                for pid in (service / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (top / "cgroup.procs").write_text(pid)
                service.rmdir()


def _quiet(reader: ProcfsReader, pid: int) -> bool:
    task = reader._tasks.get(str(pid))
    return task is not None and task.home is not None and task.home.quiet


def test_a_real_cgroup_listing_longer_than_a_page_is_read_whole():
    """A cgroup's process list comes a page (about 700 pids) per read: read in part, it would look as if
    its other processes had left, and they would be read one by one at every scan. 1,200 pids fill more
    than a page however short they are (after pid_max wraps, from 300: at least 4 bytes each)."""
    with real_cgroup() as service, sleepers(1200) as pids:
        for pid in pids:
            (service / "cgroup.procs").write_text(str(pid))
        assert len((service / "cgroup.procs").read_bytes()) > 4096
        reader = ProcfsReader()
        wait_for(
            lambda: (reader.scan(), all(_quiet(reader, pid) for pid in pids))[1],
            30,
            "every one of them quiet",
            every_s=0.1,
        )
        reader.scan()
        assert all(_quiet(reader, pid) for pid in pids)  # and still at the next scan
        reader.close()


@contextmanager
def sleepers(n: int) -> Iterator[list[int]]:
    """`n` forked processes asleep on a pipe for the block; they exit when it closes."""
    read_end, write_end = os.pipe()
    pids = []
    try:
        for _ in range(n):
            pid = os.fork()
            if pid == 0:  # pragma: no cover (the child)
                os.close(write_end)
                os.read(read_end, 1)
                os._exit(0)
            pids.append(pid)
        yield pids
    finally:
        os.close(write_end)
        os.close(read_end)
        for pid in pids:
            os.waitpid(pid, 0)


def test_a_counter_the_check_read_is_not_read_again_in_the_same_scan(tmp_path, monkeypatch):
    """A cgroup whose processes were in a Frame has its counter read at every scan for its figure; where
    it is also checked for quiet, that read gives both: one pread of the file a scan."""
    tree = Tree(tmp_path)
    for pid in (10, 11, 12):
        tree.add(pid)
    reader = tree.reader()
    scans(reader, 4)
    for pid in (10, 11, 12):
        assert reader.process(task_key(pid, pid)) is not None  # in a Frame: its cgroup's counter is followed
    tree.counter(5 * MS)
    read, files = os.pread, []

    def pread(fd: int, size: int, offset: int) -> bytes:
        files.append(os.readlink(f"/proc/self/fd/{fd}"))
        return read(fd, size, offset)

    monkeypatch.setattr(os, "pread", pread)
    reader.scan()
    monkeypatch.undo()
    assert files.count(str(tree.service / "cpu.stat")) == 1
    assert reader.cgroup_ns() == {SERVICE: 5 * MS}
    reader.close()
