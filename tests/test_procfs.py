"""The procfs reader: cgroup and container parsing, a synthetic /proc tree, and the real one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.support.procfs import CONTAINER_ID as ID
from tests.support.procfs import DOCKER_CGROUP as DOCKER
from tests.support.procfs import ToldForks, rewrite, write_process, write_stat
from tests.support.waiting import wait_for
from tests.support.workloads import BusyChildren
from wattprobe.sources.identity.containers import parse_cgroup
from wattprobe.sources.procfs import TICK_NS, ProcfsReader, key_pid, read_machine_cpu

POD = "0f6c3c7e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"


@pytest.mark.parametrize(
    ("text", "cgroup", "runtime", "scheduler", "pod"),
    [
        # docker, cgroup v1, cgroupfs driver
        (
            f"12:cpu,cpuacct:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n",
            f"/docker/{ID}",
            "docker",
            "docker",
            None,
        ),
        # docker, cgroup v2, systemd driver
        (
            f"0::/system.slice/docker-{ID}.scope\n",
            f"/system.slice/docker-{ID}.scope",
            "docker",
            "docker",
            None,
        ),
        # kubernetes + containerd, v2, systemd driver
        (
            f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice/"
            f"cri-containerd-{ID}.scope\n",
            None,
            "containerd",
            "kubernetes",
            POD,
        ),
        # kubernetes (k3s), v1, cgroupfs driver: a bare id under the pod
        (
            f"4:cpu,cpuacct:/kubepods/besteffort/pod{POD}/{ID}\n",
            f"/kubepods/besteffort/pod{POD}/{ID}",
            None,
            "kubernetes",
            POD,
        ),
        # CRI-O, v2
        (
            f"0::/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/crio-{ID}.scope\n",
            None,
            "cri-o",
            "kubernetes",
            POD,
        ),
        # podman, v2, rootless under a user slice
        (
            f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n",
            None,
            "podman",
            "podman",
            None,
        ),
        # podman, v1, cgroupfs
        (
            f"3:cpu,cpuacct:/libpod_parent/libpod-{ID}\n",
            f"/libpod_parent/libpod-{ID}",
            "podman",
            "podman",
            None,
        ),
        # nerdctl (containerd), v2
        (f"0::/system.slice/nerdctl-{ID}.scope\n", None, "containerd", "containerd", None),
    ],
)
def test_container_ids_of_each_runtime(text, cgroup, runtime, scheduler, pod):
    path, container = parse_cgroup(text)
    assert container is not None
    assert container.id == ID
    assert (container.runtime, container.scheduler, container.pod_uid) == (runtime, scheduler, pod)
    assert path == (cgroup or text.strip().split(":", 2)[2])


def test_podman_conmon_is_not_the_container():
    assert parse_cgroup(f"0::/machine.slice/libpod-conmon-{ID}.scope\n")[1] is None


@pytest.mark.parametrize(
    ("text", "cgroup"),
    [
        ("0::/user.slice/user-1000.slice/session-2.scope\n", "/user.slice/user-1000.slice/session-2.scope"),
        ("0::/\n", "/"),
        # hybrid v1 + v2: the cpu controller's path when the unified one is the root
        (
            "12:cpu,cpuacct:/system.slice/nginx.service\n1:name=systemd:/system.slice/nginx.service\n0::/\n",
            "/system.slice/nginx.service",
        ),
        # only the memory controller says where the process is
        ("4:memory:/process_api/abc\n3:cpuset:/\n0::/\n", "/process_api/abc"),
    ],
)
def test_cgroup_paths_without_containers(text, cgroup):
    assert parse_cgroup(text) == (cgroup, None)


def test_synthetic_tree(tmp_path):
    write_stat(tmp_path, cpus=4)
    write_process(tmp_path, 42, ticks=(100, 50), sched_ns=1_503_000_000, starttime=1000)
    write_process(tmp_path, 43, threads=8, ticks=(700, 300), starttime=2000)
    (tmp_path / "44").mkdir()  # vanished between listing and reading: skipped quietly
    (tmp_path / "self").mkdir()
    reader = ProcfsReader(str(tmp_path))
    machine, tasks = reader.scan()
    assert machine.n_cpus == 4 and machine.busy == 1000 and machine.idle == 3000
    assert sorted(key_pid(k) for k in tasks) == [42, 43]
    by_pid = {key_pid(k): (k, v) for k, v in tasks.items()}
    assert by_pid[42][1] == 1_503_000_000  # single-threaded: schedstat's nanoseconds
    assert by_pid[43][1] == 1000 * TICK_NS  # multi-threaded: stat's ticks, all threads
    info, rss, vsize, _ = reader.process(by_pid[42][0])
    assert (info.pid, info.comm, info.exe, info.cmdline) == (
        42,
        "worker",
        "/usr/bin/worker",
        "/usr/bin/worker --fast",
    )
    assert info.container.id == ID and info.container.runtime == "docker"
    assert rss == 250 * os.sysconf("SC_PAGE_SIZE") and vsize == 4096000

    # The next tick: the file changes in place, as /proc does.
    write_process(tmp_path, 42, ticks=(110, 50), sched_ns=1_603_000_000, starttime=1000)
    _, tasks = reader.scan()
    assert tasks[by_pid[42][0]] == 1_603_000_000

    # pid 42 ends and its pid is reused by another process: a new key, a fresh CPU count.
    shutil.rmtree(tmp_path / "42")
    _, tasks = reader.scan()
    assert 42 not in {key_pid(k) for k in tasks}
    write_process(tmp_path, 42, comm="other", starttime=5000, ticks=(1, 1))
    _, tasks = reader.scan()
    new_key = next(k for k in tasks if key_pid(k) == 42)
    assert new_key != by_pid[42][0] and tasks[new_key] == 2 * TICK_NS
    assert reader.process(new_key)[0].comm == "other"
    assert reader.process(by_pid[42][0]) is None
    reader.close()


KTHREAD = 0x00200000  # PF_KTHREAD, in a stat's flags


def kernel_thread(root, pid: int, comm: str, sched_ns: int, cticks: tuple[int, int] = (0, 0)) -> None:
    write_process(root, pid, comm=comm, flags=KTHREAD, ppid=2, cmdline=b"", sched_ns=sched_ns, cticks=cticks)


def test_a_kernel_thread_goes_by_its_own_name_and_a_new_one_is_no_exec(tmp_path):
    """A kworker's name ends with the work queue it serves or last served, which changes as it runs: it
    goes by its own name (the queue a rescuer serves is its own); a kernel thread that takes a new name
    did not exec: nothing else is read again. A user process's name is its own, and a new one is an exec."""
    write_stat(tmp_path)
    names = {
        40: "kworker/0:1-events",
        42: "kworker/u4:2+flush-8:0",
        43: "kworker/R-mm_percpu_wq",
        44: "ksoftirqd/0",
    }
    for pid, comm in names.items():
        kernel_thread(tmp_path, pid, comm, sched_ns=10**9)
    write_process(tmp_path, 41, comm="kworker/0:1-events", ppid=2, cmdline=b"", sched_ns=10**9)
    reader = ProcfsReader(str(tmp_path))
    keys = {key_pid(k): k for k in reader.scan()[1]}
    assert {pid: reader.process(keys[pid])[0].comm for pid in (40, 41, 42, 43, 44)} == {
        40: "kworker/0:1",
        41: "kworker/0:1-events",
        42: "kworker/u4:2",
        43: "kworker/R-mm_percpu_wq",
        44: "ksoftirqd/0",
    }
    kworker = reader.process(keys[40])[0]
    for comm, sched_ns in (("kworker/0:1-mm_percpu_wq", 2 * 10**9), ("kworker/dying", 3 * 10**9)):
        for pid, flags in ((40, KTHREAD), (41, 0)):
            write_process(
                tmp_path, pid, comm=comm, flags=flags, ppid=2, cmdline=b"", sched_ns=sched_ns,
                cgroup="0::/other.slice\n",
            )  # fmt: skip
        reader.scan()
        execed = reader.process(keys[41])[0]
        assert (execed.comm, execed.cgroup) == (comm, "/other.slice")
    assert reader.process(keys[40])[0] is not kworker  # renamed...
    assert reader.process(keys[40])[0].comm == "kworker/dying"
    assert reader.process(keys[40])[0].cgroup == DOCKER  # ...and nothing read again
    reader.close()


def test_a_kernel_thread_that_ran_is_read_whole_only_when_it_may_have_reaped_a_child(tmp_path):
    """While no process was made since the last scan, a kernel thread with no child we know of can
    have changed only its run time (its clock says it). A kworker reaps the user-mode helpers it
    starts: a helper born before the last scan is known, one born since made a fork; either way the
    time the kworker's `stat` says it reaped is counted."""
    write_stat(tmp_path, forks=100)
    kernel_thread(tmp_path, 40, "kworker/0:1-events", sched_ns=10**9)
    kernel_thread(tmp_path, 50, "kworker/1:0-events", sched_ns=10**9)
    write_process(tmp_path, 41, comm="modprobe", ppid=40, sched_ns=3 * 10**8)  # a helper 40 started
    reader = ProcfsReader(str(tmp_path))
    keys = {key_pid(k): k for k in reader.scan()[1]}

    # Nothing forked. 50 ran; 40 ran and reaped its helper, which ran 0.1 s more before it ended (its
    # files, kept open, read nothing, where the kernel answers ESRCH).
    for name in ("stat", "schedstat"):
        rewrite(tmp_path / "41" / name, b"")
    shutil.rmtree(tmp_path / "41")
    kernel_thread(tmp_path, 40, "kworker/0:1-kblockd", sched_ns=2 * 10**9, cticks=(40, 0))
    kernel_thread(tmp_path, 50, "kworker/1:0-mm_percpu_wq", sched_ns=3 * 10**9)
    _, tasks = reader.scan()
    assert tasks[keys[40]] == 2 * 10**9 + 10**8
    assert tasks[keys[50]] == 3 * 10**9
    assert reader.process(keys[50])[0].comm == "kworker/1:0"

    # A helper born and reaped between two scans: only the fork counter tells.
    write_stat(tmp_path, forks=101)
    kernel_thread(tmp_path, 50, "kworker/1:0-events", sched_ns=4 * 10**9, cticks=(20, 0))
    _, tasks = reader.scan()
    assert tasks[keys[50]] == 4 * 10**9 + 20 * TICK_NS
    reader.close()


def test_told_forks_name_new_processes_and_the_kernel_threads_that_may_have_reaped(tmp_path):
    """Where the kernel tells of each fork, /proc is not listed after one: the new processes are those
    it told of, and a kernel thread that ran has its `stat` read only if one was its child. Where
    events were lost, /proc is listed and every kernel thread that ran is read."""
    write_stat(tmp_path, forks=100)
    kernel_thread(tmp_path, 50, "kworker/1:0-events", sched_ns=10**9)
    kernel_thread(tmp_path, 60, "kworker/0:2-events", sched_ns=10**9)
    reader = ProcfsReader(str(tmp_path))
    reader.events = told = ToldForks()  # type: ignore[assignment]
    reader.scan()
    assert reader.listings == 1

    # Two forks: 50 started a helper that ended and was reaped, a shell started 70. 60 ran, and its
    # `stat` is not read: were it read, its empty file would say it is gone.
    write_stat(tmp_path, forks=102)
    told.tell(61, parent=50)
    told.tell(70, parent=1)
    write_process(tmp_path, 70, comm="sh", ppid=1, sched_ns=2 * 10**6)
    write_process(tmp_path, 71, comm="untold", ppid=1, sched_ns=10**6)  # no fork said it: not seen
    kernel_thread(tmp_path, 50, "kworker/1:0-events", sched_ns=2 * 10**9, cticks=(20, 0))
    rewrite(tmp_path / "60" / "stat", b"")
    rewrite(tmp_path / "60" / "schedstat", f"{3 * 10**9} 0 1\n")
    tasks = {key_pid(k): ns for k, ns in reader.scan()[1].items()}
    assert reader.listings == 1
    assert tasks == {50: 2 * 10**9 + 20 * TICK_NS, 60: 3 * 10**9, 70: 2 * 10**6}

    # Events lost: /proc is listed (71 is found) and 60, which ran again, is read (and gone).
    write_stat(tmp_path, forks=103)
    told.lose()
    rewrite(tmp_path / "60" / "schedstat", f"{4 * 10**9} 0 1\n")
    tasks = {key_pid(k): ns for k, ns in reader.scan()[1].items()}
    assert reader.listings == 2
    assert set(tasks) == {50, 70, 71}
    reader.close()
    assert told.closed


def test_real_process_cpu_time_is_precise():
    reader = ProcfsReader()
    reader.scan()
    with BusyChildren([1.0], seconds=0.35) as child:  # burns 0.35 s, then waits
        (own_ns,) = child.finished()
        _, tasks = reader.scan()
        key = next(k for k in tasks if key_pid(k) == child.pids[0])
        # schedstat is exact to the nanosecond; stat ticks alone would be off by up to 20 ms.
        assert abs(tasks[key] - own_ns) < 5_000_000
        info = reader.process(key)[0]
        assert info.cmdline == " ".join(child.children[0].args)  # argv joined, newlines and all
        assert info.exe == os.path.realpath(sys.executable)
    _, tasks = reader.scan()
    assert child.pids[0] not in {key_pid(k) for k in tasks}


def test_exec_is_noticed():
    reader = ProcfsReader()
    child = subprocess.Popen(["sh", "-c", "read x; exec sleep 30"], stdin=subprocess.PIPE)
    try:
        _, tasks = reader.scan()
        key = next(k for k in tasks if key_pid(k) == child.pid)
        assert reader.process(key)[0].comm == "sh"
        child.stdin.write(b"go\n")
        child.stdin.flush()

        def execed() -> bool:
            reader.scan()
            return reader.process(key)[0].comm == "sleep"

        wait_for(execed, 5, "the exec to be noticed", every_s=0.02)
        assert reader.process(key)[0].cmdline == "sleep 30"
    finally:
        child.kill()
        child.wait()


def test_machine_cpu_of_this_machine():
    machine = read_machine_cpu()
    assert machine.n_cpus == os.cpu_count()
    assert machine.busy > 0 and machine.idle > 0
