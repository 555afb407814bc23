"""Which cpu stands for each socket in HWPC reports: the first cpu of that physical package."""

from __future__ import annotations

import os
import re

SYSFS_CPU_ROOT = "/sys/devices/system/cpu"
_CPU_DIR = re.compile(r"^cpu(\d+)$")


def first_cpus(root: str = SYSFS_CPU_ROOT) -> dict[int, int]:
    """Physical package id -> lowest logical cpu id in it, from cpuN/topology/physical_package_id.

    Cpus without a readable topology (offline, or a machine that exposes none) are skipped; an
    empty result makes callers fall back to cpu 0 for every socket.
    """
    try:
        entries = os.listdir(root)
    except OSError:
        return {}
    first: dict[int, int] = {}
    for entry in entries:
        match = _CPU_DIR.match(entry)
        if match is None:
            continue
        cpu = int(match.group(1))
        try:
            with open(f"{root}/{entry}/topology/physical_package_id") as f:
                package = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if package >= 0 and cpu < first.get(package, cpu + 1):
            first[package] = cpu
    return first
