"""The procfs reader: cgroup and container parsing, a synthetic /proc tree, and the real one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.support.procfs import CONTAINER_ID as ID
from tests.support.procfs import DOCKER_CGROUP as DOCKER
from tests.support.procfs import write_process, write_stat
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


def test_a_kernel_thread_that_changes_its_name_did_not_exec(tmp_path):
    """A kworker's name says the work queue it serves and changes as it runs: its name is updated and
    nothing else is read again; the same change in a user process is an exec, read again whole."""
    write_stat(tmp_path)
    kthread, user = 0x00200000, 0
    for pid, flags in ((40, kthread), (41, user)):
        write_process(
            tmp_path, pid, comm="kworker/0:1-events", flags=flags, ppid=2, cmdline=b"", sched_ns=10**9
        )
    reader = ProcfsReader(str(tmp_path))
    keys = {key_pid(k): k for k in reader.scan()[1]}
    assert {pid: reader.process(keys[pid])[0].cgroup for pid in (40, 41)} == {40: DOCKER, 41: DOCKER}
    for pid, flags in ((40, kthread), (41, user)):
        write_process(
            tmp_path, pid, comm="kworker/0:1-mm_percpu_wq", flags=flags, ppid=2, cmdline=b"", sched_ns=2 * 10**9,
            cgroup="0::/other.slice\n",
        )  # fmt: skip
    reader.scan()
    kworker, execed = reader.process(keys[40])[0], reader.process(keys[41])[0]
    assert (kworker.comm, kworker.cgroup) == ("kworker/0:1-mm_percpu_wq", DOCKER)  # renamed, not re-read
    assert (execed.comm, execed.cgroup) == ("kworker/0:1-mm_percpu_wq", "/other.slice")
    seen = {kworker.comm: kworker}
    for n in range(3, 13):  # back and forth between names: each name's facts are kept, a few of them
        comm = "kworker/0:1-events" if n % 2 else f"kworker/0:1-queue{n}"
        write_process(
            tmp_path, 40, comm=comm, flags=kthread, ppid=2, cmdline=b"", sched_ns=n * 10**9, cgroup="0::/x\n"
        )
        reader.scan()
        renamed = reader.process(keys[40])[0]
        assert (renamed.comm, renamed.cgroup, renamed.pid) == (comm, DOCKER, 40)
        assert seen.setdefault(comm, renamed) is renamed  # a name seen before: its facts, not a copy
    reader.close()


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
