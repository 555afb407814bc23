"""The powercap sensor on synthetic trees: discovery, power, wraps, torn reads, errors."""

from __future__ import annotations

import pytest

from tests.support.powercap_tree import MAX_UJ, PowercapTree, default_watts
from wattprobe.core.counters import energy_deltas, host_energy
from wattprobe.errors import SensorReadError, WattprobeError
from wattprobe.sources.powercap import PowercapSensor


def test_discovers_packages_domains_and_psys(powercap):
    sensor = PowercapSensor(str(powercap.root))
    keys = {(z.socket, z.domain) for z in sensor.zones}
    assert keys == set(default_watts())
    assert all(z.max_uj == MAX_UJ for z in sensor.zones)


def test_mmio_duplicate_of_a_package_is_not_counted_twice(tmp_path):
    tree = PowercapTree(tmp_path, mmio_duplicate=True)
    sensor = PowercapSensor(str(tmp_path))
    (package,) = [z for z in sensor.zones if (z.socket, z.domain) == (0, "package")]
    assert package.path == str(tree.paths[(0, "package")])  # intel-rapl:0's counter, not MMIO's
    assert not any("intel-rapl-mmio" in z.path for z in sensor.zones)


@pytest.mark.parametrize("seconds", [0.1, 1.0, 5.0])
def test_power_matches_the_synthetic_power_across_a_wrap(powercap, seconds):
    sensor = PowercapSensor(str(powercap.root), clock=powercap.clock)
    before = sensor.read()
    powercap.advance(seconds)  # 1 J below the wrap: the busier counters wrap here
    after = sensor.read()
    assert any(a.uj < b.uj for a, b in zip(after.counters, before.counters, strict=True))
    deltas = energy_deltas(before, after)
    window = (after.t_ns - before.t_ns) / 1e9
    for key, watts in powercap.watts.items():
        assert deltas[key] / 1e6 / window == pytest.approx(watts, rel=1e-3)
    host_uj, source = host_energy(deltas)
    assert source == "psys"
    assert host_uj / 1e6 / window == pytest.approx(60.0, rel=1e-3)


def test_host_without_psys_is_packages_plus_dram(tmp_path):
    tree = PowercapTree(tmp_path, default_watts(psys=False))
    sensor = PowercapSensor(str(tmp_path), clock=tree.clock)
    before = sensor.read()
    tree.advance(2.0)
    host_uj, source = host_energy(energy_deltas(before, sensor.read()))
    assert source == "package+dram"
    assert host_uj / 1e6 / 2.0 == pytest.approx(2 * (20 + 5), rel=1e-3)


@pytest.mark.parametrize("content", ["", "12a\n", "\n"])
def test_an_empty_or_garbled_read_is_a_skipped_sample(powercap, content):
    sensor = PowercapSensor(str(powercap.root))
    powercap.paths[(0, "core")].write_text(content)
    with pytest.raises(SensorReadError):
        sensor.read()


def test_missing_tree_names_the_module_and_vm(tmp_path):
    with pytest.raises(WattprobeError) as error:
        PowercapSensor(str(tmp_path / "nope"))
    message = str(error.value)
    assert "modprobe intel_rapl_common" in message and "--vm" in message


def test_tree_without_rapl_zones_is_an_error(tmp_path):
    (tmp_path / "dtpm").mkdir()
    with pytest.raises(WattprobeError, match="no RAPL zones"):
        PowercapSensor(str(tmp_path))


def test_a_read_is_stamped_in_its_middle_with_how_long_it_took(powercap):
    """A reading's values and its time must belong together (the counter guard judges the spread)."""
    ticks = iter([1_000_000_000, 1_004_000_000])
    reading = PowercapSensor(str(powercap.root), clock=lambda: next(ticks)).read()
    assert (reading.t_ns, reading.spread_ns) == (1_002_000_000, 4_000_000)
