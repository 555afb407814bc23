"""Moves between cgroups, told by inotify, so that a quiet cgroup need not be listed at every scan.

A process changes cgroup only when someone writes its pid to a cgroup's `cgroup.procs`,
`cgroup.threads` (v2) or `tasks` (v1), and a write to a file wakes the inotify watches of its
directory, cgroupfs included. `MoveWatch` watches every directory of a hierarchy (the new ones too)
for those writes: while none came, every cgroup still holds the processes its last listing showed.
It only covers a hierarchy mounted whole (its mount's root is the hierarchy's), seen from the
cgroup namespace of pid 1 where that can be read: a move to a cgroup outside the view would write
no file it watches. Where it cannot cover, `open_watch` gives None and the cgroups are listed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import struct
from collections.abc import Callable

from wattprobe.sources.mounts import mounts

log = logging.getLogger(__name__)

_IN_MODIFY = 0x2
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x01000000
_IN_ISDIR = 0x40000000
_MASK = _IN_MODIFY | _IN_MOVED_TO | _IN_CREATE | _IN_ONLYDIR
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
_MOVE_FILES = frozenset((b"cgroup.procs", b"cgroup.threads", b"tasks"))


class MoveWatch:
    """inotify watches on every directory below `roots`; `moved()` says whether a process may have
    changed cgroup since the last call (or a watch could not be set: then always)."""

    def __init__(self, fd: int, add_watch: Callable[[int, bytes, int], int], roots: list[str]) -> None:
        self._fd = fd
        self._add_watch = add_watch
        self._roots = roots
        self._dirs: dict[int, str] = {}  # watch descriptor -> directory
        self.complete = True  # every directory is watched
        self._pending = select.poll()
        self._pending.register(fd, select.POLLIN)
        for root in roots:
            self._watch_tree(root)

    def moved(self) -> bool:
        """Whether, since the last call, a process was written to a cgroup, a cgroup was made, or an
        event was lost: each of these may have taken a process out of the cgroup it was listed in."""
        moved = False
        while self._pending.poll(0):  # a poll, not a read refused with an exception: most scans find none
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            except OSError:  # the watch itself broke: never trusted again
                self.complete = False
                break
            if not data:  # not what inotify answers: never trusted again
                self.complete = False
                break
            moved |= self._events(data)
        return moved or not self.complete

    def _events(self, data: bytes) -> bool:
        moved, offset = False, 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & _IN_Q_OVERFLOW:  # events were dropped, new directories' among them
                moved = True
                for root in self._roots:
                    self._watch_tree(root)
            elif mask & _IN_IGNORED:  # the directory is gone
                self._dirs.pop(wd, None)
            elif mask & _IN_ISDIR:  # a new cgroup: watched from now on; a move into it may have come first
                moved = True
                parent = self._dirs.get(wd)
                if parent is not None:
                    self._watch_tree(os.path.join(parent, os.fsdecode(name)))
            elif name in _MOVE_FILES:
                moved = True
        return moved

    def _watch_tree(self, top: str) -> None:
        stack = [top]
        while stack:
            directory = stack.pop()
            wd = self._add_watch(self._fd, os.fsencode(directory), _MASK)
            if wd < 0:
                error = ctypes.get_errno()
                if error in (errno.ENOENT, errno.ENOTDIR):  # removed since it was listed
                    continue
                if self.complete:
                    log.info("cannot watch %s for moves between cgroups (%s): cgroups are listed at every scan",
                             directory, os.strerror(error))  # fmt: skip
                self.complete = False
                return
            self._dirs[wd] = directory
            with contextlib.suppress(OSError), os.scandir(directory) as entries:
                stack += [e.path for e in entries if e.is_dir(follow_symlinks=False)]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_watch(roots: list[str], procfs_root: str = "/proc") -> MoveWatch | None:
    """A watch over the hierarchies mounted at `roots`, or None where it cannot see every move."""
    if not roots or not all(_mounted_whole(root, procfs_root) for root in roots):
        return None
    with contextlib.suppress(OSError):  # unreadable (another user namespace): the mounts decide
        if os.readlink(f"{procfs_root}/1/ns/cgroup") != os.readlink(f"{procfs_root}/self/ns/cgroup"):
            return None  # a cgroup namespace of our own: moves out of its view write nothing we see
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init, add_watch = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError):
        return None
    add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
    fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        return None
    watch = MoveWatch(fd, add_watch, roots)
    if not watch.complete:
        watch.close()
        return None
    return watch


def _mounted_whole(directory: str, procfs_root: str) -> bool:
    """Whether a cgroup hierarchy is mounted at `directory` from its root (not a subtree bound there)."""
    target = os.path.realpath(directory)
    cgroups = (m for m in mounts(procfs_root) if m.fstype in ("cgroup2", "cgroup") and m.point == target)
    return next((m.root == "/" for m in cgroups), False)
