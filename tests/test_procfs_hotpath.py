"""The procfs hot path: sleepers cost one schedstat read, stat-only mode, no descriptors left, no schedstat."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.support import agents
from tests.support.paths import REPO
from tests.support.processes import child, schedstat_ns
from tests.support.procfs import write_process, write_stat
from tests.support.waiting import wait_for
from wattprobe.sources.process_events import open_fork_events
from wattprobe.sources.procfs import TICK_NS, ProcfsReader, key_pid
from wattprobe.sources.procfs.files import _NO_IO
from wattprobe.sources.procfs.scan import clocks_readable


def cpu_by_pid(tasks: dict[int, int]) -> dict[int, int]:
    return {key_pid(k): v for k, v in tasks.items()}


def test_a_sleeper_is_not_reread_and_a_runner_is(tmp_path):
    write_stat(tmp_path)
    write_process(tmp_path, 42, ticks=(100, 50), sched_ns=1_500_000_000)
    reader = ProcfsReader(str(tmp_path))
    reader.scan()
    key = next(iter(reader.scan()[1]))
    # stat changes but schedstat does not: the process did not run, its stat is not read again.
    write_process(tmp_path, 42, comm="renamed", ticks=(100, 50), sched_ns=1_500_000_000)
    assert cpu_by_pid(reader.scan()[1]) == {42: 1_500_000_000}
    assert reader.process(key)[0].comm == "worker"
    # It ran: both are read, schedstat's nanoseconds win, the exec is noticed.
    write_process(tmp_path, 42, comm="renamed", ticks=(101, 50), sched_ns=1_512_345_678)
    assert cpu_by_pid(reader.scan()[1]) == {42: 1_512_345_678}
    assert reader.process(key)[0].comm == "renamed"
    # It starts threads: from now on stat's ticks (all threads), added to what we had.
    write_process(tmp_path, 42, comm="renamed", ticks=(111, 60), threads=4, sched_ns=1_520_000_000)
    assert cpu_by_pid(reader.scan()[1]) == {42: 1_512_345_678 + 20 * TICK_NS}
    write_process(tmp_path, 42, comm="renamed", ticks=(121, 60), threads=4, sched_ns=1_520_000_000)
    assert cpu_by_pid(reader.scan()[1]) == {42: 1_512_345_678 + 30 * TICK_NS}
    reader.close()


def test_stat_only_mode_counts_clock_ticks(tmp_path):
    write_stat(tmp_path)
    write_process(tmp_path, 42, ticks=(100, 50), sched_ns=1_503_000_000)
    reader = ProcfsReader(str(tmp_path), schedstat=False)
    assert cpu_by_pid(reader.scan()[1]) == {42: 150 * TICK_NS}
    write_process(tmp_path, 42, ticks=(103, 50), sched_ns=1_531_000_000)
    assert cpu_by_pid(reader.scan()[1]) == {42: 153 * TICK_NS}
    reader.close()


def test_without_schedstat_files_stat_ticks_are_used(tmp_path):
    write_stat(tmp_path)
    write_process(tmp_path, 42, ticks=(100, 50))
    (tmp_path / "42" / "schedstat").unlink()
    reader = ProcfsReader(str(tmp_path))
    first = reader.scan()[1]
    assert cpu_by_pid(first) == {42: 150 * TICK_NS}
    write_process(tmp_path, 42, ticks=(100, 60))
    (tmp_path / "42" / "schedstat").unlink()
    second = reader.scan()[1]
    assert second == {next(iter(first)): 160 * TICK_NS}  # the same process, not seen anew
    reader.close()


_OUT_OF_FDS = """
import os, resource, shutil, sys
from pathlib import Path
from tests.support.processes import open_files
from tests.support.procfs import write_process, write_stat
from tests.support.waiting import wait_for
from wattprobe.sources.procfs import FD_RESERVE, TICK_NS, ProcfsReader, key_pid

root = Path(sys.argv[1])
write_stat(root)
for pid in range(100, 110):
    write_process(root, pid, ticks=(pid, 0), sched_ns=pid * TICK_NS)
# A budget of 5 kept descriptors: 2 processes keep both of theirs, the others are read by path.
resource.setrlimit(resource.RLIMIT_NOFILE, (FD_RESERVE + 5, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
reader = ProcfsReader(str(root))
first = reader.scan()[1]
held = list(open_files(root).values())
held.remove(str(root / "stat"))  # the machine's, kept open beside the processes' budget
assert len(held) == 5, held
assert sorted(first.values()) == [pid * TICK_NS for pid in range(100, 110)], first
# A process read by path exits and a new process gets its pid before the next scan.
victim = min(set(range(100, 110)) - {int(path.split("/")[-2]) for path in held})
shutil.rmtree(root / str(victim))
write_process(root, victim, comm="newcomer", starttime=9999, ticks=(1, 0), sched_ns=TICK_NS)
second = reader.scan()[1]
assert len(second) == 10, second
new_key = next(k for k in second if key_pid(k) == victim)
assert new_key not in first and second[new_key] == TICK_NS, second
assert reader.process(new_key)[0].comm == "newcomer"
"""


def test_out_of_descriptors_reads_by_path_and_tells_a_reused_pid(tmp_path):
    # In a fresh interpreter: the limit applies to every descriptor the process holds.
    result = agents.run([sys.executable, "-c", _OUT_OF_FDS, str(tmp_path)])
    assert result.returncode == 0, result.stderr


def test_the_agent_lifts_its_soft_fd_limit():
    code = (
        "import resource\n"
        "from wattprobe.sources.procfs import raise_fd_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))\n"
        "raise_fd_limit()\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard) or hard == resource.RLIM_INFINITY)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


def test_an_unreadable_io_file_is_tried_once_per_process_and_exec(tmp_path):
    """An agent without privileges is refused every other user's /proc/PID/io: asking again at every
    tick cost a failed open per consumer; it is asked again only after an exec (new credentials)."""
    write_stat(tmp_path)
    write_process(tmp_path, 42, sched_ns=1_000_000_000)
    reader = ProcfsReader(str(tmp_path))
    key = next(iter(reader.scan()[1]))
    assert reader.process(key)[3] is None  # no io file: not readable
    (tmp_path / "42" / "io").write_text("rchar: 1\nwchar: 2\nread_bytes: 4096\nwrite_bytes: 8192\n")
    assert reader.process(key)[3] is None  # not asked again for the same program
    write_process(tmp_path, 42, comm="exec'd", sched_ns=1_100_000_000)
    reader.scan()
    io = reader.process(key)[3]
    assert io is not None and (io.read_bytes, io.write_bytes) == (4096, 8192)
    reader.close()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root, to drop a capability"
)
def test_an_io_file_refused_at_the_read_is_tried_once_per_process_and_exec():
    """The kernel checks ptrace access when /proc/PID/io is read, not when it is opened: an agent without
    CAP_SYS_PTRACE opens a process's io with more capabilities than its own, and is refused each read.
    It is asked once, and its descriptor closed."""
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    code = (
        "import os, sys\n"
        "from wattprobe.sources.procfs import ProcfsReader, key_pid\n"
        "reader = ProcfsReader()\n"
        "key = next(k for k in reader.scan()[1] if key_pid(k) == int(sys.argv[1]))\n"
        "fds = len(os.listdir('/proc/self/fd'))\n"
        "print(reader.process(key)[3], len(os.listdir('/proc/self/fd')) - fds, reader._by_key[key].io_fd)\n"
        "print(reader.process(key)[3], len(os.listdir('/proc/self/fd')) - fds, reader._by_key[key].io_fd)\n"
        "own = next(k for k in reader._by_key if key_pid(k) == os.getpid())\n"
        "print(reader.process(own)[3] is not None)\n"
    )
    try:
        result = subprocess.run(
            ["setpriv", "--bounding-set=-sys_ptrace", sys.executable, "-c", code, str(target.pid)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        target.kill()
        target.wait()
    assert result.returncode == 0, result.stderr
    first, second, own = result.stdout.splitlines()
    assert first == second == f"None 0 {_NO_IO}"  # opened, refused, closed: no descriptor kept
    assert own == "True"  # its own io still read


def test_proc_is_listed_again_only_after_a_fork(tmp_path):
    write_stat(tmp_path, forks=500)
    write_process(tmp_path, 42, ticks=(100, 50), sched_ns=1_500_000_000)
    reader = ProcfsReader(str(tmp_path))
    reader.scan()
    assert reader.listings == 1
    # A process appears without a fork counted (which no kernel does): the listing is not read, so
    # it is not seen; a known one that ran is read all the same.
    write_process(tmp_path, 43, ticks=(10, 0), sched_ns=100_000_000)
    write_process(tmp_path, 42, ticks=(101, 50), sched_ns=1_512_000_000)
    assert cpu_by_pid(reader.scan()[1]) == {42: 1_512_000_000}
    assert reader.listings == 1
    # A fork: /proc is listed again and the new process found.
    write_stat(tmp_path, forks=501)
    assert cpu_by_pid(reader.scan()[1]) == {42: 1_512_000_000, 43: 100_000_000}
    assert reader.listings == 2
    reader.close()


def test_without_a_fork_counter_every_scan_lists(tmp_path):
    write_stat(tmp_path)  # no `processes` line, as in an old or synthetic tree
    write_process(tmp_path, 42, ticks=(100, 50), sched_ns=1_500_000_000)
    reader = ProcfsReader(str(tmp_path))
    reader.scan()
    write_process(tmp_path, 43, ticks=(10, 0), sched_ns=100_000_000)
    assert cpu_by_pid(reader.scan()[1]) == {42: 1_500_000_000, 43: 100_000_000}
    assert reader.listings == 2
    reader.close()


def test_on_the_real_proc_a_new_process_is_found_from_its_fork_event():
    """Where the kernel tells this process of forks: a process born since the last scan is found from
    its fork event, its CPU time from its clock, and /proc is not listed; events lost are said, and
    that scan lists /proc."""
    reader = ProcfsReader()
    if reader.events is None:
        reader.close()
        pytest.skip(
            "the kernel gives no process events to this test (not root, or not in the initial namespaces)"
        )
    try:
        reader.scan()
        listed = reader.listings
        with child() as burner:
            wait_for(
                lambda: cpu_by_pid(reader.scan()[1]).get(burner.pid, 0) > 50_000_000, 10, "the burner seen"
            )
            assert reader.listings == listed
            assert cpu_by_pid(reader.scan()[1])[burner.pid] <= schedstat_ns(burner.pid)
        reader.events.close()
        reader.events = open_fork_events(buffer_bytes=16384)  # room for tens of events, not for hundreds
        assert reader.events is not None
        for _ in range(50):
            subprocess.run(["true"], check=True)
        with child(busy=False) as sleeper:
            assert sleeper.pid in cpu_by_pid(reader.scan()[1])
            assert reader.listings == listed + 1
    finally:
        reader.close()


def test_a_process_that_exits_between_listings_leaves_the_scan():
    """On the real /proc: a known process that exits is gone from the next scan, listed or not (its
    kept descriptors answer ESRCH)."""
    reader = ProcfsReader()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        wait_for(lambda: any(key_pid(k) == child.pid for k in reader.scan()[1]), 10, "the child seen")
    finally:
        child.kill()
        child.wait()
    assert child.pid not in cpu_by_pid(reader.scan()[1])
    reader.close()


# Threads that burn 25 ms of CPU each and end, a few at a time, then the process reports its own CPU
# clock and sleeps: its CPU time is mostly that of threads nobody saw alive.
_SHORT_THREADS = """
import sys, threading, time
def burn():
    end = time.thread_time() + 0.025
    while time.thread_time() < end:
        pass
for _ in range(8):
    threads = [threading.Thread(target=burn) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
print(time.process_time_ns(), flush=True)
sys.stdin.read()
"""


def test_a_process_s_ended_threads_count_to_the_ns_on_the_real_proc():
    """On the agent's own /proc, a process's CPU time is its CPU clock: every thread's, the ended ones
    included, exact (stat's remainder for them was up to a few clock ticks short)."""
    reader = ProcfsReader()
    reader.scan()
    with subprocess.Popen(
        [sys.executable, "-c", _SHORT_THREADS], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as child:
        try:
            reader.scan()  # seen while its threads come and go
            assert child.stdout is not None
            own_ns = int(child.stdout.readline())
            time.sleep(0.05)  # asleep in read() from here
            seen = cpu_by_pid(reader.scan()[1])[child.pid]
        finally:
            child.kill()
    assert own_ns >= 24 * 25_000_000
    assert 0 <= seen - own_ns < 2_000_000  # what it ran between its report and its read(): µs
    reader.close()


def test_clocks_are_read_by_pid_only_where_the_pids_are_the_agent_s(tmp_path):
    """The agent's own /proc (or a root whose `self` is the agent, as with hostPID): CPU clocks by
    pid. Another namespace's procfs (its `self` another pid) or a synthetic tree: files."""
    assert clocks_readable("/proc")
    assert not clocks_readable(str(tmp_path))
    (tmp_path / "self").symlink_to(str(os.getpid() + 1))
    assert not clocks_readable(str(tmp_path))
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "self").symlink_to(str(os.getpid()))
    assert clocks_readable(str(ours))


def test_the_machines_stat_is_read_whole_through_its_kept_descriptor_as_it_grows(tmp_path):
    """/proc/stat is read by pread on a descriptor kept open: a read gives it whole, from a few CPUs'
    lines to thousands (longer than any buffer tried first), and as it is now, not as first read."""
    write_stat(tmp_path, cpus=2, forks=7)
    reader = ProcfsReader(str(tmp_path))
    assert reader.scan()[0].n_cpus == 2
    write_stat(tmp_path, busy=9000, cpus=4096, forks=8)  # ~200 KB
    machine = reader.scan()[0]
    assert (machine.n_cpus, machine.forks, machine.busy) == (4096, 8, 9000)
    write_stat(tmp_path, busy=9500, cpus=3, forks=9)
    machine = reader.scan()[0]
    assert (machine.n_cpus, machine.forks, machine.busy) == (3, 9, 9500)
    reader.close()
