"""procfs, split by job: scan.py (the per-tick hot path: every process's CPU time), lineage.py (the time
of exited descendants, credited to their reaper), facts.py (exe, command line, cgroup, memory, I/O of
the processes a Frame lists), files.py (the kernel's units). Quiet cgroups are in
sources/quiet_cgroups.py, container and VM identity in sources/identity/."""

from wattprobe.sources.procfs.files import PAGE_SIZE, TICK_NS
from wattprobe.sources.procfs.scan import (
    FD_RESERVE,
    ProcfsReader,
    key_pid,
    parse_machine_cpu,
    raise_fd_limit,
    read_machine_cpu,
    task_key,
)

__all__ = [
    "FD_RESERVE",
    "PAGE_SIZE",
    "TICK_NS",
    "ProcfsReader",
    "key_pid",
    "parse_machine_cpu",
    "raise_fd_limit",
    "read_machine_cpu",
    "task_key",
]
