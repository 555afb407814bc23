"""A synthetic powercap tree on disk whose RAPL counters advance at chosen powers."""

from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from wattprobe.core.model import EnergyReading, NameResolver
from wattprobe.core.sampler import Sampler
from wattprobe.sources.host import HostReader
from wattprobe.sources.powercap import PowercapSensor
from wattprobe.sources.procfs import ProcfsReader, read_machine_cpu

# Intel's usual range: 2**32 units of 61.035 µJ.
MAX_UJ = 262_143_328_850
Key = tuple[int | None, str]
# A package's power against the machine's CPU load (0..1): concave, as real packages draw (W).
LOAD_CURVE = ((0.0, 20.0), (0.25, 45.0), (0.5, 62.0), (0.75, 74.0), (1.0, 80.0))


def default_watts(sockets: int = 2, psys: bool = True) -> dict[Key, float]:
    """Package 20 W (core 12, uncore 3) and dram 5 W per socket; psys = all that + 10 W."""
    watts: dict[Key, float] = {}
    for s in range(sockets):
        watts |= {(s, "package"): 20.0, (s, "core"): 12.0, (s, "uncore"): 3.0, (s, "dram"): 5.0}
    if psys:
        watts[(None, "psys")] = 25.0 * sockets + 10.0
    return watts


class FakeClock:
    """A monotonic clock in ns, advanced by PowercapTree.advance(); `wall()` is the Unix time it stands for."""

    EPOCH = 1_700_000_000.0  # the Unix time at ns = 0

    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def wall(self) -> float:
        return self.EPOCH + self.ns / 1e9


class PowercapTree:
    """intel-rapl:N packages with core/uncore/dram domains and an optional psys zone, as sysfs lays them out.

    `start_uj` puts counters near their wrap; `advance()` adds energy deterministically;
    `running()` advances them in real time from another process, for end-to-end runs.
    """

    def __init__(
        self,
        root: Path,
        watts: dict[Key, float] | None = None,
        *,
        start_uj: int = 0,
        max_uj: int = MAX_UJ,
        mmio_duplicate: bool = False,
        tear_pause_s: float | None = None,
        max_power_w: float | None = None,
    ) -> None:
        self.root = root
        self.watts = dict(watts or default_watts())
        self.max_uj = max_uj
        self.tear_pause_s = tear_pause_s
        self.max_power_w = max_power_w
        self.clock = FakeClock()  # pass as PowercapSensor(clock=...) for deterministic windows
        self._stamp = multiprocessing.Value("q", 0, lock=False)  # see running()
        self.paths: dict[Key, Path] = {}
        self.energy: dict[Key, float] = {}
        sockets = sorted({s for s, _ in self.watts if s is not None})
        for s in sockets:
            package = root / f"intel-rapl:{s}"
            self._zone(package, (s, "package"), f"package-{s}", start_uj)
            domains = [d for (sock, d) in self.watts if sock == s and d != "package"]
            for i, domain in enumerate(domains):
                self._zone(package / f"intel-rapl:{s}:{i}", (s, domain), domain, start_uj)
                (root / f"intel-rapl:{s}:{i}").symlink_to(package / f"intel-rapl:{s}:{i}")
        if (None, "psys") in self.watts:
            self._zone(root / f"intel-rapl:{len(sockets)}", (None, "psys"), "psys", start_uj)
        if mmio_duplicate:  # the same package-0 counter again through MMIO: must not be counted twice
            mmio = root / "intel-rapl-mmio:0"
            mmio.mkdir(parents=True)
            (mmio / "name").write_text("package-0\n")
            (mmio / "energy_uj").write_text("0\n")
            (mmio / "max_energy_range_uj").write_text(f"{max_uj}\n")

    def _zone(self, path: Path, key: Key, name: str, start_uj: int) -> None:
        path.mkdir(parents=True)
        (path / "name").write_text(name + "\n")
        (path / "max_energy_range_uj").write_text(f"{self.max_uj}\n")
        (path / "enabled").write_text("1\n")
        if self.max_power_w is not None:  # as RAPL names its limits: long_term (PL1), short_term (PL2)
            (path / "constraint_0_name").write_text("long_term\n")
            (path / "constraint_0_max_power_uw").write_text(f"{round(self.max_power_w * 1e6)}\n")
            (path / "constraint_1_name").write_text("short_term\n")
            (path / "constraint_1_max_power_uw").write_text("0\n")
        self.paths[key] = path / "energy_uj"
        self.energy[key] = float(start_uj)
        self._write(key)

    def _write(self, key: Key) -> None:
        text = f"{int(self.energy[key]) % self.max_uj}\n"  # as the sensor reads a wrap
        if self.tear_pause_s is not None and self.paths[key].exists():
            # In place, as a writer that truncates then writes in pieces (a guest reading the tree through
            # 9p or virtiofs sees this): a reader may find the file empty or holding the first digits.
            fd = os.open(self.paths[key], os.O_WRONLY | os.O_TRUNC)
            try:
                half = len(text) // 2
                os.write(fd, text[:half].encode())
                time.sleep(self.tear_pause_s)
                os.write(fd, text[half:].encode())
            finally:
                os.close(fd)
            return
        tmp = self.paths[key].with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.paths[key])

    def sampler(
        self, procfs: ProcfsReader | None = None, *, sleep: Callable[[float], None] | None = None
    ) -> Sampler:
        """A Sampler reading this tree, on the tree's clock: windows are what `advance()` made them, not
        however long the machine took. Its pauses (between re-reads) let the tree's time pass, as real
        time passes for RAPL, unless `sleep` says otherwise."""
        return Sampler(
            PowercapSensor(str(self.root), clock=self.clock),
            procfs or ProcfsReader(),
            sleep=sleep or self.advance,
            clock=self.clock,
            wall=self.clock.wall,
        )

    def write_torn(self, key: Key, keep: int | None = None) -> None:
        """Leave `key`'s file as a writer caught mid-write would: the first `keep` digits of its value
        (default: half of them), or empty with keep=0. `advance()` or `rewrite()` completes it."""
        text = f"{int(self.energy[key]) % self.max_uj}"
        self.paths[key].write_text(text[: len(text) // 2 if keep is None else keep])

    def rewrite(self) -> None:
        """Write every counter's current value again (finishing torn writes)."""
        for key in self.energy:
            self._write(key)

    def advance(self, seconds: float, *, write: bool = True) -> None:
        """Add watts x seconds to every counter (wrapping at max_energy_range_uj), and to the clock.

        `write=False`: the energy is spent but not yet on disk (a writer that is stuck).
        """
        for key, watts in self.watts.items():
            self.energy[key] += watts * seconds * 1e6
            if write:
                self._write(key)
        self.clock.ns += round(seconds * 1e9)

    @contextmanager
    def running(self, period_s: float = 0.001, stall: tuple[float, float] | None = None) -> Iterator[None]:
        """Advance the counters in real time, from another process, until the block ends.

        Meanwhile `written_at()` is the monotonic time (ns) the counters on disk stand for: a clock
        for an in-process PowercapSensor that stays exact however late the writer runs on a busy machine.
        `stall=(every_s, for_s)`: every `every_s` the writer stops writing for `for_s`, then catches up
        with the energy of the whole stall at once (a host exporter that hung).
        """
        self._stamp.value = time.monotonic_ns()
        with self._writer(self._run, period_s, stall):
            yield

    @contextmanager
    def following_load(
        self,
        history: Path,
        key: Key = (0, "package"),
        curve: tuple[tuple[float, float], ...] = LOAD_CURVE,
        window_s: float = 0.1,
        period_s: float = 0.01,
    ) -> Iterator[None]:
        """Advance the counters in real time, from another process, `key`'s power following the machine's
        real CPU load along `curve`, as a real package's does: every `period_s`, the load over the last
        `window_s` from /proc/stat (busy and idle as the sampler counts them), its power on the curve.
        Each write appends `UNIX_TIME UJ` to `history`, the energy of the packages and dram (the host's
        as wattprobe counts it without psys): see `energy_between`."""
        with self._writer(self._follow, history, key, curve, window_s, period_s):
            yield

    @staticmethod
    @contextmanager
    def _writer(target: Callable[..., None], *args: Any) -> Iterator[None]:
        """`target(stop, *args)` in a forked process for the block, told to stop at its end."""
        stop = multiprocessing.Event()
        process = multiprocessing.get_context("fork").Process(target=target, args=(stop, *args), daemon=True)
        process.start()
        try:
            yield
        finally:
            stop.set()
            process.join(5)

    def _follow(
        self,
        stop: Event,
        history: Path,
        key: Key,
        curve: tuple[tuple[float, float], ...],
        window_s: float,
        period_s: float,
    ) -> None:
        keep_up()
        loads: list[tuple[int, int]] = []  # (busy, idle) ticks, one per period, the last window's worth
        last = time.monotonic_ns()
        with history.open("a") as log:
            while not stop.is_set():
                cpu = read_machine_cpu()
                loads = [*loads, (cpu.busy, cpu.idle)][-(round(window_s / period_s) + 1) :]
                busy, idle = loads[-1][0] - loads[0][0], loads[-1][1] - loads[0][1]
                if busy + idle > 0:
                    self.watts[key] = on_curve(curve, busy / (busy + idle))
                time.sleep(period_s)
                now = time.monotonic_ns()
                self.advance((now - last) / 1e9)
                last = now
                host = sum(uj for (_, domain), uj in self.energy.items() if domain in ("package", "dram"))
                log.write(f"{time.time()} {host:.0f}\n")
                log.flush()

    def written_at(self) -> int:
        return self._stamp.value

    def _run(self, stop: Event, period_s: float, stall: tuple[float, float] | None) -> None:
        keep_up()
        last = self._stamp.value
        next_stall = last + round(stall[0] * 1e9) if stall else None
        while not stop.is_set():
            time.sleep(period_s)
            now = time.monotonic_ns()
            if stall and next_stall is not None and now >= next_stall:
                stop.wait(stall[1])
                next_stall = time.monotonic_ns() + round(stall[0] * 1e9)
                continue
            self.advance((now - last) / 1e9)
            self._stamp.value = last = now


def on_curve(curve: tuple[tuple[float, float], ...], load: float) -> float:
    """Watts at `load` on a curve of (load, watts) points, straight between them."""
    for (x0, y0), (x1, y1) in itertools.pairwise(curve):
        if load <= x1:
            return y0 + (y1 - y0) * (max(load, x0) - x0) / (x1 - x0)
    return curve[-1][1]


def energy_between(history: Path, start: float, end: float) -> float:
    """Joules the tree's host drew between two Unix times, from its history (`following_load`),
    interpolated between writes."""
    rows = [tuple(map(float, line.split())) for line in history.read_text().splitlines() if line.strip()]

    def at(t: float) -> float:
        assert rows[0][0] <= t <= rows[-1][0], f"{t} outside the history ({rows[0][0]}..{rows[-1][0]})"
        for (t0, e0), (t1, e1) in itertools.pairwise(rows):
            if t <= t1:
                return e0 + (e1 - e0) * (t - t0) / (t1 - t0) if t1 > t0 else e1
        return rows[-1][1]

    return (at(end) - at(start)) / 1e6


class TreeSensor(PowercapSensor):
    """A powercap sensor that moves its synthetic tree up to now right before each read, and says that the
    read happened then: power is the tree's to the µJ, however late the machine schedules anything."""

    def __init__(self, tree: PowercapTree) -> None:
        self.tree = tree
        self.moved_ns = time.monotonic_ns()
        super().__init__(str(tree.root), clock=lambda: self.moved_ns)

    def read(self) -> EnergyReading:
        now = time.monotonic_ns()
        self.tree.advance((now - self.moved_ns) / 1e9)
        self.moved_ns = now
        return super().read()


@contextmanager
def real_time_sampler(tree: PowercapTree, names: NameResolver | None = None) -> Iterator[Sampler]:
    """A Sampler of this process reading `tree` through a TreeSensor, in real time (for servers that
    measure on their own schedule, such as a Prometheus that scrapes every second); `names` names
    its containers, as the agent's resolver."""
    sampler = Sampler(
        TreeSensor(tree), ProcfsReader(), host=HostReader(), names=names
    )  # the host's facts too, as an agent
    try:
        yield sampler
    finally:
        sampler.close()


def keep_up() -> None:
    """Let this process (a writer standing for hardware counters, which never lag) run as soon as it
    wakes, however busy the machine: real-time scheduling where allowed (it sleeps between writes, so
    it takes little), else a high priority. A writer forked from the test process inherits its heap:
    frozen, so that no collection walks it (late in a suite, one took hundreds of ms: a stalled counter)."""
    gc.freeze()
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        with contextlib.suppress(OSError):
            os.nice(-10)
