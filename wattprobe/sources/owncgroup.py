"""A cgroup of a command's own: the kernel then counts its CPU time, every process it ever ran included.

`wattprobe run` puts the command in a new cgroup below wattprobe's own (cgroup v2 where mounted, else
v1's cpuacct): `usage_usec` (v2) or `cpuacct.usage` (v1) then counts every process of the command to
the µs, those that exited between two scans and those that escaped the process tree (a daemon that
double-forked) alike. Making one needs write access to wattprobe's cgroup: root, or a delegated
subtree (systemd's `user@.service`, a container with its cgroup namespace writable). Without it the
caller measures the process tree instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time

from wattprobe.sources.cgroupfs import CgroupReader, cgroup_paths

# How long removal waits for processes that are exiting to leave the cgroup.
REMOVE_WAIT_S = 0.5


class CgroupUnavailable(Exception):
    """No cgroup could be made; the message says why, in a few words."""


class OwnCgroup:
    """A cgroup made for one command; `enter()` (in the child, before exec) moves the caller into it."""

    def __init__(self, path: str, directory: str, parent_directory: str, v2: bool) -> None:
        self.path = path  # relative to the hierarchy's root, as /proc/PID/cgroup names it
        self.directory = directory
        self.v2 = v2
        self._parent = parent_directory
        self._procs = os.open(f"{directory}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    @classmethod
    def make(cls, reader: CgroupReader, name: str, procfs_root: str = "/proc") -> OwnCgroup:
        """A new cgroup `name` below this process's own, in the hierarchy `reader` reads; raises
        CgroupUnavailable with the reason when none can be made."""
        try:
            with open(f"{procfs_root}/self/cgroup") as f:
                own = cgroup_paths(f.read())
        except OSError as error:
            raise CgroupUnavailable(f"cannot read {procfs_root}/self/cgroup: {error.strerror}") from None
        why = f"no cgroup v2 hierarchy nor v1 cpuacct under {reader.root}"
        for base, v2 in ((reader.v2, True), (reader.v1, False)):
            parent = own.get("" if v2 else "cpuacct")
            if base is None or parent is None:
                continue
            if "/.." in parent:
                why = "wattprobe's own cgroup is outside this cgroup namespace's view"
                continue
            path = f"{parent.rstrip('/')}/{name}"
            directory = f"{base}{path}"
            try:
                os.mkdir(directory, 0o755)
            except OSError as error:
                why = _why(error, f"{base}{parent}")
                continue
            try:
                return cls(path, directory, f"{base}{parent}", v2)
            except OSError as error:
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
                why = _why(error, directory)
        raise CgroupUnavailable(why)

    def enter(self) -> None:
        """Move the calling process into the cgroup (for a child between fork and exec)."""
        os.write(self._procs, b"0")

    def members(self) -> list[int]:
        """The pids in the cgroup now."""
        try:
            with open(f"{self.directory}/cgroup.procs") as f:
                return [int(line) for line in f if line.strip()]
        except (OSError, ValueError):
            return []

    def remove(self) -> str | None:
        """Move what still runs in it to wattprobe's own cgroup, and remove it; None when done, else
        why it stays."""
        os.close(self._procs)
        deadline = time.monotonic() + REMOVE_WAIT_S
        while True:
            for pid in self.members():
                with contextlib.suppress(OSError), open(f"{self._parent}/cgroup.procs", "w") as f:
                    f.write(str(pid))  # (OSError: it exited meanwhile)
            try:
                os.rmdir(self.directory)
                return None
            except FileNotFoundError:
                return None
            except OSError as error:
                if error.errno != errno.EBUSY or time.monotonic() >= deadline:
                    return f"cannot remove {self.directory}: {error.strerror}"
            time.sleep(0.01)  # exiting processes leave it a moment after their end


def _why(error: OSError, where: str) -> str:
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to make a cgroup in {where} (run as root, or from a delegated cgroup)"
    if error.errno == errno.EROFS:
        return f"the cgroup filesystem at {where} is read-only (a container?)"
    return f"cannot make a cgroup in {where}: {error.strerror}"
