"""The summary on stderr is never wrapped outside a terminal (a log, a CI job: each figure with its unit,
on its own line); carbon is in g, as `measure()` and the JSON give it; a Result saves its JSON and its
HTML report itself."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest

from tests.support import frames
from tests.support.run import vm_tree, wattprobe_run
from wattprobe.commandenergy import report
from wattprobe.commandenergy.carbon import Intensity
from wattprobe.commandenergy.meter import Meter
from wattprobe.commandenergy.result import Result


def test_the_summary_is_not_wrapped_outside_a_terminal_and_carbon_is_in_grams(tmp_path):
    long = "x" * 150
    with vm_tree(tmp_path / "tree") as tree:
        result = wattprobe_run(tree.root, "-s", "0.2", "--", "sh", "-c", "exit 0", long)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    carbon = next(line for line in lines if line.strip().startswith("carbon"))
    # The whole row on one line: the figures, their units and the source of the intensity.
    assert (
        "CO2e (host " in carbon
        and "g) at 481 g/kWh: world average" in carbon
        and carbon.rstrip().endswith("2023)")
    )
    assert " mg" not in result.stderr
    # The title: the command line cut at 100 characters, on one line.
    assert any(
        line.startswith("wattprobe run: sh -c 'exit 0' xxxxxx") and line.rstrip()[-1] == "…" for line in lines
    )
    power = next(line for line in lines if line.strip().startswith("power"))
    assert power.rstrip().endswith("W peak")


@pytest.mark.parametrize(
    ("grams", "shown"),
    [
        (0.0, "0 g"),
        (0.0000049, "0.00000490 g"),
        (0.000912, "0.000912 g"),
        (0.9, "0.900 g"),
        (12.345, "12.3 g"),
        (1234.5, "1,234 g"),
    ],
)
def test_carbon_is_in_grams_to_three_significant_digits(grams, shown):
    assert report.grams(grams) == shown


def measured() -> Result:
    meter = Meter(100, sensor="powercap_rapl", estimated=False, step_s=1.0, root_counts=False)
    member = frames.process(101, "cc -c a.c")
    for i in range(3):
        made = frames.frame([frames.consumer(member, 30.0)], host_watts=60.0)
        meter.write(
            dataclasses.replace(made, scan_ns=(i * 10**9, (i + 1) * 10**9), trees={100: frozenset({101})})
        )
    return Result(meter.tally(), Intensity(100.0, "test"), ("make",), 0)


def test_a_result_saves_its_json_and_its_report(tmp_path):
    result = measured()
    result.save_json(str(tmp_path / "run.json"))
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc == json.loads(json.dumps(result.to_json())) and doc["energy_j"] == pytest.approx(90.0)
    assert doc["schema_version"] == 1
    assert result.summary() == "90.00 J in 3.00 s (0.90 s CPU), 0.00250 g CO2e; host 180.00 J"
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("no matplotlib: save_html needs wattprobe[report]")
    result.save_html(str(tmp_path / "run.html"))
    page = (tmp_path / "run.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "cc -c a.c" in page and "90.0 J" in page
