"""What every part of the procfs reader shares: the kernel's units, and how a file is read when no
descriptor is kept for it."""

from __future__ import annotations

import os

TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_NO_FD = -1
_NO_IO = -2  # /proc/PID/io could not be opened (another user's process, no task I/O accounting)


def _read_file(path: str) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return f.read()
