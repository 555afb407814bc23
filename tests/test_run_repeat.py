"""`wattprobe run --repeat N [--warmup K] [--baseline S]`: N measured runs after K that are not, their
statistics on stderr and in -o (the document `wattprobe compare` reads), a stop at the first run that
fails with its exit status, and each run's energy above the host's idle power."""

from __future__ import annotations

import json
import sys

import pytest

from tests.support.run import WATTS, vm_tree, wattprobe_run
from wattprobe.commandenergy import stats

# Appends a line to argv[1] (one per execution), burns 0.2 s of CPU, and exits argv[2] on the
# execution numbered argv[3] (else 0).
COUNTED = r"""
import sys, time
with open(sys.argv[1], "a") as f:
    f.write("ran\n")
n = len(open(sys.argv[1]).read().splitlines())
end = time.process_time() + 0.2
while time.process_time() < end:
    pass
sys.exit(int(sys.argv[2]) if n == int(sys.argv[3]) else 0)
"""


@pytest.fixture
def tree(tmp_path):
    with vm_tree(tmp_path / "vm-tree") as tree:
        yield tree


def counted(tmp_path, fail_code: int = 0, fail_at: int = 0) -> tuple[str, ...]:
    return (sys.executable, "-c", COUNTED, str(tmp_path / "count"), str(fail_code), str(fail_at))


def executions(tmp_path) -> int:
    return len((tmp_path / "count").read_text().splitlines())


def test_repeated_runs_and_their_statistics(tree, tmp_path):
    out = tmp_path / "runs.json"
    result = wattprobe_run(
        tree.root, "--repeat", "3", "--warmup", "1", "-s", "0.2", "-o", str(out), "--", *counted(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert executions(tmp_path) == 4  # one warmup, three runs
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == stats.SCHEMA_VERSION and len(doc["runs"]) == 3
    assert doc["summary"] == stats.summary_of(doc["runs"])
    cpu = [run["cpu_seconds"] for run in doc["runs"]]
    assert all(0.2 <= c <= 0.6 for c in cpu), cpu  # 0.2 s, and a Python's start-up
    for metric in ("energy_j", "cpu_seconds", "duration_s"):
        assert doc["summary"][metric]["n"] == 3
    energy = doc["summary"]["energy_j"]
    assert energy["ci95"][0] < energy["mean"] < energy["ci95"][1]
    assert energy["mean"] == pytest.approx(sum(run["energy_j"] for run in doc["runs"]) / 3, rel=1e-5)
    assert all(run["idle_power_w"] is None and run["energy_above_idle_j"] is None for run in doc["runs"])
    assert "energy_above_idle_j" not in doc["summary"]
    # On stderr: each run in a line, then mean ± stdev and the interval of each figure.
    assert "warmup 1/1:" in result.stderr and "run 3/3:" in result.stderr
    assert "mean ± stdev" in result.stderr and "95 % interval of the mean" in result.stderr
    rows = {line.split()[0]: line for line in result.stderr.splitlines() if " ± " in line}
    assert {"energy", "CPU", "duration"} <= rows.keys()
    assert f"{energy['mean']:.1f}" in rows["energy"] or f"{energy['mean']:.2f}" in rows["energy"]


def test_a_failed_run_stops_the_repeats_with_its_status(tree, tmp_path):
    out = tmp_path / "runs.json"
    result = wattprobe_run(
        tree.root, "--repeat", "5", "-s", "0.2", "-o", str(out), "--", *counted(tmp_path, 6, 2)
    )
    assert result.returncode == 6, result.stderr
    assert executions(tmp_path) == 2  # stopped after the failed one, as hyperfine does
    doc = json.loads(out.read_text())
    assert [run["exit_code"] for run in doc["runs"]] == [0, 6]
    assert "no more runs" in result.stderr


def test_a_failed_warmup_stops_before_any_run(tree, tmp_path):
    out = tmp_path / "runs.json"
    result = wattprobe_run(
        tree.root,
        "--repeat",
        "3",
        "--warmup",
        "2",
        "-s",
        "0.2",
        "-o",
        str(out),
        "--",
        *counted(tmp_path, 5, 1),
    )
    assert result.returncode == 5, result.stderr
    assert executions(tmp_path) == 1
    assert json.loads(out.read_text())["runs"] == []


def test_the_baseline_gives_each_run_its_energy_above_idle(tree, tmp_path):
    """On the synthetic tree the host draws 40 W whatever runs: its idle power is 40 W and what a run
    adds to it is about 0 (the difference is kept with its sign)."""
    out = tmp_path / "runs.json"
    result = wattprobe_run(
        tree.root, "--repeat", "2", "--baseline", "0.6", "-s", "0.2", "-o", str(out), "--", *counted(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    for run in doc["runs"]:
        assert run["idle_power_w"] == pytest.approx(WATTS, rel=0.03)
        # Over the sensor's windows, which the timeline's (the scans') match to within a few ms.
        windows = sum(step["window_s"] for step in run["timeline"])
        expected = run["host_energy_j"] - run["idle_power_w"] * windows
        assert run["energy_above_idle_j"] == pytest.approx(expected, abs=0.02 * WATTS)
        assert abs(run["energy_above_idle_j"]) < 0.05 * run["host_energy_j"]
    assert doc["summary"]["energy_above_idle_j"]["n"] == 2
    assert "above idle" in result.stderr


def test_one_run_asked_for_is_the_repeated_runs_document(tree, tmp_path):
    out = tmp_path / "runs.json"
    result = wattprobe_run(tree.root, "--repeat", "1", "-s", "0.2", "-o", str(out), "--", *counted(tmp_path))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert len(doc["runs"]) == 1 and doc["summary"]["energy_j"]["stdev"] is None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--repeat", "0"), "--repeat must be at least 1"),
        (("--repeat", "x"), "not a whole number"),
        (("--warmup", "-1"), "must be >= 0"),
        (("--baseline", "0"), "above 0"),
        (("--repeat", "2", "--report", "r.html"), "--report shows one run"),
    ],
)
def test_bad_repetitions_are_one_line(tree, tmp_path, args, needle):
    result = wattprobe_run(tree.root, *args, "--", "true")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
