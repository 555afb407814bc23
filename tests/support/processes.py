"""Real processes for /proc to show: spinning on a CPU (so that they have power) or waiting, with argv
chosen (a marker to find them by, or an argv[0] such as a QEMU guest's). Workloads whose own CPU time is
known are in tests/support/workloads.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

# What the child runs with `-c`: spin on one CPU, or wait until its stdin closes.
_CODE = {
    ("python", True): "while True: pass",
    ("python", False): "import sys; sys.stdin.read()",
    ("bash", True): "while :; do :; done",
    ("bash", False): "read -r _",
}


@contextlib.contextmanager
def child(
    *args: str, busy: bool = True, argv0: str | None = None, bash: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -c CODE ARGS` (bash's with `bash`) for the block, killed at its end: it spins on one CPU
    when `busy`, else waits. `argv0` replaces argv[0] as /proc/PID/cmdline shows it; /proc/PID/exe
    stays the interpreter."""
    shell = "bash" if bash else "python"
    executable = (shutil.which("bash") or "/bin/bash") if bash else sys.executable
    argv = [argv0 or executable, "-c", _CODE[(shell, busy)], *args]
    with subprocess.Popen(argv, executable=executable, stdin=subprocess.PIPE) as process:
        try:
            yield process
        finally:
            process.kill()


@contextlib.contextmanager
def burners(n: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`n` processes spinning on a CPU each, for the block: a machine busy with something else."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(child()) for _ in range(n)]


def schedstat_ns(pid: int) -> int:
    """The CPU time of a live process (its threads that live included), ns, as the kernel keeps it."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def children(pid: int) -> list[int]:
    """The pids of the live children of process `pid` (of all its threads)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def pending(pid: int, signum: int) -> bool:
    """Whether signal `signum` was sent to process `pid` and not yet delivered (a SIGCONT sent meanwhile
    would discard a pending stop)."""
    status = Path(f"/proc/{pid}/status").read_text()
    masks = [
        int(line.split()[1], 16) for line in status.splitlines() if line.startswith(("SigPnd:", "ShdPnd:"))
    ]
    return any(mask >> (signum - 1) & 1 for mask in masks)


def open_files(below: Path | str) -> dict[int, str]:
    """The descriptors this process holds open on files below `below`, with their paths."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is closed by now
            found[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
    return {fd: path for fd, path in found.items() if path.startswith(str(below))}


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name: state, ppid, ... (see proc(5), from field 3)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()


@contextlib.contextmanager
def sleepers(n: int) -> Iterator[subprocess.Popen[bytes]]:
    """`n` processes that sleep for the block: a machine with many processes. One parent forks them (a
    fork of a small Python costs little memory), and kills and reaps them when its stdin closes."""
    code = (
        "import os, signal, sys\n"
        "pids = []\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        signal.pause()\n"
        "        os._exit(0)\n"
        "    pids.append(pid)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
        "for pid in pids:\n"
        "    os.kill(pid, signal.SIGKILL)\n"
        "for pid in pids:\n"
        "    os.waitpid(pid, 0)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-S", "-c", code, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as parent:
        assert parent.stdin is not None and parent.stdout is not None
        try:
            assert parent.stdout.readline() == b"ready\n"
            yield parent
        finally:
            parent.stdin.close()
            try:
                parent.wait(30)
            except subprocess.TimeoutExpired:
                parent.kill()
