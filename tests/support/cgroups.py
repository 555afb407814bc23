"""Real cgroups made for a test or a benchmark: a new, empty one with a CPU counter, removed after."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.support.waiting import holds_within

ROOT = Path("/sys/fs/cgroup")
# Where a hierarchy with a CPU counter may be mounted, and the file that says it is one.
V2 = ((ROOT, "cgroup.controllers"), (ROOT / "unified", "cgroup.controllers"))
V1 = ((ROOT / "cpuacct", "cpuacct.usage"), (ROOT / "cpu,cpuacct", "cpuacct.usage"))


@contextlib.contextmanager
def new_cgroup(prefix: str, *, v1: bool = True) -> Iterator[Path | None]:
    """A new cgroup (its directory) for the block, v2 where there is one, else v1's cpuacct (unless
    `v1` is False); None where none can be made here (not root, a read-only mount). It is removed
    at the end, once the processes put in it are gone."""
    name, made = f"{prefix}-{uuid.uuid4().hex[:8]}", None
    for base, marker in (*V2, *(V1 if v1 else ())):
        if made is None and (base / marker).is_file():
            with contextlib.suppress(OSError):
                (base / name).mkdir()
                made = base / name
    try:
        yield made
    finally:
        if made is not None:
            holds_within(lambda: _removed(made), 10)


def counter_file(directory: Path) -> Path:
    """The cgroup's CPU counter: v2 `cpu.stat`, else v1 `cpuacct.usage`."""
    return directory / "cpu.stat" if (directory / "cpu.stat").is_file() else directory / "cpuacct.usage"


def usage_ns(directory: Path) -> int:
    """The CPU time the cgroup's counter says its processes used, in ns."""
    counter = counter_file(directory)
    text = counter.read_text()
    return int(text.split()[1]) * 1000 if counter.name == "cpu.stat" else int(text)


def _removed(directory: Path) -> bool:
    try:
        directory.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
