"""`wattprobe qemu`: per-VM powercap trees, and power inside a VM end to end with `--vm`."""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from tests.support import agents, frames
from tests.support.fake_qemu import fake_qemu
from tests.support.powercap_tree import PowercapTree
from tests.support.processes import schedstat_ns
from tests.support.waiting import wait_for
from wattprobe.core.model import DomainPower, Frame, SocketPower
from wattprobe.sinks.qemu.sink import MAX_ENERGY_RANGE_UJ, VmTrees
from wattprobe.sources.identity.vms import folder_name
from wattprobe.sources.powercap import PowercapSensor


def qemu(name: str) -> list[str]:
    """argv of a libvirt guest called `name`."""
    return ["/usr/bin/qemu-system-x86_64", "-name", f"guest={name},debug-threads=on", "-m", "1G"]


def frame(
    consumers: list[tuple[int, list[str], float]], *, window_s: float = 1.0, core_watts: float = 0.0
) -> Frame:
    """A Frame of 100 W whose consumers are (pid, argv, watts); one socket with a core domain."""
    domains = (DomainPower("core", core_watts, 0.0),) if core_watts else ()
    return frames.frame(
        [
            frames.consumer(frames.process(pid, argv=argv, cgroup="/"), watts, cpu_ns=1)
            for pid, argv, watts in consumers
        ],
        host_watts=100.0,
        window_s=window_s,
        sockets=(SocketPower(0, 50.0, 0.0, domains),),
    )


def read_uj(path: Path) -> int:
    return int(path.read_text())


def test_tree_layout_energy_and_core_share(tmp_path: Path) -> None:
    trees = VmTrees(str(tmp_path), grace_s=60)
    vm1 = qemu("vm1")
    # vm1: 20 W + 5 W from two processes (say, an iothread helper), 2 s windows; core domain 40 W.
    for _ in range(3):
        trees.update(
            frame(
                [(10, vm1, 20.0), (11, vm1, 5.0), (12, ["/usr/bin/nginx"], 30.0)],
                window_s=2.0,
                core_watts=40.0,
            )
        )
    zone = tmp_path / "vm1" / "intel-rapl:0"
    assert (zone / "name").read_text() == "package-0\n"
    assert read_uj(zone / "max_energy_range_uj") == MAX_ENERGY_RANGE_UJ
    assert read_uj(zone / "energy_uj") == 3 * 25 * 2 * 1_000_000  # energy, in µJ: 25 W x 6 s
    domain = zone / "intel-rapl:0:0"
    assert (domain / "name").read_text() == "core\n"
    assert read_uj(domain / "energy_uj") == 3 * 40 * 0.25 * 2 * 1_000_000  # its 25 % CPU share of 40 W
    assert (tmp_path / "vm1" / "intel-rapl:0:0").resolve() == domain.resolve()  # where sysfs has it too
    assert sorted(os.listdir(tmp_path)) == ["vm1"]  # nginx is no VM; no temporary files are left
    assert sorted(os.listdir(zone)) == ["energy_uj", "intel-rapl:0:0", "max_energy_range_uj", "name"]


def test_small_share_is_never_rounded_away(tmp_path: Path) -> None:
    trees = VmTrees(str(tmp_path))
    for _ in range(25):  # 0.2 µJ per step: 5 µJ in all
        trees.update(frame([(10, qemu("tiny"), 2e-7)], window_s=1.0))
    assert read_uj(tmp_path / "tiny" / "intel-rapl:0" / "energy_uj") in (
        4,
        5,
    )  # 4.999... before the last step


def test_resumes_a_previous_run_without_going_backwards(tmp_path: Path) -> None:
    VmTrees(str(tmp_path)).update(frame([(10, qemu("vm1"), 10.0)]))
    trees = VmTrees(str(tmp_path))  # the agent restarted
    trees.update(frame([(10, qemu("vm1"), 10.0)]))
    assert read_uj(tmp_path / "vm1" / "intel-rapl:0" / "energy_uj") == 20_000_000


def test_vm_gone_is_removed_only_after_the_grace_period(tmp_path: Path) -> None:
    trees = VmTrees(str(tmp_path), grace_s=30)
    (tmp_path / "mounted").mkdir()  # a VM folder prepared by the admin (a tmpfs libvirt shares)
    trees.update(
        frame(
            [
                (10, qemu("vm1"), 10.0),
                (11, qemu("mounted"), 1.0),
            ]
        ),
        now=100.0,
    )
    trees.update(frame([]), now=125.0)
    assert (tmp_path / "vm1" / "intel-rapl:0" / "energy_uj").exists()
    trees.update(frame([]), now=131.0)
    assert not (tmp_path / "vm1").exists()
    assert os.listdir(tmp_path / "mounted") == []  # the zone went, the admin's folder stayed


def test_hostile_vm_names_stay_inside_the_output_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    names = ["../escape", "../../etc", "..", ".", "a/../../b", "/abs", ".hidden", "x\nnl", "my vm", "a,b"]
    trees = VmTrees(str(root))
    trees.update(frame([(100 + i, qemu(n.replace(",", ",,")), 1.0) for i, n in enumerate(names)]))
    assert sorted(os.listdir(tmp_path)) == ["root"]  # nothing was written beside the root
    folders = os.listdir(root)
    assert len(folders) == len(names)  # every VM got its own folder
    assert "my vm" in folders and "a,b" in folders  # a space and an escaped comma are kept
    for folder in folders:
        assert (root / folder / "intel-rapl:0" / "energy_uj").resolve().is_relative_to(root.resolve())
        assert not folder.startswith(".")


def test_vms_whose_names_look_alike_keep_their_own_folder_and_energy(tmp_path: Path) -> None:
    """Names that a whitespace split, a replaced character or a fallback would make one: each VM its own
    folder, with its own energy."""
    argvs = [
        qemu("x\ny"),  # was cut to `x` at the newline
        qemu("x"),
        qemu("x y"),  # was cut to `x` at the space
        qemu("a/b"),
        qemu("a_b"),
        qemu(folder_name("a/b")),  # literally what `a/b` becomes
        qemu("pid-7"),  # literally the name of an unnamed VM with pid 7
        ["/usr/bin/qemu-system-x86_64", "-m", "1G"],  # unnamed, pid 7
    ]
    trees = VmTrees(str(tmp_path))
    trees.update(frame([(7 if i == 7 else 100 + i, argv, float(i + 1)) for i, argv in enumerate(argvs)]))
    folders = sorted(os.listdir(tmp_path))
    assert len(folders) == len(argvs), folders
    energies = sorted(read_uj(tmp_path / f / "intel-rapl:0" / "energy_uj") for f in folders)
    assert energies == [(i + 1) * 1_000_000 for i in range(len(argvs))]  # nothing summed with another
    assert {"x", "x y", "a_b", "pid-7"} <= set(folders)


def tree_of(path: Path) -> dict[str, tuple[str, str]]:
    """Everything under `path` (links not followed): kind and content of each entry, to compare."""
    found = {}
    for entry in sorted(path.rglob("*")):
        if entry.is_symlink():
            found[str(entry.relative_to(path))] = ("link", os.readlink(entry))
        elif entry.is_dir():
            found[str(entry.relative_to(path))] = ("dir", "")
        else:
            found[str(entry.relative_to(path))] = ("file", entry.read_text())
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the output root that a planted link points at: it holds what a walk that follows
    links would overwrite."""
    outside = tmp_path / "outside"
    (outside / "intel-rapl:0:0").mkdir(parents=True)
    for file in ("energy_uj", "name", "precious", "intel-rapl:0:0/energy_uj"):
        (outside / file).write_text("precious\n")
    return outside


# Where a guest (or anyone who can write in a VM folder) can plant a link, relative to the VM folder,
# and what it points at: the outside folder, a file in it, or a file that is not there (to be created).
FILES = ("intel-rapl:0/energy_uj", "intel-rapl:0/intel-rapl:0:0/energy_uj")
TEMPORARY = ("intel-rapl:0/.energy_uj.new", "intel-rapl:0/intel-rapl:0:0/.energy_uj.new")
PLANTED = [
    ("", "dir"),  # the VM folder itself
    ("intel-rapl:0", "dir"),
    ("intel-rapl:0/intel-rapl:0:0", "dir"),
    *((where, kind) for where in FILES + TEMPORARY for kind in ("file", "missing file")),
]


def plant(vm: Path, where: str, kind: str, outside: Path, tmp_path: Path) -> None:
    """Replace `vm/where` by a link to `outside` or to a file in it (`kind`)."""
    path = vm / where if where else vm
    if path.exists():
        os.rename(path, tmp_path / "moved-aside")
    target = {"dir": outside, "file": outside / "precious", "missing file": outside / "not-there"}[kind]
    path.symlink_to(target)


def warnings_about(caplog: pytest.LogCaptureFixture, folder: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and f" {folder}:" in r.getMessage()
    ]


@pytest.mark.parametrize(("where", "kind"), PLANTED)
def test_a_planted_link_at_any_level_writes_nothing_outside(
    tmp_path: Path, outside: Path, caplog: pytest.LogCaptureFixture, where: str, kind: str
) -> None:
    root = tmp_path / "root"
    before = tree_of(outside)
    trees = VmTrees(str(root))
    running = [(10, qemu("vm1"), 10.0), (20, qemu("vm2"), 20.0)]
    trees.update(frame(running))
    plant(root / "vm1", where, kind, outside, tmp_path)
    caplog.set_level(logging.DEBUG, logger="wattprobe.sinks.qemu.sink")
    for _ in range(4):
        trees.update(frame(running))
    assert tree_of(outside) == before  # nothing created, overwritten or removed there
    assert len(warnings_about(caplog, "vm1")) == 1, caplog.text  # once, not every step
    assert "symbolic link" in warnings_about(caplog, "vm1")[0]
    assert read_uj(root / "vm2" / "intel-rapl:0" / "energy_uj") == 5 * 20_000_000  # vm2 served all along
    assert not warnings_about(caplog, "vm2")


@pytest.mark.parametrize(("where", "kind"), [*PLANTED, ("intel-rapl:0:0", "dir")])
def test_links_planted_before_the_vm_starts_are_not_followed(
    tmp_path: Path, outside: Path, where: str, kind: str
) -> None:
    """The admin made the VM folder (a tmpfs shared with the guest) and a previous boot left links in it."""
    root = tmp_path / "root"
    before = tree_of(outside)
    vm = root / "vm1"
    (vm / where).parent.mkdir(parents=True)  # the folders above the link (where "" is the VM folder)
    plant(vm, where, kind, outside, tmp_path)
    trees = VmTrees(str(root))  # a previous run's tree: resumed without reading through a link
    for _ in range(3):
        trees.update(frame([(10, qemu("vm1"), 10.0)]))
    assert tree_of(outside) == before


@pytest.mark.parametrize(
    ("where", "kind"),
    [*PLANTED, ("intel-rapl:0:0", "dir"), ("intel-rapl:0/intel-rapl:0:0/deeper", "dir")],
)
def test_removal_after_the_grace_period_follows_no_link(
    tmp_path: Path, outside: Path, where: str, kind: str
) -> None:
    root = tmp_path / "root"
    before = tree_of(outside)
    trees = VmTrees(str(root), grace_s=30)
    trees.update(frame([(10, qemu("vm1"), 10.0)]), now=100.0)
    plant(root / "vm1", where, kind, outside, tmp_path)
    trees.update(frame([]), now=131.0)  # gone for more than the grace period: removed
    assert "vm1" not in trees.vms
    assert tree_of(outside) == before  # the links went (or stayed), never what they point at
    if where:  # the folder this agent made is gone with all it held, links included
        assert not (root / "vm1").exists() and not (root / "vm1").is_symlink()


def test_a_tree_nested_deeper_than_ours_is_left_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Removal holds one fd per level: folders nested far deeper than a zone are left, not walked."""
    trees = VmTrees(str(tmp_path), grace_s=30)
    trees.update(frame([(10, qemu("vm1"), 10.0)]), now=100.0)
    (tmp_path / "vm1" / "intel-rapl:0" / "intel-rapl:0:0" / ("d/" * 20)).mkdir(parents=True)
    trees.update(frame([]), now=131.0)
    assert "vm1" not in trees.vms
    assert "could not all be removed" in caplog.text
    assert not (tmp_path / "vm1" / "intel-rapl:0").exists()  # gone from where the guest reads


def test_a_fifo_in_place_of_a_counter_hangs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Opening a FIFO for reading waits for a writer: resuming or updating must not open it that way."""
    trees = VmTrees(str(tmp_path))
    trees.update(frame([(10, qemu("vm1"), 10.0)]))
    energy = tmp_path / "vm1" / "intel-rapl:0" / "energy_uj"
    energy.unlink()
    os.mkfifo(energy)
    done = threading.Event()

    def restart_and_update() -> None:
        VmTrees(str(tmp_path)).update(frame([(10, qemu("vm1"), 10.0)]))
        done.set()

    threading.Thread(target=restart_and_update, daemon=True).start()
    assert done.wait(10), "the exporter hangs on a FIFO"
    assert "not a regular file" in caplog.text


def _read_until(root: str, stop, conn) -> None:
    """In another process: read the VM's tree as the guest would, until told to stop; send back the values."""
    seen = []
    try:
        sensor = PowercapSensor(root, vm=True)
        while not stop.is_set():
            seen.append(sensor.read().counters[0].uj)  # SensorReadError on an empty or garbled value
    except Exception as error:  # the test shows it
        conn.send(f"{error!r} after {len(seen)} good reads")
    else:
        conn.send(seen)


def test_a_guest_reader_racing_the_writer_never_sees_a_torn_value(tmp_path: Path) -> None:
    trees = VmTrees(str(tmp_path))
    trees.update(frame([(10, qemu("vm1"), 1.0)]))
    context = multiprocessing.get_context("fork")
    stop, (ours, theirs) = context.Event(), context.Pipe()
    reader = context.Process(target=_read_until, args=(str(tmp_path / "vm1"), stop, theirs))
    reader.start()
    deadline = time.monotonic() + 1.0
    writes = 0
    try:
        while time.monotonic() < deadline:
            # Values whose digit count grows (9 -> 12 digits) make torn reads easy to tell.
            trees.update(frame([(10, qemu("vm1"), 123_456.789)], window_s=0.0137))
            writes += 1
    finally:
        stop.set()
        seen = ours.recv() if ours.poll(10) else "no answer from the reader"
        reader.join(5)
    assert isinstance(seen, list), seen
    assert writes > 100 and len(seen) > 100
    assert seen == sorted(seen)  # never backwards: no partial value, no stale value after a newer one
    assert seen[0] >= 1_000_000 and seen[-1] <= read_uj(tmp_path / "vm1" / "intel-rapl:0" / "energy_uj")


def machine_cpus() -> int:
    with open("/proc/stat") as f:
        return sum(1 for line in f if line[:3] == "cpu" and line[3:4].isdigit())


class CpuTrace:
    """Samples a process's CPU time against wall time, from a thread, to know its use over any span."""

    def __init__(self, pid: int) -> None:
        self.pid, self.samples = pid, [(time.time(), schedstat_ns(pid))]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append((time.time(), schedstat_ns(self.pid)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, t: float) -> float:
        """CPU ns used by time t, interpolated between samples."""
        for (t0, c0), (t1, c1) in itertools.pairwise(self.samples):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * (t - t0) / (t1 - t0)
        raise ValueError(f"{t} is outside the trace")


def test_power_inside_a_vm_end_to_end(tmp_path: Path) -> None:
    """A fake VM burns CPU on a 60 W host; the guest's agent reads the VM's share through its tree."""
    tree = PowercapTree(tmp_path / "powercap")  # psys 60 W: the host's power
    out = tmp_path / "vms"
    host_agent = trace = None
    host_log = tmp_path / "host.log"
    with (
        fake_qemu("-name", "guest=vm1,debug-threads=on", "-m", "1G", busy=True) as vm,
        tree.running(period_s=0.01),
        open(host_log, "w") as log,
    ):
        try:
            host_agent = agents.start(
                agents.on_tree(tree.root, "qemu", "--output-root", str(out), "-s", "0.1"), stderr=log
            )
            energy = out / "vm1" / "intel-rapl:0" / "energy_uj"
            wait_for(energy.exists, 10, lambda: f"the VM's tree: {host_log.read_text()}", alive=host_agent)

            trace = CpuTrace(vm.pid)
            guest = agents.run(
                agents.command("--vm", "json", "-s", "1", "-t", "6"),
                env={**os.environ, "SCAPHANDRE_POWERCAP_PATH": str(out / "vm1")},
            )
            ended = time.time()
            wait_for(lambda: trace.samples[-1][0] > ended, 5, "the VM's CPU time after the guest's run")
        finally:
            if trace is not None:
                trace.stop()
            if host_agent is not None:
                agents.stop(host_agent, timeout_s=5)
    assert guest.returncode == 0, guest.stderr
    documents = json.loads(guest.stdout)
    assert len(documents) >= 5
    assert all(d["host"]["source"] == "package" for d in documents)  # the VM's tree: one package-0
    # The guest's power over its windows after the first, against vm1's share of the host's 60 W over
    # the same span: 60 W x its CPU time / all the machine's CPU time.
    measured = documents[1:]
    guest_watts = sum(d["host"]["consumption"] for d in measured) / len(measured) / 1e6
    start, end = documents[0]["host"]["timestamp"], documents[-1]["host"]["timestamp"]
    vm_share_watts = 60.0 * (trace.at(end) - trace.at(start)) / 1e9 / (machine_cpus() * (end - start))
    assert guest_watts == pytest.approx(vm_share_watts, rel=0.05)
