"""Real workloads whose CPU time is known: threaded C loads, shell loops of short children, parallel makes.

Tests and benchmarks judge attribution against what a workload measured itself. A threaded load
writes each thread's CPU time into shared memory as it runs, so the truth can be read at any
instant; short-lived workloads are timed as a whole with RUSAGE_CHILDREN, the kernel's own sum of
everything they and their descendants used. Command lines carry a marker so that their processes
can be found among the consumers of a Frame or a JSON document.
"""

from __future__ import annotations

import mmap
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

# Each lane is one thread that burns `duty` of every period and keeps its CPU time (ns) in its slot.
# With a life (ms), a lane is a chain of short-lived threads: each burns for its life, starts its
# successor and exits; the main thread then writes the whole process's CPU time (dead threads,
# their creation and exit included) into the first slot every millisecond. With one lane and no
# life, the process is single-threaded. Usage:
#   threaded FD FIRST_SLOT LANES DUTY PERIOD_MS LIFE_MS
THREADED_C = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static volatile int64_t *slots;
static double duty;
static int64_t period_ns, life_ns;
static pthread_attr_t detached;

struct lane { int slot; };

static int64_t clock_ns(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *run_lane(void *arg) {
    struct lane *lane = arg;
    int64_t start = clock_ns(CLOCK_MONOTONIC), next = start;
    for (;;) {
        int64_t busy_until = next + (int64_t)(duty * period_ns), now;
        while ((now = clock_ns(CLOCK_MONOTONIC)) < busy_until)
            if (life_ns == 0) slots[lane->slot] = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        if (life_ns == 0) slots[lane->slot] = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        next += period_ns;
        if (life_ns > 0 && now - start >= life_ns) {
            pthread_t successor;
            if (pthread_create(&successor, &detached, run_lane, lane) != 0) abort();
            return NULL;
        }
        if (now < next) {
            struct timespec pause = {(next - now) / 1000000000LL, (next - now) % 1000000000LL};
            nanosleep(&pause, NULL);
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 7) return 2;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = atoi(argv[1]), first = atoi(argv[2]), lanes = atoi(argv[3]);
    duty = atof(argv[4]);
    period_ns = (int64_t)(atof(argv[5]) * 1e6);
    life_ns = (int64_t)(atof(argv[6]) * 1e6);
    size_t size = (size_t)lseek(fd, 0, SEEK_END);
    slots = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (slots == MAP_FAILED) return 3;
    pthread_attr_init(&detached);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
    struct lane *all = calloc(lanes, sizeof *all);
    for (int i = 0; i < lanes; i++) all[i].slot = first + i;
    puts("ready");
    fflush(stdout);
    if (life_ns > 0) {
        for (int i = 0; i < lanes; i++) {
            pthread_t t;
            if (pthread_create(&t, &detached, run_lane, &all[i]) != 0) return 4;
        }
        for (;;) {
            slots[first] = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    }
    for (int i = 1; i < lanes; i++) {
        pthread_t t;
        if (pthread_create(&t, &detached, run_lane, &all[i]) != 0) return 4;
    }
    run_lane(&all[0]);
    return 0;
}
"""


def compiler() -> str | None:
    """The C compiler on PATH, if any."""
    return shutil.which("cc") or shutil.which("gcc")


def build_threaded(directory: Path) -> Path:
    """Compile the threaded load into `directory` (the caller skips when `compiler()` is None)."""
    source, binary = directory / "threaded.c", directory / "threaded"
    source.write_text(THREADED_C)
    subprocess.run(
        [compiler() or "cc", "-O1", "-pthread", "-o", str(binary), str(source)],
        check=True,
        capture_output=True,
    )
    return binary


class CpuSlots:
    """int64 slots in a shared file mapping, into which workloads write their own CPU time (ns)."""

    def __init__(self, n: int) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._file.truncate(8 * n)
        self._map = mmap.mmap(self._file.fileno(), 8 * n)
        self.slots = memoryview(self._map).cast("q")

    def fileno(self) -> int:
        return self._file.fileno()

    def values(self) -> list[int]:
        return self.slots.tolist()

    def close(self) -> None:
        self.slots.release()
        self._map.close()
        self._file.close()


class ThreadedLoads:
    """Threaded C loads sharing one CpuSlots; `cpu_ns()` is each load's own CPU time, all its threads."""

    def __init__(self, binary: Path, loads: list[tuple[int, float, float, float]]) -> None:
        """`loads`: (lanes, duty, period ms, thread life ms, 0 for threads that live on) per process."""
        self._lanes = [lanes for lanes, *_ in loads]
        self.cpu = CpuSlots(sum(self._lanes))
        self.processes: list[subprocess.Popen[bytes]] = []
        first = 0
        for lanes, duty, period_ms, life_ms in loads:
            args = [self.cpu.fileno(), first, lanes, duty, period_ms, life_ms]
            self.processes.append(
                subprocess.Popen(
                    [str(binary), *map(str, args)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    pass_fds=(self.cpu.fileno(),),
                )
            )
            first += lanes
        for process in self.processes:
            _stdout(process).readline()
        self.pids = [process.pid for process in self.processes]

    def cpu_ns(self) -> list[int]:
        values, first = self.cpu.values(), 0
        out: list[int] = []
        for lanes in self._lanes:
            out.append(sum(values[first : first + lanes]))
            first += lanes
        return out

    def close(self) -> None:
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait()
            _stdout(process).close()
        self.cpu.close()

    def __enter__(self) -> ThreadedLoads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# A busy child: burns `duty` of every `period` seconds (for `seconds`, or until killed when 0) and keeps
# its own CPU time (time.process_time_ns) in an 8-byte slot of a shared file mapping, so that it can be
# read at any instant; a finished child writes it a last time, says "done" and waits to be killed. It
# dies with its parent. Usage: busy DUTY PERIOD_S SLOT FD SECONDS
_BUSY = r"""
import ctypes, mmap, os, signal, sys, time
ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
duty, period, slot, fd = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
seconds = float(sys.argv[5])
# One aligned 8-byte store per update (struct.pack_into zero-fills first: a reader could see 0).
shared = memoryview(mmap.mmap(fd, 0)).cast("q")
cpu = time.process_time_ns
os.write(1, b"ready\n")
start = next_period = time.monotonic()
while seconds <= 0 or next_period - start < seconds:
    busy_until = next_period + duty * period
    while (now := time.monotonic()) < busy_until:
        shared[slot] = cpu()
    shared[slot] = cpu()
    next_period += period
    if now < next_period:
        time.sleep(next_period - now)
shared[slot] = cpu()
os.write(1, b"done\n")
signal.pause()
"""


class BusyChildren:
    """One Python child per duty cycle; `cpu_ns()` is each one's own CPU time, as it measured it.

    With `seconds`, each child burns for that long, then stops (`finished()` waits for that); without,
    until the block ends.
    """

    def __init__(self, duties: list[float], period_s: float = 0.02, seconds: float = 0.0) -> None:
        self._cpu = CpuSlots(len(duties))
        fd = self._cpu.fileno()
        self.children = [
            subprocess.Popen(
                [sys.executable, "-S", "-c", _BUSY, *map(str, (duty, period_s, i, fd, seconds))],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                pass_fds=(fd,),
            )
            for i, duty in enumerate(duties)
        ]
        for child in self.children:
            _stdout(child).readline()
        self.pids = [child.pid for child in self.children]

    def finished(self) -> list[int]:
        """Wait until every child has burnt its `seconds`; their own CPU time then, ns."""
        for child in self.children:
            if _stdout(child).readline() != b"done\n":
                raise RuntimeError(f"busy child {child.pid} ended before its time ({child.poll()})")
        return self.cpu_ns()

    def cpu_ns(self) -> list[int]:
        return self._cpu.values()

    def close(self) -> None:
        for child in self.children:
            child.kill()
        for child in self.children:
            child.wait()
            _stdout(child).close()
        self._cpu.close()

    def __enter__(self) -> BusyChildren:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def children_cpu_ns() -> int:
    """CPU time of every reaped descendant of this process so far (the kernel's own sum)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round((usage.ru_utime + usage.ru_stime) * 1e9)


def shell_loop(seconds: float, work_ms: float, marker: str) -> list[str]:
    """bash starting `python3 -c <about work_ms of CPU>` one after another for `seconds`."""
    work = f"import time\nend = time.process_time() + {work_ms / 1e3}\nwhile time.process_time() < end: pass"
    script = (
        f"end=$((SECONDS + {round(seconds)})); "
        f'while [ $SECONDS -lt $end ]; do python3 -S -c "{work}" {marker}; done'
    )
    return ["bash", "-c", script, marker]


def make_project(directory: Path, files: int) -> None:
    """`files` tiny C files and a Makefile that compiles each to an object; names carry the directory's name."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory.name
    for i in range(files):
        (directory / f"{stem}_{i:03d}.c").write_text(
            f"int {stem.replace('-', '_')}_{i}(int x) {{ int s = 0; for (int i = 0; i < x; i++) s += i * {i}; return s; }}\n"
        )
    (directory / "Makefile").write_text(
        "OBJS := $(patsubst %.c,%.o,$(wildcard *.c))\n"
        "all: $(OBJS)\n"
        "%.o: %.c\n\tcc -O1 -c $< -o $@\n"
        "clean:\n\trm -f *.o\n"
        ".PHONY: all clean\n"
    )


def make_rounds(directory: Path, rounds: int, jobs: int = 2) -> list[str]:
    """A shell that cleans and builds the project `rounds` times with `make -j jobs`."""
    build = f"make -s -C {directory} clean && make -s -j{jobs} -C {directory}"
    return ["sh", "-c", f"for i in $(seq {rounds}); do {build} || exit 1; done", str(directory)]


def started_by(marker: str, command: list[str], linger_s: float) -> list[str]:
    """`command` started by a shell that carries `marker`, waits for it and stays `linger_s` more.

    The process that reaps a workload's top process gets the time it used since it was last seen,
    as a shell or a CI runner that started it would; lingering, that shell is seen after the reap.
    """
    script = f'"$@"; status=$?; sleep {linger_s}; exit $status'
    return ["sh", "-c", script, marker, *command]


def run_counted(command: list[str]) -> int:
    """Run a workload to its end; its CPU time and its descendants', in ns."""
    before = children_cpu_ns()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return children_cpu_ns() - before


def _stdout(process: subprocess.Popen[bytes]) -> IO[bytes]:
    assert process.stdout is not None  # started with stdout=PIPE
    return process.stdout
