"""Process facts, off the hot path: exe, command line (secrets hidden), cgroup, container, VM, memory
and disk I/O, read once per process and exec for the processes a Frame lists."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from wattprobe.core.model import DiskIo, ProcessInfo, container_cgroup
from wattprobe.sources.cgroupfs import CgroupReader
from wattprobe.sources.identity.containers import parse_cgroup
from wattprobe.sources.identity.redaction import Redactor
from wattprobe.sources.identity.vms import find_guest
from wattprobe.sources.kept_files import KeptFiles
from wattprobe.sources.procfs.files import _NO_FD, _NO_IO, PAGE_SIZE, _read_file

if TYPE_CHECKING:
    from wattprobe.sources.procfs.scan import _Task


class Facts:
    """The per-consumer part of the procfs reader."""

    root: str
    redactor: Redactor
    cgroups: CgroupReader
    _files: KeptFiles
    _by_key: dict[int, _Task]

    def _open(self, path: str) -> int:
        raise NotImplementedError  # the scan's

    def _read(self, fd: int, pid: int, name: str) -> bytes:
        raise NotImplementedError  # the scan's

    def _close(self, fd: int) -> None:
        raise NotImplementedError  # the scan's

    def process(self, key: int) -> tuple[ProcessInfo, int, int, DiskIo | None] | None:
        """Static facts, RSS and virtual size (bytes) and disk I/O of a live process seen at the last
        scan (its /proc/PID/io is read here, so only for the processes a Frame lists)."""
        task = self._by_key.get(key)
        if task is None:
            return None
        if task.info is None:
            task.info, task.cgroups = self._read_info(task)
            self.cgroups.track(task.cgroups)
        return task.info, task.rss * PAGE_SIZE, task.vsize, self._disk_io(task)

    def _disk_io(self, task: _Task) -> DiskIo | None:
        """Bytes read and written through the storage layer; None where /proc/PID/io is not ours to read
        (tried once per process and exec: an agent without privileges is refused every other user's at
        the open; one with fewer capabilities than a process, or in another user namespace, at the read)."""
        if task.io_fd == _NO_IO:
            return None
        try:
            if task.io_fd == _NO_FD:
                try:
                    task.io_fd = self._open(f"{self.root}/{task.pid}/io")
                except OSError:
                    task.io_fd = _NO_IO
                    return None
            try:
                raw = self._read(task.io_fd, task.pid, "io")
            except PermissionError:
                self._close(task.io_fd)
                task.io_fd = _NO_IO
                return None
            last = task.io
            if last is not None and raw == task.io_raw:  # no I/O since (a kernel thread's, mostly)
                if last.read_delta or last.write_delta:
                    last = task.io = DiskIo(last.read_bytes, last.write_bytes, 0, 0)
                return last
            data = b"\n" + raw
            read, write = _io_field(data, b"\nread_bytes: "), _io_field(data, b"\nwrite_bytes: ")
        except (OSError, ValueError):
            return None
        if last is None:
            last = DiskIo(read, write, 0, 0)
        task.io_raw = raw
        task.io = DiskIo(read, write, read - last.read_bytes, write - last.write_bytes)
        return task.io

    def own_memory(self) -> tuple[int, int]:
        """The agent's own resident and virtual size in bytes (the real /proc: it is this process)."""
        try:
            size, resident = self._files.read("/proc/self/statm", 256).split()[:2]
        except (OSError, ValueError):
            return 0, 0
        return int(resident) * PAGE_SIZE, int(size) * PAGE_SIZE

    def _drop_info(self, task: _Task) -> None:
        self.cgroups.untrack(task.cgroups)
        task.info, task.cgroups = None, ()
        if task.io_fd == _NO_IO:  # an exec may have changed whose process it is: try /proc/PID/io again
            task.io_fd = _NO_FD

    def _renamed(self, task: _Task) -> None:
        """A kernel thread took a new name (a worker about to end is `kworker/dying`): only that changed."""
        if task.info is not None:
            task.info = dataclasses.replace(task.info, comm=task.comm.decode(errors="replace"))

    def _read_info(self, task: _Task) -> tuple[ProcessInfo, tuple[str, ...]]:
        base = f"{self.root}/{task.pid}"
        try:
            exe = os.readlink(f"{base}/exe")
        except OSError:
            exe = ""  # kernel thread, or another user's process without privileges
        counters: tuple[str, ...] = ()
        try:
            raw = _read_file(f"{base}/cmdline").rstrip(b"\0")
            argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0")) if raw else ()
            text = _read_file(f"{base}/cgroup").decode(errors="replace")
            cgroup, container = parse_cgroup(text)
            counters = self.cgroups.counters_for(text, cgroup, container_cgroup(cgroup, container))
        except OSError:
            argv, cgroup, container = (), "/", None
        comm = task.comm.decode(errors="replace")
        guest = find_guest(argv, exe, task.pid)  # from the argv as given, before any redaction
        argv = self.redactor.argv(argv)
        info = ProcessInfo(
            task.pid,
            comm,
            exe,
            " ".join(argv),
            cgroup,
            container,
            argv,
            vm=guest.name if guest else None,
            vm_folder=guest.folder if guest else None,
        )
        return info, counters


def _io_field(data: bytes, name: bytes) -> int:
    """The number on the line of /proc/PID/io (after a newline) that starts with `name`; ValueError if none."""
    start = data.index(name) + len(name)
    end = data.find(b"\n", start)
    value = int(data[start:] if end < 0 else data[start:end])
    if value < 0:
        raise ValueError("a negative count")
    return value
