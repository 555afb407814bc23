"""PowerSpy2 as the host's energy sensor: integrated wall energy, and the pipeline on top of it."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from tests.powerspy2_helpers import emulator, wattprobe
from wattprobe.errors import WattprobeError
from wattprobe.sources.powerspy2.sensor import PowerSpy2Sensor


def mean_watts(sensor: PowerSpy2Sensor, seconds: float) -> float:
    first = sensor.read()
    time.sleep(seconds)
    last = sensor.read()
    ((a,), (b,)) = first.counters, last.counters
    return (b.uj - a.uj) / 1e6 / ((last.t_ns - first.t_ns) / 1e9)


def test_integrated_energy_matches_power_times_time(tmp_path):
    with emulator(tmp_path, watts=171.14) as meter:
        sensor = PowerSpy2Sensor(meter.link)
        try:
            assert (sensor.name, sensor.estimated) == ("powerspy2", False)
            (counter,) = sensor.read().counters
            assert (counter.socket, counter.domain, counter.max_uj) == (None, "wall", 0)
            assert mean_watts(sensor, 1.5) == pytest.approx(171.14, rel=0.01)
            meter.set_power(60.0)
            time.sleep(0.6)  # let the packets under way at the old power pass
            assert mean_watts(sensor, 1.5) == pytest.approx(60.0, rel=0.01)
        finally:
            sensor.close()
    assert meter.received[-1] == "Q"


def test_counter_never_goes_backwards_when_power_drops(tmp_path):
    with emulator(tmp_path, watts=500.0) as meter:
        sensor = PowerSpy2Sensor(meter.link)
        try:
            readings = []
            for step in range(40):
                if step == 10:
                    meter.set_power(5.0)
                readings.append(sensor.read().counters[0].uj)
                time.sleep(0.03)
        finally:
            sensor.close()
    assert all(b >= a for a, b in itertools.pairwise(readings))
    assert readings[-1] > readings[0]


def test_a_missing_meter_is_a_user_error(tmp_path):
    with pytest.raises(WattprobeError, match="rfcomm connect"):
        PowerSpy2Sensor(str(tmp_path / "rfcomm0"))


def test_host_power_is_wall_power_through_the_pipeline(tmp_path):
    with emulator(tmp_path, watts=88.5) as meter:
        run = wattprobe("-s", "powerspy2", "--powerspy-device", meter.link, "json", "-t", "2", "-s", "1")
        out, err = run.communicate(timeout=20)
    assert run.returncode == 0, err
    documents = json.loads(out)
    assert documents, err
    for document in documents:
        host = document["host"]
        assert (host["sensor"], host["source"], host["estimated"]) == ("powerspy2", "wall", False)
        assert host["consumption"] == pytest.approx(88.5e6, rel=0.01)  # µW
        assert host["unattributed_consumption"] <= host["consumption"]
