"""A real process that /proc shows as a QEMU guest: argv[0] is qemu-system-x86_64, QEMU's options follow."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def fake_qemu(*args: str, busy: bool = False) -> Iterator[subprocess.Popen]:
    """A Python interpreter whose argv is `qemu-system-x86_64 -c CODE ARGS`: it spins on one CPU when
    `busy` (so that it has power), else waits; killed at the end of the block."""
    code = "while True: pass" if busy else "import sys; sys.stdin.read()"
    argv = ["qemu-system-x86_64", "-c", code, *args]
    with subprocess.Popen(argv, executable=sys.executable, stdin=subprocess.PIPE) as process:
        try:
            yield process
        finally:
            process.kill()
