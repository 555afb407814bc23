"""A real process that /proc shows as a QEMU guest: argv[0] is qemu-system-x86_64, QEMU's options follow."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.processes import child


@contextmanager
def fake_qemu(*args: str, busy: bool = False, bash: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """An interpreter (Python's, or bash with `bash`) whose argv is `qemu-system-x86_64 -c CODE ARGS`:
    it spins on one CPU when `busy` (so that it has power), else waits; killed at the end of the block."""
    with child(*args, busy=busy, argv0="qemu-system-x86_64", bash=bash) as process:
        yield process
