"""Counters judged in one place: torn, stalled, stepping, reset and out-of-bound values on real trees.

A writer caught mid-write is simulated on disk (`PowercapTree.write_torn`); where the writer finishes
while the guard pauses between re-reads, the pause itself completes it (the guard's `sleep` is a
parameter), so every case is deterministic.
"""

from __future__ import annotations

import itertools
import logging

import pytest

from tests.support.faults import torn_tree_run
from tests.support.powercap_tree import PowercapTree
from tests.support.processes import burners
from wattprobe.core.counters import (
    DEFAULT_MAX_W,
    RESET_MIN_S,
    SLACK_S,
    STALL_WARNING_S,
    CounterGuard,
    counter_delta,
    first_reading,
)
from wattprobe.core.model import Counter
from wattprobe.core.sampler import Sampler
from wattprobe.errors import SensorReadError
from wattprobe.sources.powercap import PowercapSensor

VM_TREE = {(0, "package"): 30.0, (0, "core"): 20.0}  # as the qemu exporter writes a VM's tree
PACKAGE = (0, "package")


def vm_tree(tmp_path, **kwargs) -> PowercapTree:
    return PowercapTree(tmp_path / "tree", VM_TREE, start_uj=1_500_000_000, max_uj=2**60, **kwargs)


class Writer:
    """The tree's writer as the guard's pauses see it: time passes and it writes, unless it is stuck
    (`stuck`): then energy is spent but the files stay as they are until its next write."""

    def __init__(self, tree: PowercapTree) -> None:
        self.tree = tree
        self.stuck = False

    def __call__(self, seconds: float) -> None:
        self.tree.advance(seconds, write=not self.stuck)  # a stuck writer spends energy, writes nothing


@pytest.fixture
def sampler_of():
    """Samplers on a tree's clock whose pauses are its `Writer`'s; closed after the test."""
    made: list[Sampler] = []

    def make(tree: PowercapTree, writer: Writer | None = None) -> Sampler:
        made.append(tree.sampler(sleep=writer or Writer(tree)))
        return made[-1]

    yield make
    for sampler in made:
        sampler.close()


def test_counter_delta_rules():
    def delta(before: int, after: int, max_uj: int = 1000, window_s: float = 1.0, max_w: float = 0.0):
        return counter_delta(
            Counter(0, "package", before, max_uj, max_w),
            Counter(0, "package", after, max_uj, max_w),
            window_s,
        )

    assert delta(100, 300) == 200
    assert delta(900, 100) == 200  # a wrap at max_uj
    assert delta(200, 20) is None  # a digit short after a wrap-sized jump: not a wrap
    assert delta(600, 60, max_uj=0) is None  # no known range: a decrease is a reset or a torn read
    assert delta(0, 900) is None  # more than half the range
    big = 2**60
    limit = DEFAULT_MAX_W * (1.0 + SLACK_S) * 1e6
    assert delta(0, int(limit), max_uj=big) == int(limit)
    assert delta(0, int(limit) + 1, max_uj=big) is None  # more than any zone draws in the window
    assert delta(0, 150_000_000, max_uj=big, max_w=200.0) == 150_000_000  # 150 J in 1 s under 200 W
    assert delta(0, 250_000_000, max_uj=big, max_w=200.0) is None


def test_stated_constraints_bound_the_zone(tmp_path):
    tree = PowercapTree(tmp_path, {PACKAGE: 20.0}, max_power_w=65.0)
    (zone,) = PowercapSensor(str(tmp_path)).zones
    assert zone.max_w == 4 * 65.0  # a margin for PL2/PL4 bursts above the stated figure
    assert zone.path == str(tree.paths[PACKAGE])


def test_a_torn_baseline_is_not_taken(tmp_path, sampler_of):
    """Before: the torn prefix `15000` became the baseline and the next window read 7,678 W."""
    tree = vm_tree(tmp_path)
    tree.write_torn(PACKAGE)
    sampler = sampler_of(tree)  # the writer finishes during the guard's first pause
    assert sampler.tick() is None  # the baseline
    tree.advance(1.0)
    frame = sampler.tick()
    assert frame is not None and frame.host_watts == pytest.approx(30.0, rel=1e-6)


def test_a_torn_value_that_outlasts_the_rereads_skips_one_sample(tmp_path, sampler_of):
    tree = vm_tree(tmp_path)
    writer = Writer(tree)
    sampler = sampler_of(tree, writer)
    sampler.tick()
    tree.advance(1.0)
    tree.write_torn(PACKAGE)
    writer.stuck = True
    assert sampler.tick() is None  # every re-read torn: no figure
    writer.stuck = False
    tree.advance(1.0)
    frame = sampler.tick()
    assert frame is not None
    assert frame.host_watts == pytest.approx(30.0, rel=1e-6)
    assert frame.window_s == pytest.approx(2.0, abs=0.01)  # from the last good reading


def test_torn_values_for_several_samples_never_become_a_reset(tmp_path, sampler_of):
    """Before: after three rejected readings the torn value was adopted, and the next window read 7,825 W."""
    tree = vm_tree(tmp_path)
    writer = Writer(tree)
    sampler = sampler_of(tree, writer)
    sampler.tick()
    writer.stuck = True
    for _ in range(5):  # torn at every tick, prefixes consistent with each other, for less than a reset takes
        tree.advance(RESET_MIN_S / 6)
        tree.write_torn(PACKAGE)
        assert sampler.tick() is None
    writer.stuck = False
    tree.advance(0.5)
    frame = sampler.tick()
    assert frame is not None and frame.host_watts == pytest.approx(30.0, rel=1e-6)


def test_an_empty_or_garbled_file_is_reread_then_skipped(tmp_path, sampler_of):
    tree = vm_tree(tmp_path)
    writer = Writer(tree)
    sampler = sampler_of(tree, writer)
    sampler.tick()
    for content in ("", "12a\n", "-5\n"):
        tree.advance(0.5)
        tree.paths[PACKAGE].write_text(content)
        frame = sampler.tick()  # the re-read after a pause finds the finished value
        assert frame is not None and frame.host_watts == pytest.approx(30.0, rel=1e-6)
    writer.stuck = True
    tree.advance(0.5)
    tree.paths[PACKAGE].write_text("")
    assert sampler.tick() is None


def test_a_real_reset_is_taken_once_consistent(tmp_path, caplog, sampler_of):
    tree = vm_tree(tmp_path)
    sampler = sampler_of(tree)
    sampler.tick()
    tree.advance(1.0)
    assert sampler.tick() is not None
    for key in tree.energy:  # the host's exporter started again from 0
        tree.energy[key] = 0
    frames = []
    with caplog.at_level(logging.WARNING):
        for _ in range(8):
            tree.advance(0.5)
            frames.append(sampler.tick())
    assert frames[:3] == [None, None, None]  # 3 consistent readings over >= 1 s make the reset
    assert all(f is not None and f.host_watts == pytest.approx(30.0, rel=1e-6) for f in frames[3:])
    assert "were reset" in caplog.text
    # The energy between the last good reading and the reset is unknown: it is not counted.
    assert frames[-1].host_energy_j == pytest.approx(30.0 * (1.0 + 0.5 * 5), rel=1e-6)


def test_a_stalled_writer_gives_no_zero_and_no_spike(tmp_path, caplog, sampler_of):
    tree = vm_tree(tmp_path)
    writer = Writer(tree)
    sampler = sampler_of(tree, writer)
    sampler.tick()
    tree.advance(0.1)
    assert sampler.tick().host_watts == pytest.approx(30.0, rel=1e-3)
    writer.stuck = True
    for _ in range(5):  # the writer hangs: the counters stand still while time passes
        tree.advance(0.1, write=False)
        assert sampler.tick() is None
    writer.stuck = False
    tree.advance(0.1)  # it catches up at once: the energy of the whole stall lands in one write
    frame = sampler.tick()
    assert frame.window_s == pytest.approx(0.6, abs=0.001)
    assert frame.host_watts == pytest.approx(30.0, rel=1e-3)


def test_standing_still_is_said_once(tmp_path, caplog):
    tree = vm_tree(tmp_path)
    now = [0.0]
    sensor = PowercapSensor(str(tree.root), clock=tree.clock)
    guard = CounterGuard(sensor, sleep=lambda _s: None, clock=lambda: now[0])
    last = guard.baseline()
    tree.advance(0.1)
    last = guard.next(last).reading
    with caplog.at_level(logging.WARNING):
        for _ in range(30):
            now[0] += 1.0
            assert guard.next(last) is None
    assert caplog.text.count("have not advanced for") == 1
    assert f"{STALL_WARNING_S:.0f} s" in caplog.text


def test_counters_that_advance_in_steps_are_measured_from_a_step(tmp_path, sampler_of):
    """A host rewriting the tree every second, read every 0.1 s: no window may start between two steps."""
    tree = vm_tree(tmp_path)
    writer = Writer(tree)
    writer.stuck = True  # it writes at its steps only
    sampler = sampler_of(tree, writer)
    tree.advance(0.7, write=False)
    sampler.tick()  # the baseline, 0.7 s after the last step: the first window would read 100 W
    watts = []
    for tick in range(1, 40):
        tree.advance(0.1, write=tick % 10 == 3)  # a step: the energy since the previous step, at once
        frame = sampler.tick()
        if frame is not None:
            watts.append(frame.host_watts)
    assert watts == pytest.approx([30.0] * 3, rel=1e-6)  # the first step starts the measurement


def test_a_read_interrupted_for_long_is_read_again_unless_short_against_its_window(tmp_path):
    """A reading's time is its read's middle: a read that took 5 ms does not end a 0.1 s window (its
    time would be 2.5 ms off, 2.5 %), but may end a 1 s one."""
    tree = vm_tree(tmp_path)
    slow_ns, calls = [0], itertools.count()

    def clock() -> int:  # each read's end comes `slow_ns` after its start
        return tree.clock.ns + (slow_ns[0] if next(calls) % 2 else 0)

    guard = CounterGuard(PowercapSensor(str(tree.root), clock=clock), sleep=Writer(tree))
    first = guard.baseline()
    assert first is not None
    slow_ns[0] = 5_000_000
    tree.advance(0.1)
    assert guard.next(first) is None and "took 5 ms" in str(guard.problem)
    tree.advance(0.9)
    accepted = guard.next(first)
    assert accepted is not None and accepted.deltas is not None
    assert accepted.reading.spread_ns == 5_000_000


def test_start_up_waits_out_a_torn_file_then_says_why(tmp_path):
    tree = vm_tree(tmp_path)
    tree.write_torn(PACKAGE, keep=0)
    sensor = PowercapSensor(str(tree.root))
    reads = []

    def pause(_s: float) -> None:
        reads.append(1)
        if len(reads) == 3:
            tree.rewrite()

    assert first_reading(sensor, sleep=pause).counters[0].uj == 1_500_000_000
    tree.paths[PACKAGE].write_text("garbage\n")
    with pytest.raises(SensorReadError, match="unreadable energy counter"):
        first_reading(sensor, timeout_s=0.05)


@pytest.mark.parametrize(
    ("burning", "stall"), [(2, None), (0, (0.7, 0.4))], ids=["torn, 2 CPU burners", "torn and stalling"]
)
def test_the_agent_on_a_torn_tree_never_spikes(tmp_path, burning, stall):
    """Before: 6 of 20 runs had documents of 586 to 31,781 W, and some died with a traceback."""
    with burners(burning):
        runs = [torn_tree_run(tmp_path / f"tree{i}", 2.0, stall) for i in range(4)]
    assert sum(r["documents"] for r in runs) >= 4 * 10  # most 50 ms steps still give a figure
    assert [(r["spikes"], r["holes"], r["traceback"], r["failed"]) for r in runs] == [(0, 0, 0, 0)] * 4
