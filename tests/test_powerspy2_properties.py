"""Property tests of the PowerSpy2 protocol's parsers: random bytes and mutated frames from the serial link.

The framer cuts any byte stream, in any chunks, into payloads the same way; every parser gives a value
(finite, and the one the frame encodes) or one ProtocolError, never another exception; and all of it
is linear in its input.
"""

from __future__ import annotations

import itertools
import math
import struct
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattprobe.sources.powerspy2 import protocol
from wattprobe.sources.powerspy2.emulator import EXAMPLE_CALIBRATION, EXAMPLE_PACKET

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEX = "0123456789ABCDEF"

raw_fields = st.tuples(*[st.integers(0, 16**8 - 1)] * 3, *[st.integers(0, 16**4 - 1)] * 2)
# Bytes that matter to the framer and the parsers, and any others.
link_bytes = st.one_of(
    st.binary(max_size=200),
    st.lists(
        st.sampled_from(
            [b"<", b">", b"\r", b"\n", b" ", b"F", b"0", b"K", b"Z", b"\xff", EXAMPLE_PACKET.encode()]
        )
    ).map(b"".join),
)


def packet(fields: tuple[int, ...]) -> str:
    v, i, p, v_peak, i_peak = fields
    return f"{v:08X} {i:08X} {p:08X} {v_peak:04X} {i_peak:04X}"


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at `cuts` (positions, in any order), as a serial port hands it over."""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@PROPERTY
@given(data=link_bytes, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_the_framer_cuts_any_stream_the_same_way_in_any_chunks(data, cuts):
    whole = protocol.Framer().feed(data)
    framer = protocol.Framer()
    assert [p for chunk in chunks(data, cuts) for p in framer.feed(chunk)] == whole
    for payload in whole:
        assert len(payload) <= protocol.MAX_FRAME and not set(payload) & set("<>\r\n")


@PROPERTY
@given(
    frames=st.lists(raw_fields, min_size=1, max_size=8),
    noise=st.lists(
        st.binary(max_size=30).map(lambda b: b.replace(b"<", b"").replace(b">", b"")), min_size=9, max_size=9
    ),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_packets_between_noise_come_through_whole_and_right(frames, noise, cuts):
    """Valid packets with noise between them (no bracket in it: a bracket starts or ends a frame): each
    packet is parsed to the values its fields encode, in order, and nothing else is."""
    stream = noise[0] + b"".join(f"<{packet(f)}>".encode() + noise[k + 1] for k, f in enumerate(frames))
    framer = protocol.Framer()
    payloads = [p for chunk in chunks(stream, cuts) for p in framer.feed(chunk)]
    assert payloads == [packet(f) for f in frames]
    u, s = EXAMPLE_CALIBRATION.uscale, EXAMPLE_CALIBRATION.iscale
    for payload, (v, i, p, v_peak, i_peak) in zip(payloads, frames, strict=True):
        m = protocol.parse_packet(payload, EXAMPLE_CALIBRATION)
        assert m.volts == math.sqrt(v) * u and m.amps == math.sqrt(i) * s
        assert m.watts == (0.0 if p == 0xFFFFFFFF else p * u * s)
        assert (m.volts_peak, m.amps_peak) == (v_peak * u, i_peak * s)


def mutated(payload: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(st.integers(0, len(payload) - 1), st.characters()).map(
            lambda t: payload[: t[0]] + t[1] + payload[t[0] + 1 :]
        ),
        st.integers(0, len(payload) - 1).map(lambda k: payload[:k] + payload[k + 1 :]),
        st.tuples(st.integers(0, len(payload)), st.text(max_size=4)).map(
            lambda t: payload[: t[0]] + t[1] + payload[t[0] :]
        ),
        st.text(max_size=80),
    )


@PROPERTY
@given(payload=mutated(EXAMPLE_PACKET), calibration=st.binary(min_size=8, max_size=8))
def test_a_damaged_packet_is_its_values_or_one_protocol_error(payload, calibration):
    """Any payload, with any calibration the meter's EEPROM may hold: a ProtocolError, or figures that are
    finite, not negative and those of the hex fields the payload holds."""
    try:
        scales = protocol.calibration_from_eeprom(calibration)
    except protocol.ProtocolError:
        scales = EXAMPLE_CALIBRATION
    else:
        uscale, iscale = struct.unpack("<ff", calibration)
        assert (scales.uscale, scales.iscale) == (uscale, iscale) and uscale > 0 and iscale > 0
    try:
        m = protocol.parse_packet(payload, scales)
    except protocol.ProtocolError:
        fields = payload.split(" ")
        assert not ([len(f) for f in fields] == [8, 8, 8, 4, 4] and all(c in HEX for f in fields for c in f))
        return
    values = [int(f, 16) for f in payload.split(" ")]
    assert m.volts == math.sqrt(values[0]) * scales.uscale
    assert all(math.isfinite(x) and x >= 0 for x in (m.volts, m.amps, m.watts, m.volts_peak, m.amps_peak))


@PROPERTY
@given(
    payload=st.one_of(st.text(max_size=40), mutated("POWERSPYR01000F030123"), mutated("F6C00"), mutated("3A"))
)
def test_answers_parse_to_their_value_or_one_protocol_error(payload):
    for parse in (
        protocol.parse_identity,
        protocol.parse_byte,
        protocol.parse_frequency,
        lambda p: protocol.parse_frequency(p, v1=True),
    ):
        try:
            value = parse(payload)
        except protocol.ProtocolError:
            continue
        if isinstance(value, float):
            assert math.isfinite(value) and value > 0
            assert protocol.frequency_answer(value, v1=parse is not protocol.parse_frequency) == payload
        elif isinstance(value, int):
            assert f"{value:02X}" == payload
        else:
            assert protocol.identity_answer(value) == payload


@PROPERTY
@given(data=st.binary(max_size=16))
def test_calibration_bytes_are_two_positive_scales_or_one_protocol_error(data):
    try:
        calibration = protocol.calibration_from_eeprom(data)
    except protocol.ProtocolError:
        assert len(data) != 8 or not all(math.isfinite(x) and x > 0 for x in struct.unpack("<ff", data))
    else:
        assert len(data) == 8 and protocol.eeprom_from_calibration(calibration) == data


def test_the_framer_is_linear_in_its_input():
    """128 kB of garbage (long frames, lone brackets) in a few ms per kB: a noisy link cannot stall the reader."""
    for garbage in (b"<" + b"A" * 131_072, b"<" * 131_072, b"< " * 65_536, bytes(range(256)) * 512):
        framer = protocol.Framer()
        started = time.perf_counter()
        framer.feed(garbage)
        elapsed = time.perf_counter() - started
        small = protocol.Framer()
        started = time.perf_counter()
        small.feed(garbage[:8192])
        per_8k = time.perf_counter() - started
        assert elapsed < max(0.5, 40 * per_8k), (len(garbage), elapsed, per_8k)  # 16 times the size
