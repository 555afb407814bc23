"""What the tests of `wattprobe run` and `wattprobe.measure()` share: a VM's synthetic 40 W tree, the
command that runs wattprobe on it, and whether this user may make cgroups."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support import agents
from tests.support.paths import REPO
from tests.support.powercap_tree import Key, PowercapTree

__all__ = ["REPO", "WATTS", "can_make_cgroups", "vm_tree", "wattprobe_run"]

WATTS = 40.0
# A VM's tree: host power = the package's.
TREE_WATTS: dict[Key, float] = {(0, "package"): WATTS, (0, "core"): 25.0}


@contextlib.contextmanager
def vm_tree(root: Path) -> Iterator[PowercapTree]:
    """A VM's powercap tree at `root` drawing WATTS, advanced in real time for the block."""
    tree = PowercapTree(root, TREE_WATTS, start_uj=1_000_000_000, max_uj=2**60)
    with tree.running():
        yield tree


def wattprobe_run(
    tree_root: Path, *args: str, global_args: tuple[str, ...] = (), timeout: float = 60
) -> subprocess.CompletedProcess:
    """`wattprobe --vm [global_args] run ARGS` reading the tree at `tree_root`."""
    return agents.run(
        agents.command("--vm", *global_args, "run", *args),
        timeout=timeout,
        env={**os.environ, "SCAPHANDRE_POWERCAP_PATH": str(tree_root)},
    )


def can_make_cgroups() -> bool:
    """Whether this user may make a cgroup beside its own (root, or a delegated subtree)."""
    from wattprobe.sources.cgroupfs import CgroupReader
    from wattprobe.sources.owncgroup import CgroupUnavailable, OwnCgroup

    try:
        cgroup = OwnCgroup.make(CgroupReader(), f"wattprobe-test-{os.getpid()}")
    except CgroupUnavailable:
        return False
    cgroup.remove()
    return True
