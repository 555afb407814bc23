"""A figure is right or absent: when the sensor gives no energy for the command's whole time (counters
that stand still, or stop mid-run), `energy_j` and every figure made from it are null with `error`
saying why, while the duration comes from the clock, the CPU time from the kernel's count of the
command (its cgroup's counter, else its rusage), and the exit status stays the command's."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import pytest

from tests.support import agents, frames
from tests.support.powercap_tree import PowercapTree
from tests.support.run import TREE_WATTS, can_make_cgroups, wattprobe_run
from wattprobe.commandenergy.carbon import Intensity
from wattprobe.commandenergy.meter import Meter
from wattprobe.commandenergy.result import Result
from wattprobe.core.model import Frame

S = 10**9
# Burns argv[2] s of CPU, writes "cpu wall" (its CPU time and its time from start to end, s) to
# argv[1], and exits 4. With argv[3], first writes "started" there.
BURN = r"""
import os, sys, time
start = time.monotonic()
if len(sys.argv) > 3:
    open(sys.argv[3], "w").write("started")
end = time.process_time() + float(sys.argv[2])
while time.process_time() < end:
    pass
t = os.times()
open(sys.argv[1], "w").write(f"{t.user + t.system} {time.monotonic() - start}")
sys.exit(4)
"""

NULLS = (
    "energy_j",
    "host_energy_j",
    "share",
    "average_power_w",
    "peak_power_w",
    "host_average_power_w",
    "host_peak_power_w",
    "carbon_g",
    "host_carbon_g",
)


def by(kind: str, tmp_path) -> tuple[str, ...]:
    if kind == "cgroup" and not can_make_cgroups():
        pytest.skip("this user may not make a cgroup")
    return ("--cgroupfs-root", str(tmp_path / "no-cgroupfs")) if kind == "process tree" else ()


def truth(path) -> tuple[float, float]:
    cpu, wall = path.read_text().split()
    return float(cpu), float(wall)


@pytest.mark.parametrize("kind", ["cgroup", "process tree"])
def test_counters_that_stand_still_give_no_energy_rather_than_zero(tmp_path, kind):
    global_args = by(kind, tmp_path)
    PowercapTree(tmp_path / "tree", TREE_WATTS, start_uj=10**9, max_uj=2**60)  # written once, never again
    out, facts = tmp_path / "run.json", tmp_path / "truth"
    result = wattprobe_run(
        tmp_path / "tree",
        "-o",
        str(out),
        "-s",
        "0.2",
        "--",
        sys.executable,
        "-c",
        BURN,
        str(facts),
        "0.6",
        global_args=global_args,
    )
    assert result.returncode == 4, result.stderr  # the command's
    doc = json.loads(out.read_text())
    cpu_s, wall_s = truth(facts)
    assert doc["exit_code"] == 4 and doc["measured_by"] == kind
    assert {name: doc[name] for name in NULLS} == dict.fromkeys(NULLS)
    assert "gave no energy over the" in doc["error"] and "did not advance" in doc["error"]
    assert doc["top_processes"] == []
    # The clock's and the kernel's, not the Frames' that never came.
    assert doc["cpu_seconds"] == pytest.approx(cpu_s, rel=0.05, abs=0.03)
    assert wall_s <= doc["duration_s"] <= wall_s + 0.5
    summary = result.stderr
    assert "energy        none: the sensor (powercap_rapl) gave no energy" in summary
    assert "0.0 J" not in summary and "0.00 s" not in summary and "of 0 CPUs" not in summary


def test_counters_that_stop_mid_run_give_no_energy_and_say_when(tmp_path):
    """An 8.8 s command once came out as 3.04 s, with 3 s of energy: now no energy, and the clock's time."""
    tree = PowercapTree(tmp_path / "tree", TREE_WATTS, start_uj=10**9, max_uj=2**60)
    out, facts, started = tmp_path / "run.json", tmp_path / "truth", tmp_path / "started"
    argv = agents.command("--vm", "run", "-o", str(out), "-s", "0.2", "--")
    argv += [sys.executable, "-c", BURN, str(facts), "2.5", str(started)]
    env = {**os.environ, "SCAPHANDRE_POWERCAP_PATH": str(tree.root)}
    with tree.running():
        process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.8)  # a few windows measured, then the counters stop for good
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 4, stderr
    doc = json.loads(out.read_text())
    cpu_s, wall_s = truth(facts)
    assert {name: doc[name] for name in NULLS} == dict.fromkeys(NULLS)
    assert "gave no energy after" in doc["error"] and f"of the {doc['duration_s']:.2f} s" in doc["error"]
    assert doc["timeline"]  # what was measured before the stop is kept, for the record
    assert wall_s <= doc["duration_s"] <= wall_s + 0.5
    assert doc["cpu_seconds"] == pytest.approx(cpu_s, rel=0.05, abs=0.03)


class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def window(i: int, seconds: float = 1.0) -> Frame:
    """One second of 60 W, the command's process drawing 30 W of it."""
    root, member = frames.process(100), frames.process(101)
    made = frames.frame([frames.consumer(member, 30.0, cpu_ns=2 * S)], host_watts=60.0, window_s=seconds)
    return dataclasses.replace(
        made, scan_ns=(i * S, round((i + seconds) * S)), trees={root.pid: frozenset({member.pid})}
    )


@pytest.mark.parametrize(
    ("last_window_end_s", "error"),
    [(8.8, None), (8.7, None), (3.0, "gave no energy after 3.00 s of the 8.80 s measured")],
)
def test_the_meter_gives_energy_only_when_the_windows_reach_the_end(last_window_end_s, error):
    clock, cpu = Clock(), [5 * S]
    meter = Meter(
        100,
        sensor="powercap_rapl",
        estimated=False,
        step_s=1.0,
        root_counts=False,
        tree_cpu_ns=lambda: cpu[0],
        clock=clock,
    )
    meter.begin()
    whole = int(last_window_end_s)
    for i in range(whole):
        meter.write(window(i))
    if last_window_end_s > whole:
        meter.write(window(whole, round(last_window_end_s - whole, 3)))
    clock.ns, cpu[0] = round(8.8 * S), 12 * S
    meter.end()
    meter.close()
    tally = meter.tally()
    if error is None:
        assert tally.duration_s == pytest.approx(last_window_end_s)  # the windows' (host power = 60 W)
        assert tally.host_average_power_w == pytest.approx(60.0)
        assert tally.error is None
        assert tally.energy_j == pytest.approx(30.0 * last_window_end_s)
        assert tally.cpu_seconds == pytest.approx(2 * len(tally.steps))  # the Frames'
        assert tally.average_power_w == pytest.approx(30.0)
    else:
        assert error in (tally.error or "")
        assert tally.energy_j is None and tally.host_energy_j is None and tally.share is None
        assert tally.average_power_w is None and tally.peak_power_w is None and tally.top == ()
        assert tally.cpu_seconds == pytest.approx(7.0)  # the tree's own count over the span
        assert tally.duration_s == pytest.approx(8.8)  # the clock's


def test_a_result_without_energy_is_null_and_says_why_everywhere(tmp_path):
    meter = Meter(100, sensor="powercap_rapl", estimated=False, step_s=1.0, root_counts=False)
    meter.begin()
    meter.close()
    result = Result(meter.tally(), Intensity(481.0, "test"), ("true",), 0)
    assert result.error is not None and "gave no energy" in result.error
    assert result.carbon_g is None and result.host_carbon_g is None
    path = tmp_path / "run.json"
    result.save_json(str(path))
    doc = json.loads(path.read_text())
    assert doc["energy_j"] is None and doc["carbon_g"] is None and doc["error"] == result.error
    assert doc["n_cpus"] is None  # no Frame said
