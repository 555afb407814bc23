"""The PowerSpy2 driver against the emulator over a real pseudo-terminal."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from tests.support.powerspy2 import emulator
from wattprobe.sources.powerspy2.device import DeviceError, PowerSpy2
from wattprobe.sources.powerspy2.emulator import EXAMPLE_PACKET


def take(device: PowerSpy2, interval_s: float, count: int) -> list:
    return list(itertools.islice(device.packets(interval_s), count))


def test_worked_example_end_to_end(tmp_path):
    with emulator(tmp_path) as meter:
        meter.raw_packet = EXAMPLE_PACKET
        device = PowerSpy2(meter.link)
        info = device.open()
        assert info.calibration.uscale == pytest.approx(0.0815476, rel=1e-6)  # current, not factory, scale
        assert info.calibration.iscale == pytest.approx(0.000544977, rel=1e-6)
        assert info.line_hz == 50.0
        (packet,) = take(device, 0.25, 1)
        device.close()
    assert round(packet.watts, 2) == 171.14
    assert round(packet.volts, 2) == 230.70
    assert round(packet.amps, 4) == 0.7832
    assert round(packet.volts_peak, 1) == 326.9
    assert round(packet.amps_peak, 3) == 1.494
    assert packet.period_s == pytest.approx(0.24)  # 12 periods at 50 Hz, not the asked 250 ms
    assert abs(packet.time - time.time()) < 1.0
    assert meter.received[-2:] == ["J000C", "Q"]


def test_v1_meter_at_60_hz_decodes_the_asked_power(tmp_path):
    with emulator(tmp_path, watts=1234.5, volts=120.0, line_hz=60.0, v1=True) as meter:
        device = PowerSpy2(meter.link)
        packets = take(device, 0.1, 3)
        device.close()
    assert "J06" in meter.received  # v1: two hex digits
    for packet in packets:
        assert packet.watts == pytest.approx(1234.5, abs=1e-3)
        assert packet.volts == pytest.approx(120.0, abs=1e-3)
        assert packet.period_s == pytest.approx(0.1, rel=1e-4)  # 1 000 000 / 16667 Hz
    gaps = [b.time - a.time for a, b in itertools.pairwise(packets)]
    assert gaps == pytest.approx([0.1, 0.1], rel=1e-4)


def test_stream_left_running_that_ignores_stop(tmp_path):
    with emulator(tmp_path, streaming=True, periods=1, watts=42.0) as meter:
        meter.set_fault("ignore-stop")
        time.sleep(0.2)
        device = PowerSpy2(meter.link)
        packets = take(device, 0.1, 5)
        device.close()
    assert [round(p.watts, 3) for p in packets] == [42.0] * 5
    assert all(p.period_s == pytest.approx(0.1) for p in packets)


def test_no_load_reads_zero_watts(tmp_path):
    with emulator(tmp_path, watts=0.0) as meter:
        device = PowerSpy2(meter.link)
        packets = take(device, 0.1, 2)
        device.close()
    assert [p.watts for p in packets] == [0.0, 0.0]


def test_stop_from_another_thread_with_a_silent_meter(tmp_path):
    with emulator(tmp_path) as meter:
        device = PowerSpy2(meter.link)
        stream = device.packets(0.1)
        next(stream)
        meter.set_fault("silent")
        threading.Timer(0.3, device.stop).start()
        started = time.monotonic()
        assert list(stream) == []
        stopped_after = time.monotonic() - started
        device.close()
    assert stopped_after < 0.3 + 1.0
    assert meter.received[-1] == "Q"


def test_reconnects_after_the_link_drops(tmp_path):
    with emulator(tmp_path, watts=99.0) as meter:
        device = PowerSpy2(meter.link)
        stream = device.packets(0.1)
        before = [next(stream) for _ in range(3)]
        meter.set_fault("drop", down_s=0.4)
        after = [next(stream) for _ in range(3)]
        device.stop()
        device.close()
    assert meter.received.count("?") >= 2  # identified again on the new link
    gaps = [b.time - a.time for a, b in itertools.pairwise(before + after)]
    assert min(gaps) > 0
    assert max(gaps) > 0.4  # the time the link was down
    assert all(p.watts == pytest.approx(99.0, abs=1e-3) for p in after)


def test_a_missing_device_is_one_clear_error(tmp_path):
    with pytest.raises(DeviceError, match=r"does not exist: .*rfcomm connect .* <MAC> 1"):
        PowerSpy2(str(tmp_path / "rfcomm9")).open()
