"""Many cheap processes for benchmarks: idle ones and churning ones (busy ones: tests/support/workloads.py).

Every child is forked by one small helper interpreter, started in its own session. The children
block reading a pipe whose only write end this process holds, so they all exit when the swarm is
closed or when this process dies, whatever kills it: nothing is left behind. A swarm can live in a
cgroup of its own (`own_cgroup()`), as the processes of a service or a container do. Its processes
can carry a long argument (the children show the helper's command line, which /proc reads from their
memory), and wake now and then, so that they run in every window and an agent reads their facts.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.cgroups import new_cgroup

# The helper: move into the cgroup given (if any), fork `n` children that wait for EOF on fd 0 (waking
# every `wake` seconds, if given), print their pids, then (churn mode) fork one more and kill the oldest
# churned child `rate` times a second, until stdin closes. Arguments after the fifth are ignored.
_HELPER = r"""
import os, select, signal, sys, time
n, rate, keep, procs = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
wake = float(sys.argv[5])
if procs:
    with open(procs, "w") as f:
        f.write(str(os.getpid()))
signal.signal(signal.SIGCHLD, signal.SIG_DFL)
def child():
    pid = os.fork()
    if pid == 0:
        try:
            os.close(1)
            while not select.select([0], [], [], wake or None)[0]:
                pass
        finally:
            os._exit(0)
    return pid
pids = [child() for _ in range(n)]
os.write(1, (" ".join(map(str, pids)) + "\n").encode())
churned, born, killed = [], 0, 0
due = time.monotonic()
while True:
    if rate > 0:
        wait = max(0.0, due - time.monotonic())
    else:
        wait = None
    if select.select([0], [], [], wait)[0]:
        break  # EOF: the benchmark is done
    if rate > 0:
        due += 1 / rate
        churned.append(child())
        born += 1
        if len(churned) > keep:
            victim = churned.pop(0)
            os.kill(victim, signal.SIGKILL)
            os.waitpid(victim, 0)
            killed += 1
for pid in pids + churned:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
os.write(1, f"{born} {killed}\n".encode())
"""


def raise_limits(processes: int) -> None:
    """Soft limits up to what `processes` extra processes (and one fd pair each) need, within the hard ones."""
    for limit, want in (
        (resource.RLIMIT_NOFILE, 4 * processes + 1024),
        (resource.RLIMIT_NPROC, processes + 4096),
    ):
        soft, hard = resource.getrlimit(limit)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(limit, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


@contextlib.contextmanager
def own_cgroup() -> Iterator[Path | None]:
    """A new, empty cgroup for the block (its directory), removed at its end; None where no cgroup
    hierarchy with a CPU counter is writable here (not root, or a read-only mount)."""
    with new_cgroup("wattprobe-bench") as made:
        yield None if made is None else Path(made.directory)


# What a long argument is made of: a long word (a blob: base64, a path list; the shape that made
# redaction quadratic) and words, options, a URL, pairs (none secret), as an inline script has.
ARG_UNIT = "A" * 4000 + " --opt=a:b https://host/p?q=1 echo $x; "
MAX_ARG = 131_071  # the longest argument the kernel takes (MAX_ARG_STRLEN, 32 pages), less its NUL


def long_argument(size: int) -> str:
    """An argument of `size` characters (at most MAX_ARG)."""
    return (ARG_UNIT * (size // len(ARG_UNIT) + 1))[:size]


class Swarm:
    """`n` idle processes; with `churn_per_s`, also processes born and SIGKILLed at that rate; with
    `cgroup` (a directory from `own_cgroup()`), all of them in that cgroup; with `arg_bytes`, each with
    an argument that long (see `long_argument`); with `wake_s`, each wakes that often."""

    def __init__(
        self,
        n: int,
        *,
        churn_per_s: float = 0.0,
        churn_alive: int = 100,
        cgroup: Path | None = None,
        arg_bytes: int = 0,
        wake_s: float = 0.0,
    ) -> None:
        raise_limits(n + churn_alive)
        read_end, self._write_end = os.pipe()
        procs = str(cgroup / "cgroup.procs") if cgroup is not None else ""
        argument = [long_argument(arg_bytes)] if arg_bytes else []
        self.helper = subprocess.Popen(
            [
                sys.executable,
                "-S",
                "-c",
                _HELPER,
                *(str(n), str(churn_per_s), str(churn_alive), procs, str(wake_s)),
                *argument,
            ],
            stdin=read_end,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        os.close(read_end)
        line = self.helper.stdout.readline().split()
        self.pids = [int(pid) for pid in line]
        if len(self.pids) != n:
            self.close()
            raise RuntimeError(f"the swarm helper started {len(self.pids)} of {n} processes")
        self.born = self.killed = 0

    def close(self) -> None:
        """Close the pipe: every child reads EOF and exits; the helper reaps them and reports churn."""
        if self._write_end >= 0:
            os.close(self._write_end)
            self._write_end = -1
        try:
            counts = self.helper.stdout.readline().split()
            self.helper.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.helper.pid, signal.SIGKILL)
            self.helper.wait()
            counts = []
        self.helper.stdout.close()
        if len(counts) == 2:
            self.born, self.killed = int(counts[0]), int(counts[1])

    def __enter__(self) -> Swarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
