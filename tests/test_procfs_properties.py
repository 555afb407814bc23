"""Property tests of every /proc and cgroup file reader: generated content, written to a synthetic tree.

Each reader gets either well-formed content (and must give the right value, computed here the plain way)
or hostile content (comm, cmdline and cgroup paths are chosen by any local user; the rest is garbage a
broken or fake procfs could hold): it then gives its documented "absent" and nothing else escapes. Every
call is bounded in time, with fields up to the kernel's 128 kB argument size.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.procfs import rewrite, write_process, write_stat, write_times
from wattprobe.core.model import Container, MachineCpu
from wattprobe.errors import SensorUnavailable
from wattprobe.sources import SourceSettings
from wattprobe.sources.cgroupfs import CgroupReader, cgroup_paths
from wattprobe.sources.estimate import EstimateSensor
from wattprobe.sources.host import HostReader
from wattprobe.sources.identity.containers import parse_cgroup
from wattprobe.sources.identity.redaction import Redactor
from wattprobe.sources.identity.vms import find_guest, folder_name
from wattprobe.sources.procfs import (
    PAGE_SIZE,
    TICK_NS,
    ProcfsReader,
    read_machine_cpu,
    task_key,
)
from wattprobe.sources.quiet_cgroups import Homes
from wattprobe.sources.topology import first_cpus

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ARG_MAX = 128 * 1024  # the kernel's limit on one argument (MAX_ARG_STRLEN)
# Per call, with fields up to ARG_MAX, on a loaded machine (the fastest of a few runs is the one judged).
BOUND_S = 0.05

# Bytes a hostile or broken file may hold: the characters the parsers cut on, and anything.
_CUTS = [
    b" ",
    b"\n",
    b"\0",
    b"(",
    b")",
    b":",
    b"/",
    b",",
    b"=",
    b"-",
    b"\xff",
    b"\xc3",
    b"9",
    b"a",
    b"nan",
    b"inf",
    b"e",
]
# Numbers as no kernel writes them, that Python's int() or float() may still take.
_ODD_NUMBERS = [
    b"nan",
    b"-inf",
    b"1e999",
    b"-1",
    b"-0",
    b"+5",
    b"1_0",
    b"0x10",
    b"\xd9\xa1",
    b"9" * 30,
    b"kB",
]
hostile = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(_ODD_NUMBERS), max_size=12).map(b" ".join),
    st.lists(
        st.sampled_from([b"MemTotal:", b"SwapFree:", b"cpu MHz\t: ", b"read_bytes: ", b"\n", *_ODD_NUMBERS]),
        max_size=12,
    ).map(b" ".join),
    st.lists(st.sampled_from(_CUTS), max_size=60).map(b"".join),
    st.integers(1, ARG_MAX).map(lambda n: b"9" * n),
    st.integers(1, ARG_MAX).map(lambda n: b"(" * n + b")" * n),
)
u64 = st.integers(0, 2**64 - 1)


def fastest(call: Callable[[], Any], runs: int = 3) -> float:
    """The shortest of `runs` timings of `call`: what it costs, without the machine's other load."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


@contextlib.contextmanager
def proc_root() -> Iterator[Path]:
    """A fresh synthetic /proc (with its /proc/stat) per generated example."""
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        write_stat(root)
        yield root


def reader(root: Path, cgroupfs_root: str | None = None) -> ProcfsReader:
    return ProcfsReader(str(root), cgroupfs_root=cgroupfs_root, redactor=Redactor(enabled=False))


# -- /proc/PID/stat -----------------------------------------------------------------------------------
# The kernel's comm: up to 15 bytes, any but NUL; the characters that trip naive parsers made likely.
comms = st.one_of(
    st.binary(max_size=15).filter(lambda b: b"\0" not in b),
    st.lists(st.sampled_from([b"(", b")", b" ", b"\n", b") S 1 (", b"\xff", b"x"]), max_size=5)
    .map(b"".join)
    .map(lambda b: b[:15]),
)
ticks = st.integers(0, 2**40)


@PROPERTY
@given(
    comm=comms,
    times=st.tuples(ticks, ticks, ticks, ticks),
    more=st.tuples(st.integers(1, 2**40), ticks, ticks, ticks),  # it ran: reaping runs in the parent
    threads=st.integers(1, 10_000),
    ppid=st.integers(0, 2**22 - 1),
    starttime=st.integers(1, 2**40),
    vsize=u64,
    rss=st.integers(0, 2**40),
)
def test_stat_gives_the_right_times_whatever_the_comm(
    comm, times, more, threads, ppid, starttime, vsize, rss
):
    """A well-formed stat, with any comm (spaces, parentheses, newlines, invalid UTF-8): right CPU time, on
    first sight and after the process ran more, and right comm, RSS and virtual size."""
    utime, stime, cutime, cstime = times
    with proc_root() as root:
        fields: dict[str, Any] = dict(comm=comm, threads=threads, ppid=ppid, starttime=starttime)
        write_process(
            root, 77, ticks=(utime, stime), cticks=(cutime, cstime), vsize=vsize, rss_pages=rss, **fields
        )
        procfs = reader(root)
        key = task_key(77, starttime)
        _, tasks = procfs.scan()
        assert tasks == {key: (utime + stime + cutime + cstime) * TICK_NS}
        found = procfs.process(key)
        assert found is not None
        info, rss_bytes, vsize_bytes, _ = found
        assert (info.pid, info.comm, rss_bytes, vsize_bytes) == (
            77,
            comm.decode(errors="replace"),
            rss * PAGE_SIZE,
            vsize,
        )
        utime, stime, cutime, cstime = (a + b for a, b in zip(times, more, strict=True))
        write_times(
            root, 77, ticks=(utime, stime), cticks=(cutime, cstime), vsize=vsize, rss_pages=rss, **fields
        )
        _, tasks = procfs.scan()
        assert tasks == {key: (utime + stime + cutime + cstime) * TICK_NS}
        procfs.close()


def _mutations(line: bytes) -> st.SearchStrategy[bytes]:
    fields = line.split(b" ")
    return st.one_of(
        st.integers(0, len(line)).map(lambda i: line[:i]),  # cut short (missing fields)
        st.tuples(st.integers(0, len(line)), hostile).map(lambda t: line[: t[0]] + t[1] + line[t[0] :]),
        st.tuples(st.integers(0, len(fields) - 1), hostile).map(
            lambda t: b" ".join([*fields[: t[0]], t[1], *fields[t[0] + 1 :]])
        ),
        hostile,
    )


_VALID_STAT = b"55 (w) S 1 0 0 0 0 0 0 0 0 0 7 3 0 0 0 0 1 0 55 4096000 250" + b" 0" * 29 + b"\n"


_NEGATIVE_UTIME = _VALID_STAT.replace(b" 7 3 ", b" -7000 3 ")


@PROPERTY
@given(
    stat=_mutations(_VALID_STAT),
    schedstat=st.one_of(st.just(b"10000000 0 0\n"), hostile),
    known=st.booleans(),
)
@example(stat=_NEGATIVE_UTIME, schedstat=b"x", known=False)  # was counted at -69.99 s of CPU time
def test_a_garbled_stat_or_schedstat_never_stops_the_scan(stat, schedstat, known):
    """Any stat or schedstat content (cut short, a field huge, negative or not a number, binary), on a
    process first seen so (`known` False) or seen well-formed before: the scan goes on, the process is
    left out or counted with a time that is not negative and never goes back, and its neighbour keeps
    its right time; quickly, whatever the size."""
    with proc_root() as root:
        write_process(root, 10, ticks=(30, 20), starttime=100)
        write_process(root, 55, ticks=(7, 3), starttime=55)
        procfs = reader(root)
        before = procfs.scan()[1] if known else {}
        rewrite(root / "55" / "stat", stat)
        rewrite(root / "55" / "schedstat", schedstat)
        for _ in range(2):
            started = time.perf_counter()
            machine, tasks = procfs.scan()
            assert time.perf_counter() - started < 10 * BOUND_S  # first sight opens files: a looser bound
            assert tasks[task_key(10, 100)] == 50 * TICK_NS
            assert all(ns >= before.get(key, 0) for key, ns in tasks.items())
            assert machine == MachineCpu(busy=1000, idle=3000, steal=0, n_cpus=4)
            for key in tasks:
                procfs.process(key)
            before = tasks
        procfs.close()


# -- /proc/stat ---------------------------------------------------------------------------------------
cpu_values = st.lists(st.integers(0, 2**63), min_size=4, max_size=10)


@PROPERTY
@given(
    total=cpu_values,
    cpus=st.integers(0, 64),
    counters=st.dictionaries(st.sampled_from(["ctxt", "processes", "procs_running", "procs_blocked"]), u64),
)
def test_proc_stat_gives_the_right_machine_cpu(total, cpus, counters):
    lines = ["cpu  " + " ".join(map(str, total))]
    lines += [f"cpu{i} 1 2 3 4 5 6 7 8 0 0" for i in range(cpus)]
    lines += ["intr 12 0 3", *(f"{k} {v}" for k, v in counters.items()), "softirq 9 1"]
    with proc_root() as root:
        rewrite(root / "stat", "\n".join(lines) + "\n")
        machine = read_machine_cpu(str(root))
    f = total + [0] * 8
    names = {
        "ctxt": "context_switches",
        "processes": "forks",
        "procs_running": "running",
        "procs_blocked": "blocked",
    }
    assert machine == MachineCpu(
        busy=f[0] + f[1] + f[2] + f[5] + f[6],
        idle=f[3] + f[4],
        steal=f[7],
        n_cpus=max(cpus, 1),
        **{names[k]: v for k, v in counters.items()},
    )


@PROPERTY
@given(
    content=st.one_of(
        hostile, _mutations(b"cpu  10 0 20 300 4 0 0 0 0 0\ncpu0 10 0 20 300 4 0 0 0 0 0\nctxt 5\n")
    )
)
def test_garbled_proc_stat_is_one_value_error(content):
    """/proc/stat read at start: a MachineCpu or a ValueError (which start-up turns into one line); in a
    scan, an OSError (the sampler skips that sample and goes on)."""
    with proc_root() as root:
        procfs = reader(root)
        procfs.scan()
        rewrite(root / "stat", content)
        try:
            machine = read_machine_cpu(str(root))
        except ValueError:
            with pytest.raises(OSError, match="garbled"):
                procfs.scan()
        else:
            assert isinstance(machine, MachineCpu) and procfs.scan()[0] == machine
            assert fastest(lambda: read_machine_cpu(str(root))) < BOUND_S


# -- /proc/PID/cmdline --------------------------------------------------------------------------------
args = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"")),
    st.integers(1, ARG_MAX).map(lambda n: b"A" * n),
    st.text(max_size=20).map(lambda s: s.encode(errors="surrogatepass").replace(b"\0", b"")),
)


@PROPERTY
@given(argv=st.lists(args, max_size=12), terminated=st.booleans())
def test_cmdline_gives_the_argv_as_written(argv, terminated):
    """NUL-separated entries (a final NUL or not, empty entries, invalid UTF-8, 128 kB ones): the argv is
    each entry decoded (U+FFFD for bad bytes), the trailing empty ones dropped as the kernel's final NUL."""
    raw = b"\0".join(argv) + (b"\0" if terminated and argv else b"")
    expected = tuple(a.decode(errors="replace") for a in argv)
    while expected and expected[-1] == "":
        expected = expected[:-1]
    with proc_root() as root:
        write_process(root, 9, cmdline=raw, starttime=5)

        def read() -> Any:
            procfs = reader(root)
            procfs.scan()
            found = procfs.process(task_key(9, 5))
            procfs.close()
            return found

        elapsed = fastest(read)
        found = read()
    assert found is not None
    info = found[0]
    # An entry that is empty within the argv (`a\0\0b`) stays; only the kernel's terminator goes.
    assert info.argv == expected
    assert info.cmdline == " ".join(info.argv)
    assert elapsed < BOUND_S * (1 + len(raw) / ARG_MAX)


# -- VMs from a QEMU argv -----------------------------------------------------------------------------
names = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=30)


@PROPERTY
@given(
    name=names,
    program=st.sampled_from(["/usr/bin/qemu-system-x86_64", "qemu-kvm", "/usr/bin/kvm"]),
    libvirt=st.booleans(),
)
def test_a_qemu_argv_gives_the_vm_name_and_a_safe_folder(name, program, libvirt):
    """`-name guest=NAME,debug-threads=on` (libvirt) or `-name NAME,process=x`, commas doubled as QEMU
    escapes them: the name comes back whole; its folder is one safe path component."""
    escaped = name.replace(",", ",,")
    value = f"guest={escaped},debug-threads=on" if libvirt else f"{escaped},process=qemu:{escaped}"
    argv = [program, "-machine", "q35", "-name", value, "-m", "2048"]
    guest = find_guest(argv, "/usr/bin/qemu-system-x86_64", 1234)
    assert guest is not None
    if name and (libvirt or "=" not in name):
        assert guest.name == name and guest.given
    else:
        assert guest.name == "pid-1234" and not guest.given
    folder = guest.folder
    assert folder not in ("", ".", "..") and "/" not in folder and not folder.startswith(".")
    assert len(folder.encode()) <= 145 and not re.search(r"[\x00-\x1f\x7f]", folder)
    assert folder == folder_name(guest.name, given=guest.given)


@PROPERTY
@given(
    argv=st.lists(
        st.one_of(st.sampled_from(["-name", "--name", "-id", "-uuid", "guest=", ",,", ","]), names),
        max_size=10,
    )
)
def test_any_argv_gives_a_guest_or_none_quickly(argv):
    program = ["qemu-system-aarch64", *argv]
    guest = find_guest(program, "", 8)
    assert guest is not None and guest.name
    assert find_guest(["/bin/sh", *argv], "/bin/sh", 8) is None
    big = [program[0], "-name", "x" * ARG_MAX + ",," * 1000, *(["-m", "1"] * 2000)]
    assert fastest(lambda: find_guest(big, "", 8).folder) < BOUND_S


# -- /proc/PID/cgroup and containers ------------------------------------------------------------------
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
pod_uids = st.uuids().map(str)
segment = st.text(st.characters(codec="utf-8", exclude_characters="/\n\0"), min_size=1, max_size=12)


@st.composite
def container_paths(draw: st.DrawFn) -> tuple[str, Container]:
    """A cgroup path as each runtime and driver lays it out, and the container it names."""
    cid = draw(hex64)
    shape = draw(
        st.sampled_from(
            [
                "docker-systemd",
                "docker-cgroupfs",
                "podman",
                "crio-k8s",
                "containerd-k8s",
                "kubepods-v1",
                "nerdctl",
            ]
        )
    )
    pod = draw(pod_uids)
    qos = draw(st.sampled_from(["", "burstable-", "besteffort-"]))
    k8s_slice = f"/kubepods.slice/kubepods-{qos}pod{pod.replace('-', '_')}.slice"
    path, container = {
        "docker-systemd": (f"/system.slice/docker-{cid}.scope", Container(cid, "docker", "docker")),
        "docker-cgroupfs": (f"/docker/{cid}", Container(cid, "docker", "docker")),
        "podman": (f"/user.slice/libpod-{cid}.scope/container", Container(cid, "podman", "podman")),
        "crio-k8s": (f"{k8s_slice}/crio-{cid}.scope", Container(cid, "cri-o", "kubernetes", pod)),
        "containerd-k8s": (
            f"{k8s_slice}/cri-containerd-{cid}.scope",
            Container(cid, "containerd", "kubernetes", pod),
        ),
        "kubepods-v1": (f"/kubepods/besteffort/pod{pod}/{cid}", Container(cid, None, "kubernetes", pod)),
        "nerdctl": (f"/nerdctl.slice/nerdctl-{cid}.scope", Container(cid, "containerd", "containerd")),
    }[shape]
    return path, container


@PROPERTY
@given(found=container_paths(), v1=st.booleans(), others=st.lists(segment, max_size=3))
@example(  # a cgroup named "\r0" beside it once cut the file's lines there, and the v2 path was lost
    found=(f"/system.slice/docker-{'0' * 64}.scope", Container("0" * 64, "docker", "docker")),
    v1=False,
    others=["\r0"],
)
def test_container_ids_from_every_runtime_shape(found, v1, others):
    """cgroup v1 (`N:cpu,cpuacct:/path`) or v2 (`0::/path`), beside controllers on other paths: the
    process's cgroup and its container (id, runtime, scheduler, pod) are the ones the path names."""
    path, container = found
    lines = [f"{i + 5}:memory:/{o}" for i, o in enumerate(others)]
    lines.append(f"4:cpu,cpuacct:{path}" if v1 else f"0::{path}")
    with proc_root() as root:
        write_process(root, 3, cgroup="\n".join(lines) + "\n", starttime=2)
        procfs = reader(root)
        procfs.scan()
        found_info = procfs.process(task_key(3, 2))
    assert found_info is not None
    assert (found_info[0].cgroup, found_info[0].container) == (path, container)


@PROPERTY
@given(
    paths=st.lists(st.lists(segment, max_size=6).map(lambda s: "/" + "/".join(s)), min_size=1, max_size=4),
    v2=st.booleans(),
)
def test_cgroup_paths_without_a_container(paths, v2):
    """Odd paths (spaces, colons, unicode) name no container unless they hold a 64-hex id: the cgroup is
    the v2 path, else the first controller's path that is not the root."""
    text = "".join(f"{i + 1}:ctl{i}:{p}\n" for i, p in enumerate(paths)) + (
        "0::" + paths[0] + "\n" if v2 else ""
    )
    cgroup, container = parse_cgroup(text)
    expected = next((p for p in paths if p != "/"), "/")
    assert cgroup == expected and container is None
    assert cgroup_paths(text)[""] == paths[0] if v2 else "" not in cgroup_paths(text)


@PROPERTY
@given(
    text=st.one_of(
        hostile.map(lambda b: b.decode(errors="replace")),
        st.integers(1, ARG_MAX).map(lambda n: "0::/" + "a" * n + "/" + "0" * 63),
    )
)
def test_any_cgroup_text_parses_quickly(text):
    cgroup, container = parse_cgroup(text)
    assert cgroup == "/" or cgroup in text
    assert container is None or re.fullmatch("[0-9a-f]{64}", container.id)
    assert fastest(lambda: parse_cgroup(text)) < BOUND_S * 2


# -- /proc/PID/io -------------------------------------------------------------------------------------
@PROPERTY
@given(read=u64, written=u64, more=st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)), garbage=hostile)
def test_io_gives_the_right_bytes_or_none(read, written, more, garbage):
    def io(r: int, w: int) -> str:
        return f"rchar: 5\nwchar: 6\nsyscr: 1\nsyscw: 1\nread_bytes: {r}\nwrite_bytes: {w}\ncancelled_write_bytes: 0\n"

    with proc_root() as root:
        write_process(root, 4, starttime=4)
        rewrite(root / "4" / "io", io(read, written))
        procfs = reader(root)
        procfs.scan()
        first = procfs.process(task_key(4, 4))
        assert first is not None and first[3] is not None
        assert (first[3].read_bytes, first[3].write_bytes, first[3].read_delta, first[3].write_delta) == (
            read,
            written,
            0,
            0,
        )
        rewrite(root / "4" / "io", io(read + more[0], written + more[1]))
        second = procfs.process(task_key(4, 4))
        assert second is not None and second[3] is not None
        assert (second[3].read_delta, second[3].write_delta) == more
        again = procfs.process(task_key(4, 4))  # the file as it was: no I/O since
        assert again is not None and again[3] is not None
        assert (again[3].read_bytes, again[3].write_bytes, again[3].read_delta, again[3].write_delta) == (
            read + more[0],
            written + more[1],
            0,
            0,
        )
        rewrite(root / "4" / "io", garbage)
        third = procfs.process(task_key(4, 4))
        assert third is not None
        if third[3] is not None:  # garbage that happens to hold both fields
            assert b"read_bytes: " in garbage and b"write_bytes: " in garbage
        procfs.close()


# -- cgroup counters: cpu.stat, cpuacct.usage, cgroup.procs ---------------------------------------------
@PROPERTY
@given(usage=u64, v2=st.booleans(), garbage=hostile)
@example(usage=0, v2=True, garbage=b"nan -1")  # was read as -1 µs: the second word, whatever the first
def test_cgroup_counters_give_the_right_time_or_are_left_out(usage, v2, garbage):
    """cpu.stat's usage_usec (v2, µs) or cpuacct.usage (v1, ns): the cgroup's ns; garbage: left out."""
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory) / ("" if v2 else "cpuacct")
        group = base / "system.slice" / "a b:c.service"
        group.mkdir(parents=True)
        (base / ("cgroup.controllers" if v2 else "cpuacct.usage")).write_text("cpu\n" if v2 else "0\n")
        counter = group / ("cpu.stat" if v2 else "cpuacct.usage")
        counter.write_text(f"usage_usec {usage}\nuser_usec 1\nsystem_usec 2\n" if v2 else f"{usage}\n")
        cgroups = CgroupReader(directory)
        path = "/system.slice/a b:c.service"
        text = f"0::{path}\n" if v2 else f"3:cpu,cpuacct:{path}\n"
        tracked = cgroups.counters_for(text, path, None)
        assert tracked == (path,)
        cgroups.track(tracked)
        cgroups.read()
        assert cgroups.usage() == {path: usage * 1000 if v2 else usage}
        rewrite(counter, garbage)
        cgroups.read()
        assert cgroups.usage() == {} or cgroups.usage()[path] >= 0
        if v2 and cgroups.usage():
            assert garbage.split()[0] == b"usage_usec"
        cgroups.close()


@PROPERTY
@given(listing=hostile)
@example(listing=b"\0")  # once made the cgroup quiet on its second still counter
def test_any_cgroup_procs_listing_keeps_the_quiet_check_going(listing):
    """cgroup.procs that is not a list of pids: the cgroup is never quiet on it, and nothing escapes."""
    with tempfile.TemporaryDirectory() as directory:
        group = Path(directory) / "g"
        group.mkdir()
        (group / "cpu.stat").write_text("usage_usec 5\n")
        (group / "cgroup.procs").write_bytes(listing)
        pid_of: dict[int, int] = {}  # id(task) -> pid, as the reader's tasks know theirs

        def leave(task: object) -> None:
            homes.leave(task, pid_of[id(task)], home)

        homes = Homes(directory, None, lambda p: os.open(p, os.O_RDONLY), os.close, leave)
        members = [object(), object()]
        for pid, task in enumerate(members, 10):
            pid_of[id(task)] = pid
            home = homes.join(task, pid, "/g", True)
        listed: set[int] | None = None
        with contextlib.suppress(ValueError):
            listed = {int(p) for p in listing.split()}
        for _ in range(3):
            homes.check()
            if home.quiet:  # its counter stood still and its listing names every member it kept
                assert listed is not None and home.members and set(home.members) <= listed
        homes.close()


# -- host facts: loadavg, meminfo, cpuinfo, mounts ------------------------------------------------------
@PROPERTY
@given(
    load=st.tuples(*[st.floats(0, 1e6, allow_nan=False)] * 3),
    memory=st.tuples(*[st.integers(0, 2**50)] * 5),
    garbage=hostile,
    which=st.sampled_from(["loadavg", "meminfo", "cpuinfo", "1/mounts"]),
)
@example(load=(1.0,) * 3, memory=(1,) * 5, garbage=b"\0", which="1/mounts")  # a NUL in a mount point
@example(load=(1.0,) * 3, memory=(1,) * 5, garbage=b"nan nan nan", which="loadavg")
def test_host_facts_are_right_or_absent(load, memory, garbage, which):
    with proc_root() as root:
        (root / "1").mkdir()
        rewrite(root / "loadavg", " ".join(f"{x:.2f}" for x in load) + " 2/300 4242\n")
        names = ["MemTotal:", "MemFree:", "MemAvailable:", "Buffers:", "SwapTotal:", "SwapFree:"]
        values = [memory[0], memory[1], memory[2], 7, memory[3], memory[4]]
        rewrite(root / "meminfo", "".join(f"{n:<16}{v:>8} kB\n" for n, v in zip(names, values, strict=True)))
        rewrite(
            root / "cpuinfo",
            "processor\t: 0\ncpu MHz\t\t: 2400.000\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.500\n",
        )
        rewrite(root / "1" / "mounts", f"tmpfs /run tmpfs rw 0 0\n/dev/x {root}/no\\040such ext4 rw 0 0\n")
        host = HostReader(str(root), str(root / "sys"))
        facts = host.read()
        assert facts is not None
        assert facts.load_avg == tuple(float(f"{x:.2f}") for x in load)
        assert (facts.memory_total_bytes, facts.memory_free_bytes, facts.memory_available_bytes) == tuple(
            m * 1024 for m in memory[:3]
        )
        assert (facts.swap_total_bytes, facts.swap_free_bytes) == (memory[3] * 1024, memory[4] * 1024)
        assert facts.cpu_mhz == (2400.0 + 1200.5) / 2 and facts.disks == ()
        if which == "1/mounts":  # and a disk mounted at a path made of it
            garbage += b"\n/dev/sda1 /" + re.sub(rb"\s", b"", garbage)[:200] + b" ext4 rw 0 0\n"
        rewrite(root / which, garbage)
        elapsed = fastest(host.read)
        facts = host.read()
        assert elapsed < BOUND_S * 4  # the loop that grows the read doubles to the file's size
        if which in ("cpuinfo", "1/mounts"):  # a bad frequency or mount table costs only its own fact
            assert facts is not None and facts.load_avg == tuple(float(f"{x:.2f}") for x in load)
        if facts is not None:
            assert all(x >= 0 and x != float("inf") for x in facts.load_avg)
            assert facts.cpu_mhz is None or facts.cpu_mhz >= 0
            assert min(facts.memory_total_bytes, facts.memory_free_bytes, facts.swap_total_bytes) >= 0
        host.close()


# -- /proc/meminfo for the memory estimate, and the cpu topology ----------------------------------------
@PROPERTY
@given(kb=st.integers(0, 2**50), garbage=hostile)
@example(kb=1, garbage=b"MemTotal: x kB\n")  # was a ValueError traceback at start
def test_memtotal_for_the_memory_estimate_is_right_or_one_line(kb, garbage):
    with proc_root() as root:
        rewrite(root / "meminfo", f"MemTotal:       {kb} kB\nMemFree:        1 kB\n")
        settings = SourceSettings(name="estimate", procfs_root=str(root), memory_watts_per_gb=0.4)
        assert EstimateSensor.from_settings(settings).memory_watts == 0.4 * kb / 1024**2
        rewrite(root / "meminfo", garbage)
        try:
            sensor = EstimateSensor.from_settings(settings)
        except SensorUnavailable as error:
            assert "MemTotal" in str(error) and "\n" not in str(error)
        else:
            assert 0 <= sensor.memory_watts < math.inf


@PROPERTY
@given(
    ids=st.dictionaries(
        st.integers(0, 4096), st.one_of(st.integers(0, 2**31).map(lambda n: b"%d\n" % n), hostile)
    )
)
def test_cpu_topology_gives_each_package_its_first_cpu(ids):
    """Each cpu's physical_package_id, as int() reads a number (a garbled one is skipped)."""
    expected: dict[int, int] = {}
    for cpu, raw in sorted(ids.items()):
        with contextlib.suppress(ValueError):
            if (package := int(raw.decode())) >= 0:
                expected.setdefault(package, cpu)
    with tempfile.TemporaryDirectory() as directory:
        for cpu, raw in ids.items():
            (Path(directory) / f"cpu{cpu}" / "topology").mkdir(parents=True)
            (Path(directory) / f"cpu{cpu}" / "topology" / "physical_package_id").write_bytes(raw)
        (Path(directory) / "cpufreq").mkdir()
        assert first_cpus(directory) == expected
