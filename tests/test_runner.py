"""One runner for every use: a wait that stops it (`wattprobe run`'s command, `measure()`'s block), the
last window closed at the stop, and the Frames that let one command's meter read nothing else."""

from __future__ import annotations

import dataclasses
import os
import subprocess

import pytest

from tests.support import frames
from tests.support.cgroups import new_cgroup
from tests.support.powercap_tree import PowercapTree
from wattprobe.commandenergy.meter import REAPED, Meter
from wattprobe.core.model import Frame
from wattprobe.pipeline.runner import Runner
from wattprobe.sources.procfs import ProcfsReader


class Kept:
    """A sink that keeps the Frames it is given."""

    name = "kept"

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.closed = False

    def write(self, frame: Frame) -> None:
        self.frames.append(frame)

    def close(self) -> None:
        self.closed = True


def runner(tree: PowercapTree, sink: Kept, wait, started=None) -> Runner:
    return Runner(
        tree.sampler(),
        [sink],
        step_s=1.0,
        clock=lambda: tree.clock.ns / 1e9,
        sleep=tree.advance,
        wait=wait,
        started=started,
    )


def test_a_stop_closes_the_last_window_at_once(powercap):
    sink, waits, baseline = Kept(), [], []

    def wait(seconds: float) -> bool:  # the command ends 0.4 s into the third step
        waits.append(seconds)
        if len(waits) == 3:
            powercap.advance(0.4)
            return True
        powercap.advance(seconds)
        return False

    run = runner(powercap, sink, wait, started=lambda: baseline.append(run.sampler.last_snapshot))
    run.run()
    run.sampler.close()
    assert [f.window_s for f in sink.frames] == pytest.approx([1.0, 1.0, 0.4], abs=2e-3)
    assert all(f.host_watts == pytest.approx(60.0, rel=1e-6) for f in sink.frames)
    assert (
        len(baseline) == 1 and baseline[0] is not None and sink.closed
    )  # started once the baseline was taken
    assert waits[0] == pytest.approx(1.0, abs=2e-3)


def test_a_wait_cut_short_waits_on_and_ticks_when_due(powercap):
    sink, waits = Kept(), []

    def wait(seconds: float) -> bool:  # every other wait is cut short halfway (a signal forwarded)
        waits.append(seconds)
        if len(waits) == 9:
            return True
        powercap.advance(seconds / 2 if len(waits) % 2 else seconds)
        return False

    run = runner(powercap, sink, wait)
    run.run()
    run.sampler.close()
    assert waits[:4] == pytest.approx(
        [1.0, 0.5, 1.0, 0.5], abs=2e-3
    )  # waited on for the rest, not ticked early
    assert [f.window_s for f in sink.frames[:4]] == pytest.approx([1.0] * 4, abs=2e-3)
    assert len(sink.frames) == 5  # and the last window, at the stop


def test_the_last_window_waits_a_few_ms_for_energy_that_has_not_moved(powercap):
    sink = Kept()
    stops = iter([False, True])

    def wait(seconds: float) -> bool:
        if next(stops):
            powercap.advance(0.3, write=False)  # spent, not yet written when the command ends
            return True
        powercap.advance(seconds)
        return False

    run = runner(powercap, sink, wait)
    run.run()
    run.sampler.close()
    # The first try found the counters where they were (a skipped sample); 10 ms later, written.
    assert [f.window_s for f in sink.frames] == pytest.approx([1.0, 0.31], abs=2e-3)
    assert sink.frames[-1].host_watts == pytest.approx(60.0, rel=1e-6)


def test_frames_carry_the_followed_tree_and_the_watched_cgroup(powercap):
    sampler = powercap.sampler(ProcfsReader())
    sampler.follow(os.getpid())
    child = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        with new_cgroup("wattprobe-test", v1=False) as cgroup:
            if cgroup is not None:
                assert sampler.watch(cgroup.path, v2=cgroup.v2)
            sampler.tick()
            burner = subprocess.Popen(
                [
                    "python3",
                    "-c",
                    "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass",
                ],
                preexec_fn=cgroup.enter if cgroup is not None else None,
            )
            burner.wait()
            powercap.advance(1.0)
            frame = sampler.tick()
            assert frame is not None
            tree = frame.trees[os.getpid()]
            assert child.pid in tree and len(tree) >= 2  # the shell and its sleep, below this process
            if cgroup is not None:
                # The burner came and went between two scans: the cgroup's counter alone saw it.
                assert 0.28e9 <= frame.cgroup_ns[cgroup.path] <= 0.6e9
                sampler.unwatch(cgroup.path)
                powercap.advance(1.0)
                later = sampler.tick()
                assert later is not None and later.cgroup_ns == {}
    finally:
        child.kill()
        child.wait()
        sampler.close()


def test_a_frame_after_a_counter_reset_says_so(tmp_path):
    # A VM's tree, as its host's exporter writes it: from 0 again is a reset, not a wrap.
    powercap = PowercapTree(
        tmp_path / "powercap", {(0, "package"): 30.0, (0, "core"): 20.0}, start_uj=1_500_000_000, max_uj=2**60
    )
    sampler = powercap.sampler()
    sampler.tick()
    powercap.advance(1.0)
    assert sampler.tick().resets == 0
    for key in powercap.energy:  # the counters started again from 0
        powercap.energy[key] = 0
    made = []
    for _ in range(8):
        powercap.advance(0.5)
        made.append(sampler.tick())
    sampler.close()
    after = [f for f in made if f is not None]
    assert after and after[0].resets == 1 and all(f.resets == 0 for f in after[1:])


def test_the_meter_reads_frames_only():
    """`wattprobe run`'s meter (its root counts for what it reaped) from Frames made by hand: the
    cgroup's counter when read at both ends (capped at the machine's time, the rest carried), else
    the processes below the root."""
    root, member, stranger = frames.process(100), frames.process(101), frames.process(102)
    meter = Meter(100, sensor="powercap_rapl", estimated=False, step_s=1.0, root_counts=False, cgroup="/cmd")

    def window(i: int, cgroup_ns: int | None, resets: int = 0) -> Frame:
        consumers = [
            dataclasses.replace(frames.consumer(root, 6.0), exited_cpu_ns=10**8, exited_watts=6.0),
            frames.consumer(member, 15.0),
            frames.consumer(stranger, 30.0),
        ]
        made = frames.frame(consumers, host_watts=60.0, n_cpus=4, timestamp=1000.0 + i + 1)
        return dataclasses.replace(
            made,
            scan_ns=(i * 10**9, (i + 1) * 10**9),
            resets=resets,
            trees={100: frozenset({101, 103})},
            cgroup_ns={} if cgroup_ns is None else {"/cmd": cgroup_ns},
        )

    for frame in (window(0, 2 * 10**9), window(1, None, resets=1), window(2, 5 * 10**9), window(3, 0)):
        meter.write(frame)
    tally = meter.tally()
    # 30 W (2 of 4 CPUs' time), 21 W (its member and what it reaped), 60 W (capped), 15 W (carried).
    assert [s.command_w for s in tally.steps] == pytest.approx([30.0, 21.0, 60.0, 15.0])
    assert [s.t_s for s in tally.steps] == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert tally.energy_j == pytest.approx(126.0) and tally.host_energy_j == pytest.approx(240.0)
    assert tally.skipped == 1 and tally.measured_by == "cgroup and process tree"
    assert tally.started_at == pytest.approx(1000.0) and meter.live == {101, 103}
    assert {p.pid: p.exe for p in tally.top} == {101: member.exe, 0: ""}
    assert any(p.cmdline == REAPED for p in tally.top)
