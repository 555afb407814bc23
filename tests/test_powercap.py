"""The powercap sensor on synthetic trees: discovery, power, wraps, torn reads, errors."""

from __future__ import annotations

import os

import pytest

from tests.support.powercap_tree import MAX_UJ, PowercapTree, default_watts
from tests.support.processes import open_files
from wattprobe.core.counters import energy_deltas, host_energy
from wattprobe.errors import SensorReadError, WattprobeError
from wattprobe.sources.mounts import filesystem_of
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


def _descriptors_on(root) -> list[str]:
    return list(open_files(root).values())


def test_a_tree_off_sysfs_is_opened_anew_at_each_read_and_follows_its_renames(tmp_path):
    tree = PowercapTree(tmp_path)  # each counter's file replaced by rename at each write, as a VM's export
    assert filesystem_of(str(tmp_path)) != "sysfs"
    sensor = PowercapSensor(str(tmp_path), clock=tree.clock)
    before = sensor.read()
    assert _descriptors_on(tmp_path) == []
    tree.advance(1.0)
    deltas = energy_deltas(before, sensor.read())
    assert {key: uj / 1e6 for key, uj in deltas.items()} == pytest.approx(tree.watts, rel=1e-6)


def test_kept_descriptors_follow_a_tree_rewritten_in_place_as_sysfs_is(tmp_path):
    tree = PowercapTree(tmp_path, tear_pause_s=0.0)  # in place: the file stays, its text changes
    sensor = PowercapSensor(str(tmp_path), clock=tree.clock, keep_open=True)
    before = sensor.read()
    kept = sorted(_descriptors_on(tmp_path))
    assert kept == sorted(z.path for z in sensor.zones)
    tree.advance(1.0)
    after = sensor.read()
    assert sorted(_descriptors_on(tmp_path)) == kept  # read again through the same ones, none opened
    deltas = energy_deltas(before, after)
    assert {key: uj / 1e6 for key, uj in deltas.items()} == pytest.approx(tree.watts, rel=1e-6)
    sensor.close()
    assert _descriptors_on(tmp_path) == []


def test_a_kept_descriptor_that_fails_is_a_skipped_sample_and_opened_anew_at_the_next_read(tmp_path):
    tree = PowercapTree(tmp_path, tear_pause_s=0.0)
    sensor = PowercapSensor(str(tmp_path), clock=tree.clock, keep_open=True)
    before = sensor.read()
    package = str(tree.paths[(0, "package")])
    (broken,) = (fd for fd, path in open_files(tmp_path).items() if path == package)
    os.close(broken)  # as a zone's file that went with its driver answers
    with pytest.raises(SensorReadError, match="intel-rapl:0/energy_uj"):
        sensor.read()
    tree.advance(1.0)
    deltas = energy_deltas(before, sensor.read())
    assert deltas[(0, "package")] / 1e6 == pytest.approx(tree.watts[(0, "package")], rel=1e-6)
    assert package in _descriptors_on(tmp_path)
    sensor.close()
