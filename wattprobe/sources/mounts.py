"""The mount table as the kernel gives it to this process (/proc/self/mountinfo)."""

from __future__ import annotations

import os
from typing import NamedTuple


class Mount(NamedTuple):
    point: str  # where it is mounted
    root: str  # the directory of its file system mounted there ("/": the whole of it)
    fstype: str


def mounts(procfs_root: str = "/proc") -> list[Mount]:
    """Every mount this process sees, in the table's order (a later one over an earlier); [] when the
    table cannot be read."""
    try:
        with open(f"{procfs_root}/self/mountinfo", "rb") as f:
            lines = f.read().split(b"\n")
    except OSError:
        return []
    found = []
    for line in lines:
        fields, _, after = line.partition(b" - ")
        parts = fields.split(b" ")
        if len(parts) >= 5 and after:
            point, root = (unescape(os.fsdecode(part)) for part in (parts[4], parts[3]))
            found.append(Mount(point, root, os.fsdecode(after.split(b" ")[0])))
    return found


def filesystem_of(path: str, procfs_root: str = "/proc") -> str | None:
    """The type of the file system `path` (symbolic links resolved) is on: `sysfs`, `tmpfs`...; None
    when the table cannot say."""
    target = os.path.realpath(path)
    found = None
    longest = -1
    for mount in mounts(procfs_root):
        point = mount.point.rstrip("/")
        if (target == point or target.startswith(point + "/")) and len(point) >= longest:
            found, longest = mount.fstype, len(point)
    return found


def unescape(path: str) -> str:
    """A path as the mount tables write it: space, tab, newline and backslash in octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path
