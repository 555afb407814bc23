"""Real cgroups made for a test or a benchmark, as `wattprobe run` makes its command's (OwnCgroup), and
shaped as a container engine's or the kubelet's, so that /proc shows a real process in a container or
a pod."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from wattprobe.sources.cgroupfs import CgroupReader
from wattprobe.sources.owncgroup import CgroupUnavailable, OwnCgroup


@contextlib.contextmanager
def new_cgroup(prefix: str, *, v1: bool = True) -> Iterator[OwnCgroup | None]:
    """A new cgroup below this process's own for the block, v2 where mounted, else v1's cpuacct
    (unless `v1` is False); None where none can be made here (not root, a read-only mount). It is
    removed at the end."""
    reader = CgroupReader()
    if not v1:
        reader.v1 = None
    try:
        made = OwnCgroup.make(reader, f"{prefix}-{uuid.uuid4().hex[:8]}")
    except CgroupUnavailable:
        yield None
        return
    try:
        yield made
    finally:
        made.remove()


def usage_ns(directory: Path) -> int:
    """The CPU time a cgroup's counter (v2 `cpu.stat`, else v1 `cpuacct.usage`) says its processes used, ns."""
    if (directory / "cpu.stat").is_file():
        return int((directory / "cpu.stat").read_text().split()[1]) * 1000
    return int((directory / "cpuacct.usage").read_text())


@contextlib.contextmanager
def container_cgroup(shape: str) -> Iterator[Path | None]:
    """A real cgroup shaped as a container engine or the kubelet makes a container's, `SHAPE` (`docker/ID`,
    `kubepods/pod<uid>/ID`) below a new cgroup below this process's own, for the block: its directory
    (write a pid to its cgroup.procs to put a process in it, and /proc shows it in that container or
    pod), or None where no cgroup can be made here. What still runs in it at the end is moved out."""
    with new_cgroup("wattprobe-test") as base:
        if base is None:
            yield None
            return
        top = Path(base.directory)
        leaf = top / shape.strip("/")
        leaf.mkdir(parents=True)
        try:
            yield leaf
        finally:
            for directory in [leaf, *leaf.parents[: len(leaf.relative_to(top).parts) - 1]]:
                for pid in (directory / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (top / "cgroup.procs").write_text(pid)
                with contextlib.suppress(OSError):
                    directory.rmdir()
