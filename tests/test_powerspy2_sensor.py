"""PowerSpy2 as the host's energy sensor: integrated wall energy, and the pipeline on top of it."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.support.powerspy2 import emulator, wattprobe
from tests.support.waiting import wait_for
from wattprobe.core.model import EnergyReading
from wattprobe.errors import SensorReadError, WattprobeError
from wattprobe.sources.powerspy2.clock import LATE_BOUND_S
from wattprobe.sources.powerspy2.device import Packet
from wattprobe.sources.powerspy2.gaps import gap
from wattprobe.sources.powerspy2.sensor import PowerSpy2Sensor

PERIOD_S = 0.24  # the sensor's packets at 50 Hz
GAP_WARNING = "steps are skipped until it answers"
BACK = "answers again"


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


def joules(first: EnergyReading, last: EnergyReading) -> float:
    return (last.counters[0].uj - first.counters[0].uj) / 1e6


def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> float:
    """When `condition` held (monotonic s), polled every 20 ms."""
    wait_for(condition, timeout, what, every_s=0.02)
    return time.monotonic()


def refuses(sensor: PowerSpy2Sensor) -> bool:
    try:
        sensor.read()
    except SensorReadError:
        return True
    return False


def packet(mono: float, watts: float, period_s: float = 0.24) -> Packet:
    return Packet(1e9 + mono, watts, 230.0, watts / 230.0, period_s, mono)


def test_lost_packets_are_filled_between_the_power_before_and_after():
    assert gap(packet(10.0, 100.0), packet(10.24, 300.0)) is None  # adjacent
    assert gap(packet(10.0, 100.0), packet(10.0 + 1.4 * 0.24, 300.0)) is None  # jitter, not a loss
    lost = gap(packet(10.0, 100.0), packet(12.24, 300.0))
    assert lost is not None
    assert (lost.lost_s, lost.watts, lost.joules) == pytest.approx((2.0, 200.0, 400.0))


def test_a_silence_is_refused_then_filled_and_marked(tmp_path, caplog):
    """Reads refuse once the last packet is late beyond the clock's bound; the gap's energy comes back."""
    caplog.set_level(logging.INFO, logger="wattprobe.sources.powerspy2")
    with emulator(tmp_path, watts=100.0) as meter:
        sensor = PowerSpy2Sensor(meter.link)
        try:
            time.sleep(1.0)
            before = sensor.read()
            assert before.estimated_uj == 0
            time.sleep(1.0)
            meter.set_fault("silent")
            meter.set_power(300.0)
            silent_at = time.monotonic()
            refused_at = until(lambda: refuses(sensor), "reads to be refused")
            for _ in range(5):
                assert refuses(sensor)  # and it keeps refusing, with one warning
            time.sleep(max(0.0, silent_at + 2.0 - time.monotonic()))
            meter.set_fault(None)
            back_at = until(lambda: not refuses(sensor), "reads to be taken again")
            filled = sensor.read().estimated_uj  # the filled energy, counted apart
            time.sleep(1.0)
            after = sensor.read()
            assert after.estimated_uj == filled  # nothing filled since
        finally:
            sensor.close()
    # late beyond one period plus the clock's bound, not before and not much after
    assert PERIOD_S + LATE_BOUND_S - 0.3 < refused_at - silent_at < PERIOD_S + LATE_BOUND_S + 0.3
    assert filled > 0
    # 100 W up to the last packet (half a period before the silence on average), 300 W from the
    # period of the packet that ended it, the mean of the two in between
    last_before, first_after = silent_at - PERIOD_S / 2, back_at - PERIOD_S
    expected = 100.0 * (last_before - before.t_ns / 1e9) + 200.0 * (first_after - last_before)
    expected += 300.0 * (after.t_ns / 1e9 - first_after)
    # filling at the power after the gap would give about 200 J more, at the power before 200 J less
    assert joules(before, after) == pytest.approx(expected, rel=0.05)
    messages = [r.getMessage() for r in caplog.records]
    assert sum(GAP_WARNING in m for m in messages) == 1, messages
    assert sum(BACK in m and "filled at 200.0 W" in m for m in messages) == 1, messages


def test_bluetooth_hold_ups_are_neither_gaps_nor_counted_twice(tmp_path, caplog):
    """Packets held back and released together: short hold-ups pass, a long one is not filled."""
    caplog.set_level(logging.WARNING, logger="wattprobe.sources.powerspy2")
    with emulator(tmp_path, "short", watts=100.0) as short, emulator(tmp_path, "long", watts=100.0) as long:
        sensors = {"short": PowerSpy2Sensor(short.link), "long": PowerSpy2Sensor(long.link)}
        try:
            time.sleep(0.5)
            first = {name: sensor.read() for name, sensor in sensors.items()}
            short.set_fault("burst", burst_s=0.5)
            long.set_fault("burst", burst_s=1.6)
            started, long_refused = time.monotonic(), 0
            while time.monotonic() - started < 5.0:
                assert not refuses(sensors["short"])
                long_refused += refuses(sensors["long"])  # not knowing yet whether packets were lost
                time.sleep(0.05)
            short.set_fault(None)
            long.set_fault(None)
            time.sleep(0.5)
            last = {name: sensor.read() for name, sensor in sensors.items()}
        finally:
            for sensor in sensors.values():
                sensor.close()
    for name in sensors:
        seconds = (last[name].t_ns - first[name].t_ns) / 1e9
        assert joules(first[name], last[name]) / seconds == pytest.approx(100.0, rel=0.02), name
    assert long_refused > 0
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if short.link in m], messages
    assert [m for m in messages if long.link in m and BACK in m and "none was lost" in m], messages


def agent_documents(run: subprocess.Popen[str], fault: str) -> tuple[list[dict], str]:
    """What `wattprobe -s powerspy2 json` wrote around a gap, and its stderr."""
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, (fault, err)
    assert "Traceback" not in err, err
    return json.loads(out), err


def test_a_gap_through_the_agent_is_skipped_and_averaged(tmp_path):
    """A silent meter and a dropped link mid-run: no 0 W, no spike, energy kept, one warning."""
    watts, step = 171.14, 0.25
    meters = {fault: emulator(tmp_path, fault, watts=watts) for fault in ("silent", "drop")}
    runs = {
        fault: wattprobe(
            "-s", "powerspy2", "--powerspy-device", meter.link, "json", "-t", "8", "-s", str(step)
        )
        for fault, meter in meters.items()
    }
    try:
        wait_for(lambda: all("J000C" in meter.received for meter in meters.values()), 10, "both streams")
        time.sleep(2.5)
        meters["drop"].set_fault("drop", down_s=1.0)  # back after about 2 s: reopened with backoff
        meters["silent"].set_fault("silent")
        time.sleep(2.0)
        meters["silent"].set_fault(None)
        results = {fault: agent_documents(runs[fault], fault) for fault in runs}
    finally:
        for fault, run in runs.items():
            if run.poll() is None:
                run.kill()
                run.wait()
            meters[fault].stop()
    for fault, (documents, err) in results.items():
        hosts = [document["host"] for document in documents]
        consumption = [host["consumption"] / 1e6 for host in hosts]
        assert all(abs(w / watts - 1) < 0.5 for w in consumption), (fault, consumption)
        stamps = [host["timestamp"] for host in hosts]
        windows = [b - a for a, b in itertools.pairwise(stamps)]
        energy = sum(w * window for w, window in zip(consumption[1:], windows, strict=True))
        assert energy == pytest.approx(watts * (stamps[-1] - stamps[0]), rel=0.05), fault
        # two steps or more in the gap were skipped: one long window, the one marked estimated
        (marked,) = [i for i, host in enumerate(hosts) if host["estimated"]]
        assert windows[marked - 1] > 2.5 * step, (fault, windows)
        assert err.count(GAP_WARNING) == 1, err
        assert err.count(BACK) == 1, err
