"""The estimate sensor: its curves, and power from a synthetic /proc/stat through the real sensor."""

from __future__ import annotations

import pytest

from tests.support.powercap_tree import FakeClock
from tests.support.procfs import write_stat
from wattprobe.core.counters import energy_deltas, host_energy
from wattprobe.sources.estimate import CPU_PROFILES, EstimateSensor, teads_fraction


@pytest.mark.parametrize(
    ("load", "fraction"),
    [(0, 0.12), (0.1, 0.32), (0.5, 0.75), (1, 1.02), (0.3, 0.535), (2, 1.02), (-1, 0.12)],
)
def test_teads_curve(load, fraction):
    assert teads_fraction(load) == pytest.approx(fraction)


def power(sensor: EstimateSensor, clock: FakeClock, root, busy: int, idle: int, steal: int = 0) -> float:
    """Mean power over a 1 s window in which the machine's CPU times moved by busy, idle and steal ticks."""
    write_stat(root, 1000, 1000)
    before = sensor.read()
    clock.ns += 10**9
    write_stat(root, 1000 + busy, 1000 + idle, steal=steal)
    after = sensor.read()
    host_uj, source = host_energy(energy_deltas(before, after))
    assert source == "package"
    return host_uj / 1e6 / ((after.t_ns - before.t_ns) / 1e9)


@pytest.mark.parametrize("load", [0.0, 0.25, 1.0])
def test_linear_model_per_vcpu(tmp_path, load):
    clock = FakeClock()
    sensor = EstimateSensor(str(tmp_path), clock=clock)
    low, high = CPU_PROFILES["unknown"]
    measured = power(sensor, clock, tmp_path, busy=int(400 * load), idle=int(400 * (1 - load)), steal=50)
    assert measured == pytest.approx(4 * (low + load * (high - low)), rel=1e-3)
    assert sensor.estimated and sensor.name == "estimate"


def test_tdp_selects_the_teads_curve(tmp_path):
    clock = FakeClock()
    sensor = EstimateSensor(str(tmp_path), tdp=100, clock=clock)
    assert power(sensor, clock, tmp_path, busy=200, idle=200) == pytest.approx(75.0, rel=1e-3)
    assert "Teads" in sensor.model


def test_memory_power_is_a_dram_domain(tmp_path):
    clock = FakeClock()
    sensor = EstimateSensor(str(tmp_path), vcpu_watts=(1.0, 1.0), memory_watts=2.0, clock=clock)
    write_stat(tmp_path, 1000, 1000)
    before = sensor.read()
    clock.ns += 10**9
    write_stat(tmp_path, 1100, 1100)
    after = sensor.read()
    deltas = energy_deltas(before, after)
    seconds = (after.t_ns - before.t_ns) / 1e9
    assert deltas[(0, "dram")] / 1e6 / seconds == pytest.approx(2.0, rel=1e-3)
    assert host_energy(deltas)[1] == "package+dram"
