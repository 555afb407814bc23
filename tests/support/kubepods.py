"""Real processes in the cgroups container engines and the kubelet make: `/docker/ID`,
`/kubepods/besteffort/podUID/ID`, so that /proc shows them as a container's or a pod's."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from wattprobe.sources.cgroupfs import CgroupReader


@contextlib.contextmanager
def placed(pid: int, path: str) -> Iterator[str | None]:
    """Move `pid` into a new cgroup at `path` (made with its parents, v2 where mounted, else v1's
    cpuacct) for the block; yields None, moving nothing, where none can be made here (not root, a
    read-only mount). At the end what runs in it goes back to the root, and what was made is removed."""
    reader = CgroupReader()
    base = reader.v2 or reader.v1
    made: list[str] = []
    if base is not None:
        directory = base
        try:
            for part in path.strip("/").split("/"):
                directory = f"{directory}/{part}"
                if not os.path.isdir(directory):
                    os.mkdir(directory, 0o755)
                    made.append(directory)
            with open(f"{directory}/cgroup.procs", "w") as f:
                f.write(str(pid))
        except OSError:
            _remove(base, made)
            made = []
            base = None
    try:
        yield path if base is not None else None
    finally:
        if base is not None:
            _remove(base, made)


def _remove(base: str, made: list[str]) -> None:
    for directory in reversed(made):
        deadline = time.monotonic() + 5.0
        while True:
            with contextlib.suppress(OSError), open(f"{directory}/cgroup.procs") as f:
                for line in f:
                    with contextlib.suppress(OSError), open(f"{base}/cgroup.procs", "w") as root:
                        root.write(line.strip())
            try:
                os.rmdir(directory)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
