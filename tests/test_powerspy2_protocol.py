"""PowerSpy2 protocol, packet clock and reading conversion: pure functions, no device."""

from __future__ import annotations

import argparse
import itertools

import pytest

from wattprobe.commands.powerspy2 import reading, unit
from wattprobe.sources.powerspy2 import protocol
from wattprobe.sources.powerspy2.clock import LATE_BOUND_S, PacketClock
from wattprobe.sources.powerspy2.emulator import EXAMPLE_CALIBRATION, EXAMPLE_PACKET

EXAMPLE_EEPROM = bytes([0x6C, 0x02, 0xA7, 0x3D, 0xCE, 0xDC, 0x0E, 0x3A])


def test_calibration_from_the_example_eeprom_bytes():
    calibration = protocol.calibration_from_eeprom(EXAMPLE_EEPROM)
    assert calibration.uscale == pytest.approx(0.0815476, rel=1e-6)
    assert calibration.iscale == pytest.approx(0.000544977, rel=1e-6)
    assert protocol.eeprom_from_calibration(calibration) == EXAMPLE_EEPROM
    assert list(protocol.CALIBRATION_ADDRESSES) == list(range(0x0E, 0x16))


@pytest.mark.parametrize("data", [b"\x00" * 8, b"\xff" * 8, EXAMPLE_EEPROM[:7]])
def test_implausible_calibration_is_refused(data):
    with pytest.raises(protocol.ProtocolError):
        protocol.calibration_from_eeprom(data)


def test_worked_example_packet():
    m = protocol.parse_packet(EXAMPLE_PACKET, EXAMPLE_CALIBRATION)
    assert round(m.watts, 2) == 171.14
    assert round(m.volts, 2) == 230.70
    assert round(m.amps, 4) == 0.7832
    assert round(m.volts_peak, 1) == 326.9
    assert round(m.amps_peak, 3) == 1.494
    assert m.volts * m.amps >= m.watts  # the linear power formula keeps V·I >= P


def test_all_ones_power_is_no_load():
    m = protocol.parse_packet("007A1FCA 00000000 FFFFFFFF 0FA9 0000", EXAMPLE_CALIBRATION)
    assert m.watts == 0.0


@pytest.mark.parametrize(
    "payload",
    ["007A1FCA 001F82FB 003AC29C 0FA9", "007A1FCA 001F82FB 003AC#~C 0FA9 0AB5", "K", "", "007A1FCA001F82FB"],
)
def test_damaged_packets_are_refused(payload):
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_packet(payload, EXAMPLE_CALIBRATION)


def test_packet_encoding_is_the_inverse_of_decoding():
    wanted = protocol.Measurement(volts=229.5, amps=1.62, watts=352.25, volts_peak=324.6, amps_peak=3.1)
    got = protocol.parse_packet(protocol.packet_payload(wanted, EXAMPLE_CALIBRATION), EXAMPLE_CALIBRATION)
    assert got.watts == pytest.approx(wanted.watts, abs=1e-4)
    assert got.volts == pytest.approx(wanted.volts, abs=1e-4)
    assert got.amps == pytest.approx(wanted.amps, abs=1e-5)
    assert got.volts_peak == pytest.approx(wanted.volts_peak, abs=0.05)
    assert got.amps_peak == pytest.approx(wanted.amps_peak, abs=1e-3)
    no_load = protocol.packet_payload(protocol.Measurement(230, 0, 0, 325, 0), EXAMPLE_CALIBRATION)
    assert no_load.split()[2] == "FFFFFFFF"


def test_commands_and_answers():
    assert protocol.read_eeprom(0x0E) == b"<V0E>"
    assert protocol.stream(12) == b"<J000C>"
    assert protocol.stream(100, v1=True) == b"<J64>"
    with pytest.raises(ValueError):
        protocol.stream(101, v1=True)
    identity = protocol.parse_identity("POWERSPYR01000F030123")
    assert (identity.status, identity.sw_version, identity.hw_version, identity.serial) == (
        "R",
        "0F",
        "03",
        "0123",
    )
    assert not identity.v1
    assert protocol.parse_identity("POWERSPYA01000F020042").v1
    assert protocol.identity_answer(identity) == "POWERSPYR01000F030123"
    assert protocol.parse_byte("3D") == 0x3D
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_byte("K")


def test_line_frequency_answers():
    assert protocol.parse_frequency("F6C00") == 50.0
    assert protocol.parse_frequency("F5A00") == 60.0
    assert protocol.parse_frequency("F4E20", v1=True) == 50.0  # 1 000 000 / 20000
    assert protocol.frequency_answer(60.0) == "F5A00"
    assert protocol.frequency_answer(50.0, v1=True) == "F4E20"
    for bad in ("F0000", "K", "F6C0"):
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_frequency(bad)


@pytest.mark.parametrize(
    ("interval_s", "hz", "v1", "periods", "per_reading", "period_s"),
    [
        (0.25, 50, False, 12, 1, 0.24),  # the reference's example: 250 ms asked, 240 ms real
        (0.25, 60, False, 15, 1, 0.25),
        (1.0, 50, False, 50, 1, 1.0),
        (0.001, 50, False, 1, 1, 0.02),  # at least one period
        (2.0, 60, True, 100, 1, 100 / 60),  # v1: at most 100 periods
        (5.0, 50, False, 83, 3, 1.66),  # above 2 s: shorter packets averaged on the host
    ],
)
def test_stream_plan(interval_s, hz, v1, periods, per_reading, period_s):
    plan = protocol.plan_stream(interval_s, hz, v1)
    assert (plan.periods, plan.per_reading) == (periods, per_reading)
    assert plan.period_s == pytest.approx(period_s)


def test_framer_resynchronises_on_garbage():
    framer = protocol.Framer()
    stream = (
        b"\x00\xfejunk><K>\n\r<0FA9\r\n>noise<007A1FCA 001F8<POWERSPYR01000F030123>"
        + b"<"
        + b"9" * 100
        + b"><Z>"
    )
    assert framer.feed(stream[:7]) == []
    assert framer.feed(stream[7:]) == ["K", "0FA9", "POWERSPYR01000F030123", "Z"]
    assert framer.dropped == 1  # the truncated packet; the overlong frame is no packet


def test_clock_stamps_a_burst_on_the_schedule():
    clock = PacketClock(0.25, t0_mono=100.0, wall_offset=1_000_000.0)
    stamps = [clock.unix(clock.stamp(arrival)) for arrival in (100.27, 101.05, 101.05, 101.05, 101.28)]
    assert stamps == pytest.approx([1_000_100.25, 1_000_100.5, 1_000_100.75, 1_000_101.0, 1_000_101.25])
    assert clock.resyncs == 0


def test_clock_tells_a_long_hold_up_from_lost_packets_by_the_burst_that_follows():
    held = PacketClock(0.25, t0_mono=0.0, wall_offset=0.0)
    assert held.stamp(0.26) == pytest.approx(0.25)
    # 1.5 s held back, then released together: the newest one of the burst is on time
    burst = [held.stamp(2.02, queued=5 - i) for i in range(6)]
    assert burst == pytest.approx([0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
    assert held.resyncs == 0
    lost = PacketClock(0.25, t0_mono=0.0, wall_offset=0.0)
    assert lost.stamp(0.26) == pytest.approx(0.25)
    assert lost.lateness(2.02) == pytest.approx(1.52)
    assert lost.stamp(2.02) == pytest.approx(2.02)  # nothing came with it: the packets between were lost
    assert lost.resyncs == 1


def test_clock_counts_lost_packets_and_resynchronises_on_drift():
    clock = PacketClock(0.5, t0_mono=0.0, wall_offset=0.0)
    assert clock.stamp(0.52) == pytest.approx(0.5)
    assert clock.stamp(1.53, skipped=1) == pytest.approx(1.5)  # one damaged packet in between
    late = 2.0 + LATE_BOUND_S + 0.3  # packets lost unseen: arrival now far behind the schedule
    assert clock.stamp(late) == pytest.approx(late)
    assert clock.stamp(late + 0.5) == pytest.approx(late + 0.5)
    early = late + 0.8  # arrival before its slot is impossible: the schedule was late
    assert clock.stamp(early) == pytest.approx(early)
    assert clock.resyncs == 2


def test_clock_is_strictly_increasing():
    clock = PacketClock(0.02, t0_mono=0.0, wall_offset=0.0)
    stamps = [clock.stamp(t) for t in (0.5, 1.6, 1.55, 1.56, 1.7, 1.71)]
    assert all(b > a for a, b in itertools.pairwise(stamps))


def test_units_any_case_and_readings_use_the_real_period():
    assert [unit(u) for u in ("mw", "W", "MJ", "uj", "µJ", "j")] == ["mW", "W", "mJ", "uJ", "uJ", "J"]
    with pytest.raises(argparse.ArgumentTypeError):
        unit("kWh")
    assert reading(171.14, 0.24, "mW") == 171140
    assert reading(171.14, 0.24, "W") == 171
    assert reading(171.14, 0.24, "mJ") == 41074  # × 240 ms, not the asked 250 ms
    assert reading(171.14, 0.24, "uJ") == 41073600
    assert reading(171.14, 0.24, "J") == 41
