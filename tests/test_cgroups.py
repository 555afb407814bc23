"""Cgroup figures from the cgroups' own counters: on a synthetic cgroupfs, and in a real cgroup where one can be made."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cgroups import new_cgroup, usage_ns
from tests.support.powercap_tree import PowercapTree
from tests.support.procfs import CONTAINER_ID as ID
from tests.support.procfs import DOCKER_CGROUP as DOCKER
from tests.support.procfs import write_process, write_stat, write_times
from tests.support.waiting import wait_for
from wattprobe.core.model import Frame, container_cgroup
from wattprobe.sources.cgroupfs import CgroupReader
from wattprobe.sources.identity.containers import parse_cgroup
from wattprobe.sources.procfs import ProcfsReader

MS = 1_000_000


def write_counter(directory: Path, ns: int, *, v2: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if v2:
        (directory / "cpu.stat").write_text(f"usage_usec {ns // 1000}\nuser_usec 0\nsystem_usec 0\n")
    else:
        (directory / "cpuacct.usage").write_text(f"{ns}\n")


def test_the_counter_of_a_process_cgroup_and_of_its_container(tmp_path):
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("\n")
    write_counter(tmp_path / "cpuacct", 0, v2=False)
    reader = CgroupReader(str(tmp_path))
    assert reader.v2 == f"{tmp_path}/unified" and reader.v1 == f"{tmp_path}/cpuacct"
    pod = f"/kubepods/pod1234/{ID}/sidecar"
    text = f"4:cpuacct:{pod}\n1:name=systemd:{pod}\n0::/\n"
    cgroup, container = parse_cgroup(text)
    assert container_cgroup(cgroup, container) == f"/kubepods/pod1234/{ID}"
    # cgroup v1: the cpuacct hierarchy carries the process's cgroup.
    paths = reader.counters_for(text, cgroup, container_cgroup(cgroup, container))
    assert paths == (pod, f"/kubepods/pod1234/{ID}")
    write_counter(tmp_path / "cpuacct" / pod.lstrip("/"), 123_456_789, v2=False)
    write_counter(tmp_path / "cpuacct" / f"kubepods/pod1234/{ID}", 987_654_321, v2=False)
    reader.track(paths)
    reader.read()
    assert reader.usage() == {pod: 123_456_789, f"/kubepods/pod1234/{ID}": 987_654_321}
    # cgroup v2, whose counter is in µs; the root is the machine, not a group.
    assert reader.counters_for("0::/\n", "/", None) == ()
    text = "0::/system.slice/nginx.service\n"
    assert reader.counters_for(text, "/system.slice/nginx.service", None) == ("/system.slice/nginx.service",)
    write_counter(tmp_path / "unified" / "system.slice" / "nginx.service", 42_000_000)
    reader.track(("/system.slice/nginx.service",))
    reader.untrack(paths)
    reader.read()
    assert reader.usage() == {"/system.slice/nginx.service": 42_000_000}
    # A cgroup outside this namespace's view of the tree has no counter here.
    assert (
        reader.counters_for("0::/../../system.slice/x.service\n", "/../../system.slice/x.service", None) == ()
    )
    # A cgroup that was removed is left out, not read as 0. The reader keeps the file open: the kernel
    # then fails its reads (ENODEV); a regular file that no longer holds a counter stands for that.
    (tmp_path / "unified" / "system.slice" / "nginx.service" / "cpu.stat").write_text("")
    reader.read()
    assert reader.usage() == {}
    reader.close()


def test_a_container_figure_includes_its_exited_processes(tmp_path):
    proc, cgroupfs = tmp_path / "proc", tmp_path / "cgroup"
    proc.mkdir()
    write_stat(proc, cpus=4)
    (cgroupfs).mkdir()
    (cgroupfs / "cgroup.controllers").write_text("cpu\n")
    write_counter(cgroupfs / DOCKER.lstrip("/"), 5_000 * MS)
    write_process(proc, 42, ticks=(100, 0), sched_ns=1_000 * MS, cgroup=f"0::{DOCKER}\n")
    write_process(proc, 43, ticks=(100, 0), sched_ns=1_000 * MS, cgroup="0::/system.slice/cron.service\n")
    tree = PowercapTree(tmp_path / "powercap")
    sampler = tree.sampler(ProcfsReader(str(proc), cgroupfs_root=str(cgroupfs)))  # on the tree's clock
    sampler.tick()
    frames = []
    for step in range(1, 4):
        tree.advance(0.05)
        # The container's process ran 10 ms a step; its short-lived processes 30 ms more, which
        # only its cgroup's counter knows (their parent is outside it). cron ran 20 ms.
        write_times(proc, 42, ticks=(100 + step, 0), sched_ns=(1_000 + 10 * step) * MS)
        write_times(proc, 43, ticks=(100 + 2 * step, 0), sched_ns=(1_000 + 20 * step) * MS)
        write_counter(cgroupfs / DOCKER.lstrip("/"), (5_000 + 40 * step) * MS)
        frames.append(sampler.tick())
    sampler.close()
    # First seen in the first window: its counter is read from the next scan on, and compared
    # from the window after that. Until then the figure is its processes' (and says so).
    for frame in frames[:2]:
        assert {g.key: g.source for g in frame.cgroups}[DOCKER] == "processes"
    last = frames[2]
    groups = {g.key: g for g in last.cgroups}
    process = next(c for c in last.consumers if c.info.pid == 42)
    assert groups[DOCKER].source == "cgroup" and groups["/system.slice/cron.service"].source == "processes"
    assert groups[DOCKER].cpu_share == pytest.approx(4 * process.cpu_share)
    container = last.containers[0]
    assert container.key == ID and container.source == "cgroup"
    assert container.cpu_share == pytest.approx(groups[DOCKER].cpu_share)
    for frame in frames:
        assert sum(g.watts for g in frame.cgroups) + frame.unattributed_cgroup_watts == pytest.approx(
            frame.host_watts, rel=1e-9
        )


# -- a real cgroup -------------------------------------------------------------------------------
# Outside the cgroup: start, one after the other for `seconds`, children that move themselves into
# it and burn ~40 ms; they are reaped here, so their time goes to this process's cutime.
_SPAWNER = """
import subprocess, sys, time
procs, seconds = sys.argv[1], float(sys.argv[2])
burn = "import time\\nend = time.process_time() + 0.04\\nwhile time.process_time() < end: pass"
end = time.monotonic() + seconds
while time.monotonic() < end:
    subprocess.run(["sh", "-c", 'echo $$ > "$0" && exec python3 -S -c "$1"', procs, burn], check=True)
"""
# Inside it: a light, long-lived process (5 ms of every 50), so the cgroup is in every Frame.
_LIGHT = "import time\nwhile True:\n    end = time.process_time() + 0.005\n    while time.process_time() < end: pass\n    time.sleep(0.045)"


def test_a_real_cgroup_is_measured_by_its_counter_exited_processes_included(tmp_path):
    with new_cgroup("wattprobe-test") as cgroup:
        if cgroup is None:
            pytest.skip("no writable cgroup v2 or cpuacct hierarchy under /sys/fs/cgroup (not root?)")
        frames, usage = _measured_while_spawning(Path(cgroup.directory), cgroup.path, tmp_path)
        path = cgroup.path
    counted = attributed = processes = 0.0
    for frame, before, after in zip(frames[2:], usage[1:], usage[2:], strict=False):
        group = {g.key: g for g in frame.cgroups}[path]
        assert group.source == "cgroup"
        machine_ns = frame.n_cpus * frame.window_s * 1e9
        attributed += group.cpu_share * machine_ns
        counted += after - before
        processes += sum(c.cpu_share for c in frame.consumers if c.info.cgroup == path) * machine_ns
    # The cgroup's figure is its counter's (read a few ms apart from the test's own reads)...
    assert attributed == pytest.approx(counted, rel=0.03, abs=20 * MS)
    # ...which has the short-lived processes' time, that their parent outside the cgroup got.
    assert processes < 0.5 * attributed
    for frame in frames:
        assert sum(g.watts for g in frame.cgroups) + frame.unattributed_cgroup_watts == pytest.approx(
            frame.host_watts, rel=1e-9
        )


def test_the_cgroupfs_root_is_a_global_option(tmp_path, powercap):
    from wattprobe.cli import build_parser
    from wattprobe.config import settings
    from wattprobe.pipeline.wiring import open_sampler
    from wattprobe.sources import SourceSettings

    (tmp_path / "cg").mkdir()
    (tmp_path / "cg" / "cgroup.controllers").write_text("\n")
    args = build_parser().parse_args(
        ["--powercap-root", str(powercap.root), "--cgroupfs-root", str(tmp_path / "cg"), "json"]
    )
    sampler = open_sampler(settings.from_namespace(SourceSettings, args))
    assert sampler.procfs.cgroups.v2 == str(tmp_path / "cg")
    sampler.close()
    args = build_parser().parse_args(["--powercap-root", str(powercap.root), "json"])
    sampler = open_sampler(settings.from_namespace(SourceSettings, args))
    assert sampler.procfs.cgroups.root == "/sys/fs/cgroup"
    sampler.close()


def _measured_while_spawning(
    directory: Path, path: str, tmp_path: Path
) -> tuple[list[Frame | None], list[int]]:
    """Frames and the cgroup's counter every 0.4 s while _SPAWNER's children run in it (`path`: as
    /proc/PID/cgroup names it)."""
    procs = directory / "cgroup.procs"
    light = subprocess.Popen(["sh", "-c", 'echo $$ > "$0" && exec python3 -S -c "$1"', str(procs), _LIGHT])
    tree = PowercapTree(tmp_path / "powercap")
    sampler = tree.sampler()
    frames: list[Frame | None] = []
    usage: list[int] = []
    try:
        wait_for(lambda: f":{path}\n" in Path(f"/proc/{light.pid}/cgroup").read_text(), 10, "it to move in")
        last = time.monotonic()
        sampler.tick()
        spawner = subprocess.Popen([sys.executable, "-c", _SPAWNER, str(procs), "3"])
        while len(frames) < 8:
            time.sleep(0.4)
            now = time.monotonic()
            tree.advance(now - last)
            last = now
            frames.append(sampler.tick())
            usage.append(usage_ns(directory))
        spawner.wait(30)
    finally:
        light.kill()
        light.wait()
        sampler.close()
    return frames, usage
