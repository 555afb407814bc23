"""CPU time of cgroups from their own counters: exact to the µs, exited processes included.

cgroup v2 keeps `usage_usec` in every cgroup's `cpu.stat`, whatever controllers are enabled; v1
keeps `cpuacct.usage` (ns) in the hierarchy that carries cpuacct. Both count every process that
ever ran in the cgroup or below it, so a service's or a container's figure no longer depends on
which of its processes were alive at two instants. Counters are read only for the cgroups of
processes that appeared in a Frame, while one of them lives: one pread each per scan, none where
the quiet cgroups' check read the same file in the same scan.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping

_NONE: Mapping[str, bytes] = {}


def counter_file(directory: str, v2: bool) -> str:
    """The file of a cgroup's CPU counter: v2's `cpu.stat`, v1's `cpuacct.usage`. One spelling for the
    reader and the quiet cgroups' check, which share what they read by this path."""
    return f"{directory}/{'cpu.stat' if v2 else 'cpuacct.usage'}"


def counter_ns(data: bytes, v2: bool) -> int:
    """A counter file's CPU time in ns: v2 `cpu.stat`'s first line, usage_usec; v1 `cpuacct.usage`.
    ValueError for a file that is no such counter."""
    if v2:
        name, value = data.split(None, 2)[:2]
        if name != b"usage_usec":
            raise ValueError(f"{name!r} where usage_usec was due")
        return int(value) * 1000
    return int(data)


def cgroup_paths(text: str) -> dict[str, str]:
    """Controller ("" for the v2 hierarchy) -> path, from /proc/<pid>/cgroup.

    Lines end at a newline only: a cgroup's name may hold a carriage return, U+0085 or U+2028, which
    `splitlines` would cut it at. A line without its two colons is not one (nor a path's stray part).
    """
    paths: dict[str, str] = {}
    for line in text.split("\n"):
        controllers, colon, path = line.partition(":")[2].partition(":")
        if not colon:
            continue
        for controller in controllers.split(","):
            paths.setdefault(controller, path)
    return paths


class _Counter:
    __slots__ = ("fd", "file", "refs", "v2")

    def __init__(self, file: str, v2: bool) -> None:
        self.file = file
        self.v2 = v2
        self.refs = 0
        self.fd = -1


class CgroupReader:
    """Reads the CPU counters of the cgroups processes are tracked in; `root` None reads none."""

    def __init__(self, root: str | None = "/sys/fs/cgroup") -> None:
        self.root = root
        self.v2: str | None = None
        self.v1: str | None = None
        if root is not None:
            self.v2 = next(
                (d for d in (root, f"{root}/unified") if os.path.isfile(f"{d}/cgroup.controllers")), None
            )
            self.v1 = next(
                (
                    f"{root}/{name}"
                    for name in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu")
                    if os.path.isfile(f"{root}/{name}/cpuacct.usage")
                ),
                None,
            )
        self._counters: dict[str, _Counter] = {}  # by cgroup path
        self._usage: dict[str, int] = {}

    def counters_for(self, text: str, cgroup: str, container: str | None) -> tuple[str, ...]:
        """Of a process's cgroup and its container's (paths from /proc/<pid>/cgroup `text`), those
        with a counter of their own; the root is the machine, not a group."""
        if cgroup == "/" or (self.v2 is None and self.v1 is None) or "/.." in cgroup:
            return ()  # "/..": outside this cgroup namespace's view of the tree
        paths = cgroup_paths(text)
        if self.v2 is not None and paths.get("") == cgroup:
            base, v2 = self.v2, True
        elif self.v1 is not None and paths.get("cpuacct") == cgroup:
            base, v2 = self.v1, False
        else:
            return ()
        found = []
        for path in dict.fromkeys(p for p in (cgroup, container) if p and p != "/"):
            if path not in self._counters:
                self._counters[path] = _Counter(counter_file(f"{base}{path}", v2), v2)
            found.append(path)
        return tuple(found)

    def watch(self, path: str, *, v2: bool) -> bool:
        """Read the counter of the cgroup at `path` (in the v2 hierarchy, else v1's cpuacct) at every
        scan from now on, whether or not its processes appear in a Frame: a command's own cgroup is
        measured from its first process. False when this reader has no such hierarchy."""
        base = self.v2 if v2 else self.v1
        if base is None:
            return False
        if path not in self._counters:
            self._counters[path] = _Counter(counter_file(f"{base}{path}", v2), v2)
        self.track((path,))
        return True

    def unwatch(self, path: str) -> None:
        """Stop what `watch` started (the cgroup is about to be removed)."""
        self.untrack((path,))

    def track(self, paths: tuple[str, ...]) -> None:
        for path in paths:
            counter = self._counters[path]
            counter.refs += 1
            if counter.refs == 1:
                with contextlib.suppress(OSError):
                    counter.fd = os.open(counter.file, os.O_RDONLY | os.O_CLOEXEC)

    def untrack(self, paths: tuple[str, ...]) -> None:
        for path in paths:
            counter = self._counters.get(path)
            if counter is None:
                continue
            counter.refs -= 1
            if counter.refs <= 0:
                self._close(path)

    def read(self, read: Mapping[str, bytes] = _NONE) -> None:
        """Read every tracked counter now (the scan's instant); an unreadable one is left out. `read`
        has counter files already read in this scan, by path, as read (the quiet cgroups' check):
        each file is read once a scan."""
        usage = {}
        for path, counter in self._counters.items():
            if counter.fd < 0:
                continue
            try:
                ns = counter_ns(read.get(counter.file) or os.pread(counter.fd, 256, 0), counter.v2)
            except (OSError, ValueError):
                continue  # removed (ENODEV), or not a counter: the group falls back to its processes
            if ns >= 0:
                usage[path] = ns
        self._usage = usage

    def usage(self) -> dict[str, int]:
        return self._usage

    def _close(self, path: str) -> None:
        counter = self._counters.pop(path)
        if counter.fd >= 0:
            os.close(counter.fd)

    def close(self) -> None:
        for path in list(self._counters):
            self._close(path)
        self._usage = {}
