"""The hooks that measuring one command needs from the pipeline: a process's descendants, a cgroup
counter read from the start, and the snapshot a window starts from."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid

import pytest

from tests.support.powercap_tree import PowercapTree
from wattprobe.sources.cgroupfs import CgroupReader
from wattprobe.sources.procfs import ProcfsReader, key_pid


def test_descendants_are_the_whole_tree_below_a_process():
    # sh -> (sh -> sleep) and sleep: children and grandchildren, not the process itself.
    tree = subprocess.Popen(["sh", "-c", "sh -c 'sleep 30; :' & sleep 30; wait"])
    reader = ProcfsReader()
    try:
        deadline = time.monotonic() + 5
        while True:
            reader.scan()
            found = reader.descendants(tree.pid)
            if len(found) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(found) == 3 and tree.pid not in found
        for pid in found:
            with open(f"/proc/{pid}/stat") as f:
                assert f.read().rsplit(")", 1)[1].split()[1] in {str(tree.pid), *map(str, found)}
        assert reader.descendants(999_999_999) == set()
    finally:
        tree.kill()
        tree.wait()
        reader.close()


def _v2_cgroup(reader: CgroupReader) -> str | None:
    """A new cgroup at the v2 root, or None where this machine has none we may make."""
    if reader.v2 is None:
        return None
    path = f"/wattprobe-test-{uuid.uuid4().hex[:8]}"
    try:
        os.mkdir(f"{reader.v2}{path}")
    except OSError:
        return None
    return path


def test_a_watched_cgroup_is_read_at_every_scan_without_its_processes_in_a_frame():
    procfs = ProcfsReader()
    path = _v2_cgroup(procfs.cgroups)
    if path is None:
        procfs.close()
        pytest.skip("no cgroup v2 hierarchy this user may write to")
    directory = f"{procfs.cgroups.v2}{path}"
    burner = None
    try:
        assert procfs.cgroups.watch(path, v2=True)
        procfs.scan()
        assert procfs.cgroup_ns()[path] == 0
        burner = subprocess.Popen(
            [
                "sh",
                "-c",
                f"echo $$ > {directory}/cgroup.procs && exec python3 -c "
                "'import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass'",
            ]
        )
        burner.wait()
        procfs.scan()
        # Its process came and went between two scans: only the counter saw it, to the µs.
        assert 0.28e9 <= procfs.cgroup_ns()[path] <= 0.6e9
        procfs.cgroups.unwatch(path)
        procfs.scan()
        assert path not in procfs.cgroup_ns()
    finally:
        procfs.close()
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def test_last_snapshot_tells_a_skipped_sample_from_a_new_window(tmp_path):
    tree = PowercapTree(tmp_path / "powercap")
    sampler = tree.sampler()
    try:
        assert sampler.last_snapshot is None
        sampler.tick()
        baseline = sampler.last_snapshot
        assert baseline is not None
        assert sampler.tick() is None and sampler.last_snapshot is baseline  # energy did not move: skipped
        tree.advance(1.0)
        frame = sampler.tick()
        assert frame is not None and sampler.last_snapshot is not baseline
        assert any(key_pid(k) == os.getpid() for k in sampler.last_snapshot.tasks)
    finally:
        sampler.close()
