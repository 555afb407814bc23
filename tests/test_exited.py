"""Processes that live less than a step, with real processes: their time reaches their ancestors, once."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from tests.support.attributed import attributed_while
from tests.support.powercap_tree import PowercapTree
from tests.support.processes import schedstat_ns, stat_fields
from tests.support.waiting import wait_for
from tests.support.workloads import compiler, make_project, make_rounds, shell_loop
from wattprobe.sources.procfs import TICK_NS, ProcfsReader, key_pid

# A parent that starts a child burning `seconds` of CPU, waits for it (asleep in wait4), prints the
# child's CPU time as the kernel gave it (ns), then sleeps until its stdin closes.
_PARENT = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-c",
    "import time\\nend = time.process_time() + float(__import__('sys').argv[1])\\n"
    "while time.process_time() < end: pass", sys.argv[1]])
print(child.pid, flush=True)
_, _, usage = os.wait4(child.pid, 0)
print(round((usage.ru_utime + usage.ru_stime) * 1e9), flush=True)
sys.stdin.read()
"""


def test_a_parent_asleep_in_wait_runs_to_reap_and_gets_the_rest_of_its_child():
    reader = ProcfsReader()
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, "0.4"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        child_pid = int(parent.stdout.readline())
        wait_for(lambda: schedstat_ns(child_pid) > 60_000_000, 10, "the child to run 60 ms")
        _, tasks = reader.scan()
        child_key = next(k for k in tasks if key_pid(k) == child_pid)
        parent_key = next(k for k in tasks if key_pid(k) == parent.pid)
        assert tasks[child_key] > 50_000_000  # it was caught running
        # While it waits, the parent does not run: its schedstat, all a sleeper costs, stands still.
        asleep = schedstat_ns(parent.pid)
        time.sleep(0.1)
        _, again = reader.scan()
        assert schedstat_ns(parent.pid) == asleep and again[parent_key] == tasks[parent_key]
        child_seen = again[child_key]
        child_total = int(parent.stdout.readline())  # reaped now
        # Reaping ran in the parent (wait4): its schedstat moved, so the first scan reads its stat.
        assert schedstat_ns(parent.pid) > asleep
        _, after = reader.scan()
        exited = reader.exited().get(parent_key, 0)
        assert child_key not in after
        # The parent has what the child used after we last saw it, no more (cutime is rounded down).
        assert child_total - child_seen - 2 * TICK_NS <= exited <= child_total - child_seen
    finally:
        parent.stdin.close()
        parent.wait()
        reader.close()


@pytest.fixture
def sampler(tmp_path):
    tree = PowercapTree(tmp_path / "powercap")
    sampler = tree.sampler()
    yield sampler, tree
    sampler.close()


def test_a_shell_loop_of_short_children(sampler):
    marker = f"wpmark-{uuid.uuid4().hex[:8]}"
    found = attributed_while(*sampler, shell_loop(3, 50, marker), marker)
    share = found["attributed_ns"] / found["own_ns"]
    assert 0.9 <= share <= 1.1, found
    assert found["exited_ns"] > 0.5 * found["attributed_ns"], found  # most children lived less than a step


@pytest.mark.skipif(compiler() is None, reason="no C compiler on this machine")
def test_a_parallel_make_of_small_c_files(sampler, tmp_path):
    project = tmp_path / f"wpmark-{uuid.uuid4().hex[:8]}"
    make_project(project, 60)
    found = attributed_while(*sampler, make_rounds(project, 2), project.name)
    share = found["attributed_ns"] / found["own_ns"]
    assert 0.9 <= share <= 1.1, found


# A subreaper whose grandchild is orphaned when its parent (a shell) exits: the grandchild burns
# `seconds` of CPU, the subreaper reaps it and prints its CPU time (ns), then sleeps until stdin closes.
_SUBREAPER = """
import ctypes, os, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
burn = "import time\\nend = time.process_time() + %s\\nwhile time.process_time() < end: pass" % sys.argv[1]
shell = subprocess.Popen(["sh", "-c", 'python3 -c "$0" & echo $!; sleep 0.3', burn], stdout=subprocess.PIPE, text=True)
print(shell.pid, shell.stdout.readline().strip(), flush=True)
def cpu(usage):
    return round((usage.ru_utime + usage.ru_stime) * 1e9)
shell_total = cpu(os.wait4(shell.pid, 0)[2])  # the shell's and its `sleep`'s
total = 0
while True:
    try:
        _, _, usage = os.wait4(-1, 0)
    except ChildProcessError:
        break
    total += cpu(usage)
print(total, shell_total, flush=True)
sys.stdin.read()
"""


def test_an_orphan_is_reaped_by_its_subreaper_and_counted_once():
    reader = ProcfsReader()
    reaper = subprocess.Popen(
        [sys.executable, "-c", _SUBREAPER, "0.5"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        shell_pid, orphan_pid = map(int, reaper.stdout.readline().split())
        _, tasks = reader.scan()
        pids = {key_pid(k): k for k in tasks}
        assert shell_pid in pids and orphan_pid in pids
        # What was seen of the shell and of its `sleep` (if it was forked already): the rest of their
        # time, reaped by the subreaper with the shell's, is the subreaper's exited descendants' too.
        shell_seen = sum(
            tasks[pids[p]] for p in reader.descendants(shell_pid) | {shell_pid} if p != orphan_pid
        )
        # The shell exits (after 0.3 s): the orphan now belongs to the subreaper.
        wait_for(lambda: int(stat_fields(orphan_pid)[1]) == reaper.pid, 10, "the orphan to be reparented")
        _, tasks = reader.scan()
        orphan_seen = tasks[pids[orphan_pid]]
        # The orphan's CPU time, and the shell's with its `sleep`'s, each as its reaper (the subreaper) got it.
        total, shell_total = map(int, reaper.stdout.readline().split())
        reader.scan()
        exited = reader.exited().get(pids[reaper.pid], 0)
        unseen = total - orphan_seen + shell_total - shell_seen
        assert unseen - 2 * TICK_NS <= exited <= unseen
    finally:
        reaper.stdin.close()
        reaper.wait()
        reader.close()
