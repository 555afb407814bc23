"""A small run of the wattprobe side of benchmarks/versus_codecarbon.py (CodeCarbon is not installed
here: the benchmark makes its own venv). Timing is for the benchmark itself."""

from __future__ import annotations

import pytest

from benchmarks.versus_codecarbon import api_cost, under_wattprobe, workload


def test_wattprobe_run_counts_the_workload_and_its_own_cost():
    m = under_wattprobe(workload(0.5, 0.05, 5), step_s=0.2)
    assert 0.5 <= m["command_cpu_s"] <= 2.0
    assert m["counted_cpu_s"] == pytest.approx(m["command_cpu_s"], rel=0.1)
    assert 0 < m["tool_cpu_s"] < 5 and m["energy_j"] > 0 and m["host_energy_j"] >= m["energy_j"]


def test_what_the_api_costs_is_reported():
    result = api_cost(seconds=0.5, steps=(0.1,), extra=(0,))
    share = result.numbers["overhead_share_0_0.1"]
    assert 0 < share < 0.5
    assert result.markdown().startswith("### What wattprobe.measure() costs")
