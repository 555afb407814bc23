"""Exited descendants and threads on a synthetic /proc: counted once, rounding carried, reapers found."""

from __future__ import annotations

import shutil

from tests.support.procfs import write_process, write_stat
from wattprobe.sources.procfs import ProcfsReader, key_pid

MS = 1_000_000


def by_pid(reader: ProcfsReader) -> tuple[dict[int, int], dict[int, int]]:
    """Cumulative CPU ns (exited descendants included) and the exited part, by pid, after a scan."""
    _, tasks = reader.scan()
    exited = reader.exited()
    return {key_pid(k): v for k, v in tasks.items()}, {key_pid(k): v for k, v in exited.items()}


def proc(root, pid, ns, **kwargs):
    """A single-threaded process whose schedstat is `ns`; its stat ticks trail it, as the kernel's do."""
    write_process(root, pid, sched_ns=ns, **kwargs)


def test_a_child_seen_then_reaped_is_counted_once(tmp_path):
    write_stat(tmp_path)
    proc(tmp_path, 1, 5_000 * MS, ppid=0)
    proc(tmp_path, 10, 1_000 * MS)
    proc(tmp_path, 11, 200 * MS, ppid=10)
    reader = ProcfsReader(str(tmp_path), cgroupfs_root=None)
    first, _ = by_pid(reader)
    proc(tmp_path, 11, 350 * MS, ppid=10)
    assert by_pid(reader)[0][11] == 350 * MS
    # The child ran 100 ms more and was reaped: its 450 ms are in the parent's cutime+cstime, and the
    # parent ran (wait4) for 1 ms. Only the 100 ms nobody was given yet are the parent's.
    shutil.rmtree(tmp_path / "11")
    proc(tmp_path, 10, 1_001 * MS, cticks=(40, 5))
    total, exited = by_pid(reader)
    assert exited[10] == 100 * MS
    assert total[10] == 1_001 * MS + 100 * MS
    # Over the whole run: the child's 150 ms since the first scan, its last 100 ms and the parent's 1 ms.
    family = (total[10] - first[10]) + (350 * MS - first[11])
    assert family == 150 * MS + 100 * MS + 1 * MS
    reader.close()


def test_children_born_and_reaped_between_two_scans_come_whole(tmp_path):
    write_stat(tmp_path)
    proc(tmp_path, 10, 1_000 * MS, cticks=(7, 3))
    reader = ProcfsReader(str(tmp_path), cgroupfs_root=None)
    first, _ = by_pid(reader)
    proc(tmp_path, 10, 1_002 * MS, cticks=(27, 13))
    total, exited = by_pid(reader)
    assert total[10] - first[10] == 2 * MS + 300 * MS
    assert exited[10] - 100 * MS == 300 * MS  # its 100 ms from before the first scan were the baseline
    reader.close()


def test_a_new_process_brings_its_reaped_children_along(tmp_path):
    write_stat(tmp_path)
    reader = ProcfsReader(str(tmp_path), cgroupfs_root=None)
    reader.scan()
    proc(tmp_path, 10, 30 * MS, cticks=(12, 3))  # born since the last scan, and reaped a child already
    total, exited = by_pid(reader)
    assert total[10] == 30 * MS + 150 * MS and exited[10] == 150 * MS
    reader.close()


def test_rounding_of_the_parents_ticks_is_carried_not_lost_or_doubled(tmp_path):
    write_stat(tmp_path)
    proc(tmp_path, 10, 1_000 * MS)
    proc(tmp_path, 11, 355 * MS, ppid=10)
    reader = ProcfsReader(str(tmp_path), cgroupfs_root=None)
    by_pid(reader)
    # Reaped with 355 ms: the parent's cutime+cstime show 35 ticks (each rounded down).
    shutil.rmtree(tmp_path / "11")
    proc(tmp_path, 10, 1_001 * MS, cticks=(30, 5))
    _, exited = by_pid(reader)
    assert exited.get(10, 0) == 0  # never below what was counted: 5 ms are owed
    # An unseen child of 100 ms: the counter now shows 45.5 ticks' worth, 45 of them.
    proc(tmp_path, 10, 1_002 * MS, cticks=(40, 5))
    _, exited = by_pid(reader)
    assert exited[10] == 100 * MS - 5 * MS
    reader.close()


def test_an_orphan_goes_to_its_new_reaper(tmp_path):
    write_stat(tmp_path)
    proc(tmp_path, 1, 5_000 * MS, ppid=0)
    proc(tmp_path, 5, 700 * MS)  # a subreaper
    proc(tmp_path, 10, 1_000 * MS, ppid=5)
    proc(tmp_path, 11, 400 * MS, ppid=10, comm="orphan")
    reader = ProcfsReader(str(tmp_path), cgroupfs_root=None)
    by_pid(reader)
    # The parent exits and is reaped by the subreaper; the child, asleep, is reparented to it.
    shutil.rmtree(tmp_path / "10")
    proc(tmp_path, 5, 701 * MS, cticks=(100, 0))
    proc(tmp_path, 11, 400 * MS, ppid=5, comm="orphan")
    _, exited = by_pid(reader)
    assert exited.get(5, 0) == 0  # the parent's 1,000 ms were counted already
    # Later the orphan runs 50 ms more and exits: the subreaper reaps it.
    shutil.rmtree(tmp_path / "11")
    proc(tmp_path, 5, 702 * MS, cticks=(145, 0))
    _, exited = by_pid(reader)
    assert exited[5] == 50 * MS
    assert exited.get(1, 0) == 0
    reader.close()


def test_a_parent_that_reaps_and_exits_in_one_window_hands_both_up(tmp_path):
    write_stat(tmp_path)
    proc(tmp_path, 9, 100 * MS)
    proc(tmp_path, 10, 200 * MS, ppid=9)
    proc(tmp_path, 11, 300 * MS, ppid=10)
    reader = ProcfsReader(str(tmp_path), cgroupfs_root=None)
    by_pid(reader)
    # The child ran 20 ms more and was reaped by the parent, which ran 10 ms more and was reaped in
    # turn: the grandparent's cutime got 320 ms + 210 ms.
    shutil.rmtree(tmp_path / "11")
    shutil.rmtree(tmp_path / "10")
    proc(tmp_path, 9, 101 * MS, cticks=(53, 0))
    total, exited = by_pid(reader)
    assert exited[9] == 20 * MS + 10 * MS
    assert set(total) == {9}
    reader.close()


def test_a_pid_reused_by_a_younger_process_is_not_the_reaper(tmp_path):
    write_stat(tmp_path)
    proc(tmp_path, 10, 1_000 * MS, starttime=500)
    proc(tmp_path, 11, 200 * MS, ppid=10, starttime=600)
    reader = ProcfsReader(str(tmp_path), cgroupfs_root=None)
    by_pid(reader)
    shutil.rmtree(tmp_path / "10")
    proc(tmp_path, 11, 200 * MS, ppid=1, starttime=600)
    by_pid(reader)  # the parent went; the child was reparented to init, which we do not see
    shutil.rmtree(tmp_path / "11")
    proc(tmp_path, 10, 5 * MS, starttime=900, cticks=(0, 0))  # pid 10 again: another, younger process
    total, exited = by_pid(reader)
    assert exited == {} and total == {10: 5 * MS}
    reader.close()


def test_threads_are_counted_from_their_own_schedstat(tmp_path):
    write_stat(tmp_path)
    ms = {20: 1_000 * MS, 21: 500 * MS, 22: 300 * MS}
    write_process(tmp_path, 20, ticks=(180, 0), threads=3, tids=ms, sched_ns=ms[20], starttime=20)
    reader = ProcfsReader(str(tmp_path), cgroupfs_root=None)
    assert by_pid(reader)[0][20] == 1_800 * MS  # first sight: stat
    # Its ticks moved: its threads are read for the first time (this window from stat).
    ms = {20: 1_004 * MS, 21: 507 * MS, 22: 303 * MS}
    write_process(tmp_path, 20, ticks=(181, 0), threads=3, tids=ms, sched_ns=ms[20], starttime=20)
    assert by_pid(reader)[0][20] == 1_810 * MS
    # From now on, exact: 5 + 6 + 2 ms although stat says one tick.
    ms = {20: 1_009 * MS, 21: 513 * MS, 22: 305 * MS}
    write_process(tmp_path, 20, ticks=(182, 0), threads=3, tids=ms, sched_ns=ms[20], starttime=20)
    assert by_pid(reader)[0][20] == 1_810 * MS + 13 * MS
    # No tick moved: its threads are not read (they ran less than a tick; it comes with the next read).
    ms = {20: 1_010 * MS, 21: 514 * MS, 22: 305 * MS}
    write_process(tmp_path, 20, ticks=(182, 0), threads=3, tids=ms, sched_ns=ms[20], starttime=20)
    assert by_pid(reader)[0][20] == 1_823 * MS
    # Thread 22 ended after running 40 ms more than we saw, and a new thread 23 ran 8 ms: stat's
    # remainder has the 40 ms (it trails the truth by its rounding, so the larger figure is kept).
    ms = {20: 1_012 * MS, 21: 516 * MS, 23: 8 * MS}
    write_process(tmp_path, 20, ticks=(188, 0), threads=3, tids=ms, sched_ns=ms[20], starttime=20)
    total = by_pid(reader)[0][20]
    assert total == 1_880 * MS  # 1,823 + 2 + 2 + 8 = 1,835 known, below stat's 1,880
    reader.close()


def test_a_process_that_starts_threads_keeps_its_nanoseconds(tmp_path):
    write_stat(tmp_path)
    proc(tmp_path, 20, 1_234_567_891)
    reader = ProcfsReader(str(tmp_path), cgroupfs_root=None)
    assert by_pid(reader)[0][20] == 1_234_567_891
    ms = {20: 1_240_000_000, 21: 3 * MS}
    write_process(tmp_path, 20, ticks=(124, 0), threads=2, tids=ms, sched_ns=ms[20], starttime=20)
    assert by_pid(reader)[0][20] == 1_243_000_000  # its main thread's ns, and all of the new thread's
    # Single-threaded again: the thread that ended ran 1 ms more than we saw, within stat's rounding.
    write_process(
        tmp_path,
        20,
        ticks=(124, 0),
        threads=1,
        tids={20: 1_241_000_000},
        sched_ns=1_241_000_000,
        starttime=20,
    )
    assert by_pid(reader)[0][20] == 1_244_000_000
    write_process(tmp_path, 20, ticks=(125, 0), threads=1, sched_ns=1_251_000_000, starttime=20)
    assert by_pid(reader)[0][20] == 1_254_000_000
    reader.close()
