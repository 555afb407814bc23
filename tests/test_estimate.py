"""The estimate sensor: its curves, and power from a synthetic /proc/stat through the real sensor."""

from __future__ import annotations

import time

import pytest

from wattprobe.core.counters import energy_deltas, host_energy
from wattprobe.sources.estimate import CPU_PROFILES, EstimateSensor, teads_fraction


@pytest.mark.parametrize(
    ("load", "fraction"),
    [(0, 0.12), (0.1, 0.32), (0.5, 0.75), (1, 1.02), (0.3, 0.535), (2, 1.02), (-1, 0.12)],
)
def test_teads_curve(load, fraction):
    assert teads_fraction(load) == pytest.approx(fraction)


def write_stat(root, busy: int, idle: int, steal: int = 0, cpus: int = 4) -> None:
    user, system = busy // 2, busy - busy // 2
    cpu_lines = [f"cpu{i} 0 0 0 0 0 0 0 0 0 0" for i in range(cpus)]
    (root / "stat").write_text(
        f"cpu  {user} 0 {system} {idle} 0 0 0 {steal} 0 0\n" + "\n".join(cpu_lines) + "\n"
    )


def power(sensor: EstimateSensor, root, busy: int, idle: int, steal: int = 0) -> float:
    write_stat(root, 1000, 1000)
    before = sensor.read()
    time.sleep(0.05)  # counters are whole µJ: a window long enough for rounding not to matter
    write_stat(root, 1000 + busy, 1000 + idle, steal)
    after = sensor.read()
    host_uj, source = host_energy(energy_deltas(before, after))
    assert source == "package"
    return host_uj / 1e6 / ((after.t_ns - before.t_ns) / 1e9)


@pytest.mark.parametrize("load", [0.0, 0.25, 1.0])
def test_linear_model_per_vcpu(tmp_path, load):
    sensor = EstimateSensor(str(tmp_path))
    low, high = CPU_PROFILES["unknown"]
    measured = power(sensor, tmp_path, busy=int(400 * load), idle=int(400 * (1 - load)), steal=50)
    assert measured == pytest.approx(4 * (low + load * (high - low)), rel=1e-3)
    assert sensor.estimated and sensor.name == "estimate"


def test_tdp_selects_the_teads_curve(tmp_path):
    sensor = EstimateSensor(str(tmp_path), tdp=100)
    assert power(sensor, tmp_path, busy=200, idle=200) == pytest.approx(75.0, rel=1e-3)
    assert "Teads" in sensor.model


def test_memory_power_is_a_dram_domain(tmp_path):
    sensor = EstimateSensor(str(tmp_path), vcpu_watts=(1.0, 1.0), memory_watts=2.0)
    write_stat(tmp_path, 1000, 1000)
    before = sensor.read()
    time.sleep(0.05)
    write_stat(tmp_path, 1100, 1100)
    after = sensor.read()
    deltas = energy_deltas(before, after)
    seconds = (after.t_ns - before.t_ns) / 1e9
    assert deltas[(0, "dram")] / 1e6 / seconds == pytest.approx(2.0, rel=1e-3)
    assert host_energy(deltas)[1] == "package+dram"
