"""Moves between cgroups told by inotify (`sources.cgroup_moves`), on real cgroups where one can be made:
a write to a cgroup's process list, and a new cgroup, are seen once each; a tree that is not a whole
hierarchy mounted gets no watch (its cgroups are listed at every scan instead)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.cgroups import new_cgroup
from wattprobe.sources.cgroup_moves import MoveWatch, open_watch
from wattprobe.sources.cgroupfs import CgroupReader


def test_a_write_to_any_cgroup_s_process_list_and_a_new_cgroup_are_each_told_once():
    with new_cgroup("wattprobe-test", v1=False) as made:
        if made is None:
            pytest.skip("no writable cgroup v2 hierarchy under /sys/fs/cgroup (not root?)")
        reader = CgroupReader()
        assert reader.v2 is not None
        watch = open_watch([reader.v2])
        if watch is None:
            pytest.skip("the cgroup v2 hierarchy is not mounted whole here: no watch")
        sleeper = subprocess.Popen(["sleep", "60"])
        try:
            assert not watch.moved()
            with open(f"{made.directory}/cgroup.procs", "w") as f:
                f.write(str(sleeper.pid))
            assert watch.moved()
            assert not watch.moved()  # told once
            with open(f"{made.directory}/cpu.stat") as f:  # reading, or anything else, is no move
                f.read()
            assert not watch.moved()
            with new_cgroup("wattprobe-inner", v1=False) as inner:  # made after the watch was set
                assert inner is not None
                assert watch.moved()  # a cgroup made: a process may have moved in before it was watched
                with open(f"{inner.directory}/cgroup.procs", "w") as f:
                    f.write(str(sleeper.pid))
                assert watch.moved()  # the new cgroup is watched
                with open(f"{made.directory}/cgroup.procs", "w") as f:
                    f.write(str(sleeper.pid))
            watch.moved()  # its removal
            assert not watch.moved()
        finally:
            sleeper.kill()
            sleeper.wait()
            watch.close()


def test_a_tree_that_is_not_a_mounted_hierarchy_gets_no_watch(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu\n")
    assert open_watch([str(tmp_path)]) is None
    assert open_watch([]) is None


def test_a_watch_that_cannot_be_set_everywhere_says_moved_at_every_call(tmp_path):
    """Past the watch limit (ENOSPC) a directory goes unwatched: the cgroups are then listed at every
    scan, as without a watch."""
    (tmp_path / "a").mkdir()
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    refused = iter([1, -1])  # the first directory is watched, the next is refused
    watch = MoveWatch(read_end, lambda fd, path, mask: next(refused), [str(tmp_path)])
    assert not watch.complete
    assert watch.moved() and watch.moved()
    watch.close()
    os.close(write_end)
