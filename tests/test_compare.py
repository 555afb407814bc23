"""`wattprobe compare BASE.json NEW.json`: the change of each figure, its interval, the verdict and the
gate's exit status, on synthetic repeated runs and on real `wattprobe run -o` files."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import agents
from wattprobe import cli
from wattprobe.commandenergy import stats

# Runs of one command drawn from one distribution: 2 % spread in CPU time, 15 % in energy (its share of
# the host's power moves with the neighbours' load), as repeated runs on a shared machine show.
CPU_S, ENERGY_J, DURATION_S = 2.0, 30.0, 2.5


def runs(seed: int, n: int = 10, *, work: float = 1.0, estimated: bool = False) -> list[dict[str, Any]]:
    draw = random.Random(seed)
    return [
        {
            "schema_version": 1,
            "command": ["make", "test"],
            "energy_j": draw.gauss(ENERGY_J * work, ENERGY_J * work * 0.15),
            "cpu_seconds": draw.gauss(CPU_S * work, CPU_S * work * 0.02),
            "duration_s": draw.gauss(DURATION_S * work, DURATION_S * work * 0.03),
            "sensor": "estimate" if estimated else "powercap_rapl",
            "estimated": estimated,
        }
        for _ in range(n)
    ]


def write(path: Path, doc: Any) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def compare(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`wattprobe compare ARGS` in this process: its exit status, stdout and stderr."""
    try:
        status = cli.main(["compare", *args])
    except SystemExit as leaving:  # argparse's own errors
        status = int(leaving.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def test_the_same_work_is_no_significant_change_and_passes_the_gate(tmp_path, capsys) -> None:
    base = write(tmp_path / "base.json", stats.repeated(runs(1)))
    new = write(tmp_path / "new.json", stats.repeated(runs(2)))
    status, out, err = compare(capsys, base, new, "--fail-above", "5%")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"base: {base} (10 runs); new: {new} (10 runs)"
    assert lines[1].split() == ["figure", "base", "new", "change", "verdict"]
    for line, name in zip(lines[2:5], ("energy_j", "cpu_seconds", "duration_s"), strict=True):
        assert line.startswith(name) and line.endswith("no significant change"), line
    # The columns are aligned: every row's verdict starts where the header's does.
    assert {
        line.index("verdict" if i == 1 else "no significant") for i, line in enumerate(lines[1:5], 1)
    } == {lines[1].index("verdict")}
    assert lines[-1] == "passed: no figure significantly higher by more than 5 %"


def test_doubled_work_is_higher_and_fails_the_gate(tmp_path, capsys) -> None:
    base = write(tmp_path / "base.json", stats.repeated(runs(1)))
    new = write(tmp_path / "new.json", stats.repeated(runs(2, work=2.0)))
    status, out, err = compare(capsys, base, new, "--fail-above", "5", "--format", "json")
    assert status == 1
    doc = json.loads(out)
    assert doc["failed"] is True and doc["fail_above_pct"] == 5.0
    energy = doc["metrics"]["energy_j"]
    assert energy["verdict"] == "higher" and energy["fails"] is True and energy["unit"] == "J"
    assert 70 < energy["change_pct"] < 130 and energy["change_ci95_pct"][0] > 5
    assert energy["change_ci95_pct"][0] < energy["change_pct"] < energy["change_ci95_pct"][1]
    assert doc["metrics"]["cpu_seconds"]["change_pct"] == pytest.approx(100, abs=3)
    assert energy["base"]["n"] == 10 and len(energy["base"]["ci95"]) == 2
    # One line per failing figure on stderr, for the job's log when stdout goes to a summary file.
    assert err.splitlines()[0].startswith("wattprobe: compare: energy_j is higher by +")
    assert err.splitlines()[0].endswith("above 5 %") and len(err.splitlines()) == 3
    # No threshold: a report only.
    assert compare(capsys, base, new)[0] == 0


def test_a_significant_rise_below_the_threshold_passes(tmp_path, capsys) -> None:
    base = [{"cpu_seconds": 2.0 + i * 0.001} for i in range(5)]
    new = [{"cpu_seconds": 2.06 + i * 0.001} for i in range(5)]  # +3 %, far beyond the noise
    base_path = write(tmp_path / "base.json", stats.repeated(base))
    new_path = write(tmp_path / "new.json", stats.repeated(new))
    status, out, _ = compare(
        capsys, base_path, new_path, "--metric", "cpu_seconds", "--fail-above", "5", "--format", "json"
    )
    assert status == 0 and json.loads(out)["metrics"]["cpu_seconds"]["verdict"] == "higher"
    assert compare(capsys, base_path, new_path, "--metric", "cpu_seconds", "--fail-above", "2.5")[0] == 1
    # Lower is never a failure.
    assert compare(capsys, new_path, base_path, "--metric", "cpu_seconds", "--fail-above", "0")[0] == 0


def test_markdown_is_a_table_for_a_job_summary(tmp_path, capsys) -> None:
    base = write(tmp_path / "base.json", stats.repeated(runs(1, estimated=True)))
    new = write(tmp_path / "new.json", stats.repeated(runs(2, work=2.0, estimated=True)))
    status, out, _ = compare(
        capsys, base, new, "--format", "markdown", "--fail-above", "5", "--metric", "energy_j"
    )
    assert status == 1
    lines = out.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| figure | base | new | change | verdict |"
    cells = [cell.strip() for cell in table[2].strip("|").split("|")]
    assert len(table) == 3 and cells[0] == "energy_j" and cells[4] == "higher"
    doc = stats.summarize(stats.values_of(runs(1), "energy_j"))
    half = (doc.ci95[1] - doc.ci95[0]) / 2  # type: ignore[index]
    mean, plus_minus, spread, unit = cells[1].split()
    assert (plus_minus, unit) == ("±", "J")
    assert float(mean) == pytest.approx(doc.mean, abs=0.06) and float(spread) == pytest.approx(half, abs=0.06)
    change, percent, lo, hi = cells[3].split()
    assert percent == "%" and float(lo.strip("[,")) < float(change) < float(hi.strip("]"))
    # The estimate is said, and what it means.
    assert any("estimated" in line and "CPU-time shares" in line for line in lines if line.startswith("- "))
    assert "- **failed: energy_j significantly higher by more than 5 %**" in lines


def test_single_runs_compare_without_an_interval(tmp_path, capsys) -> None:
    one, other = runs(1, 1)[0], runs(2, 1, work=2.0)[0]
    del one["schema_version"]  # a run's JSON from before the schema's version is read too
    base, new = write(tmp_path / "a.json", one), write(tmp_path / "b.json", other)
    status, out, _ = compare(capsys, base, new, "--fail-above", "5", "--format", "json")
    doc = json.loads(out)
    assert status == 0 and not doc["failed"]
    energy = doc["metrics"]["energy_j"]
    assert (
        energy["verdict"] == "not enough runs"
        and energy["ci95"] is None
        and energy["change_ci95_pct"] is None
    )
    assert energy["base"]["stdev"] is None and energy["change_pct"] == pytest.approx(
        (other["energy_j"] / one["energy_j"] - 1) * 100, rel=1e-5
    )
    assert any("at least 2 runs" in note for note in doc["notes"])
    # Against repeated runs: still one value on one side, still no verdict.
    repeated = write(tmp_path / "c.json", stats.repeated(runs(3, work=2.0)))
    assert compare(capsys, base, repeated, "--fail-above", "5")[0] == 0


def test_runs_without_a_figure_count_as_fewer(tmp_path, capsys) -> None:
    base = runs(1, 5)
    base[0]["energy_j"] = None  # the sensor gave nothing for that run
    paths = (
        write(tmp_path / "a.json", stats.repeated(base)),
        write(tmp_path / "b.json", stats.repeated(runs(2, 5))),
    )
    status, out, _ = compare(capsys, *paths)
    assert status == 0
    energy_line = next(line for line in out.splitlines() if line.startswith("energy_j"))
    assert "(n=4)" in energy_line


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, (), "base.json: cannot read: No such file or directory"),
        ("{not json", (), "base.json: not JSON: Expecting property name enclosed in double quotes at line 1"),
        ("[1, 2]", (), "base.json: expected the JSON of `wattprobe run -o`"),
        ('{"hello": 1}', (), "base.json: expected the JSON of `wattprobe run -o`"),
        ('{"runs": []}', (), "base.json: 'runs' must be a non-empty list of runs"),
        ('{"runs": [3]}', (), "base.json: run 1 is a JSON int"),
        ('{"schema_version": 2, "runs": [{"energy_j": 1}]}', (), "base.json: schema_version 2 is newer"),
        ('{"runs": [{"energy_j": "1 J"}]}', (), "base.json: run 1: energy_j is '1 J', not a number"),
        (
            '{"runs": [{"energy_j": 1, "cpu_seconds": 1, "duration_s": 1}]}',
            ("--metric", "host_energy_j"),
            "base.json: no run has a value for host_energy_j (it has: energy_j, cpu_seconds, duration_s)",
        ),
        (b"\xff\xfe", (), "base.json: not UTF-8 text"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content, args, message) -> None:
    path = tmp_path / "base.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    new = write(tmp_path / "new.json", stats.repeated(runs(1)))
    status, out, err = compare(capsys, str(path), new, *args)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"wattprobe: error: {tmp_path}/{message}"), err


@pytest.mark.parametrize(
    "args", [("--metric", "joules"), ("--fail-above", "-5"), ("--fail-above", "lots"), ("--format", "html")]
)
def test_bad_options_are_one_line_and_exit_2(tmp_path, capsys, args) -> None:
    path = write(tmp_path / "a.json", stats.repeated(runs(1)))
    status, out, err = compare(capsys, path, path, *args)
    assert status == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err


def test_metrics_repeat_or_comma_separated_in_the_given_order(tmp_path, capsys) -> None:
    path = write(tmp_path / "a.json", stats.repeated(runs(1)))
    status, out, _ = compare(
        capsys, path, path, "--metric", "duration_s,energy_j", "--metric", "energy_j", "--format", "json"
    )
    assert status == 0 and list(json.loads(out)["metrics"]) == ["duration_s", "energy_j"]


# Burns ARGV[1] s of CPU.
BURN = (
    "import sys, time\nend = time.process_time() + float(sys.argv[1])\nwhile time.process_time() < end: pass"
)


def test_real_runs_of_doubled_work_compare_higher(tmp_path) -> None:
    """End to end (modest: about 10 s on a quiet machine): four real `wattprobe run -o` files a side, interleaved so that
    the neighbours' load falls on both sides alike, joined with the repeated runs' summary, compared."""
    sides: dict[float, list[dict[str, Any]]] = {0.3: [], 0.6: []}
    for i in range(4):
        for seconds, side in sides.items():
            out = tmp_path / f"run-{seconds}-{i}.json"
            done = agents.run(
                agents.command(
                    "-s", "estimate", "run", "-o", str(out), "--", sys.executable, "-c", BURN, str(seconds)
                )
            )
            assert done.returncode == 0, done.stderr
            side.append(json.loads(out.read_text()))
    assert all(run["schema_version"] == 1 and run["estimated"] for side in sides.values() for run in side)
    base = write(tmp_path / "base.json", stats.repeated(sides[0.3]))
    new = write(tmp_path / "new.json", stats.repeated(sides[0.6]))
    assert json.loads(Path(base).read_text())["summary"]["cpu_seconds"]["n"] == 4
    done = agents.run(
        agents.command(
            "compare", base, new, "--fail-above", "5", "--metric", "energy_j,cpu_seconds", "--format", "json"
        )
    )
    assert done.returncode == 1, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert (
        doc["metrics"]["energy_j"]["verdict"] == "higher"
        and doc["metrics"]["cpu_seconds"]["verdict"] == "higher"
    )
    assert (
        50 < doc["metrics"]["cpu_seconds"]["change_pct"] < 110
    )  # 0.3 s more over ~0.33 s (start-up included)
    assert doc["base"]["estimated"] and any("CPU-time shares" in note for note in doc["notes"])
