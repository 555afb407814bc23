"""The PowerSpy2 serial protocol as pure functions: commands, answers, calibration, packets, timing.

Frames are ASCII: `<` + payload + `>`. Functions here take and return payloads (the text between the
brackets); `Framer` cuts a byte stream into payloads. Nothing here does I/O.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

# EEPROM addresses of the calibration in use (Uscale then Iscale, little-endian float32), and of the
# factory one, which the current one supersedes.
CALIBRATION_ADDRESSES = range(0x0E, 0x16)
FACTORY_CALIBRATION_ADDRESSES = range(0x02, 0x0A)

V2_CLOCK_HZ = 1_382_400  # line frequency = clock / <F> value
V1_CLOCK_HZ = 1_000_000
V1_HW_VERSION = "02"  # identify answer's hardware version of the first PowerSpy
MAX_PERIODS = {False: 0xFFFF, True: 100}  # <J> parameter limit, by `v1`
MAX_DEVICE_INTERVAL_S = 2.0  # longer device averages are reported to give no packets: average on the host
NO_LOAD_RAW = 0xFFFFFFFF  # a power field of all ones: nothing plugged in, reported as 0 W

IDENTIFY = b"<?>"
FREQUENCY = b"<F>"
STOP = b"<Q>"
ACK = "K"
NAK = "Z"

_PACKET = re.compile(r"([0-9A-F]{8}) ([0-9A-F]{8}) ([0-9A-F]{8}) ([0-9A-F]{4}) ([0-9A-F]{4})")
_IDENTITY = re.compile(r"POWERSPY([A-Z])([0-9A-F]{2})([0-9A-F]{2})([0-9A-F]{2})([0-9A-F]{2})([0-9A-F]{4})")
_FREQUENCY = re.compile(r"F([0-9A-F]{4})")
_BYTE = re.compile(r"[0-9A-F]{2}")
MAX_FRAME = 64  # longer than any answer or packet: the rest is garbage


class ProtocolError(ValueError):
    """A payload that is not the expected answer."""


def command(letter: str, param: str = "") -> bytes:
    """Encode a command: `<` + letter + uppercase hex parameter + `>`."""
    return f"<{letter}{param.upper()}>".encode("ascii")


def read_eeprom(address: int) -> bytes:
    """`<Vaa>`: read one EEPROM byte."""
    return command("V", f"{address:02X}")


def stream(periods: int, v1: bool = False) -> bytes:
    """`<Jnnnn>` (v1: `<Jnn>`): one packet every `periods` mains periods."""
    if not 1 <= periods <= MAX_PERIODS[v1]:
        raise ValueError(f"periods out of range: {periods}")
    return command("J", f"{periods:02X}" if v1 else f"{periods:04X}")


@dataclass(frozen=True, slots=True)
class Identity:
    """The answer to `<?>`."""

    status: str  # R ready, W waiting trigger, A acquiring, C complete
    pll: int
    trigger: int
    sw_version: str
    hw_version: str
    serial: str

    @property
    def v1(self) -> bool:
        """True for the first PowerSpy, whose frequency and stream commands differ."""
        return self.hw_version == V1_HW_VERSION


def parse_identity(payload: str) -> Identity:
    match = _IDENTITY.fullmatch(payload)
    if not match:
        raise ProtocolError(f"not an identify answer: {payload!r}")
    status, pll, trigger, sw, hw, serial = match.groups()
    return Identity(status, int(pll, 16), int(trigger, 16), sw, hw, serial)


def identity_answer(identity: Identity) -> str:
    return (
        f"POWERSPY{identity.status}{identity.pll:02X}{identity.trigger:02X}"
        f"{identity.sw_version}{identity.hw_version}{identity.serial}"
    )


def parse_byte(payload: str) -> int:
    """The answer to `<Vaa>`: two hex digits."""
    if not _BYTE.fullmatch(payload):
        raise ProtocolError(f"not an EEPROM byte: {payload!r}")
    return int(payload, 16)


def parse_frequency(payload: str, v1: bool = False) -> float:
    """The answer to `<F>` in Hz: clock / value (the spec's '0.01 Hz units' is not what devices do)."""
    match = _FREQUENCY.fullmatch(payload)
    value = int(match.group(1), 16) if match else 0
    if not value:
        raise ProtocolError(f"not a line frequency answer: {payload!r}")
    return (V1_CLOCK_HZ if v1 else V2_CLOCK_HZ) / value


def frequency_answer(hz: float, v1: bool = False) -> str:
    return f"F{round((V1_CLOCK_HZ if v1 else V2_CLOCK_HZ) / hz):04X}"


@dataclass(frozen=True, slots=True)
class Calibration:
    """Scales from raw packet fields to volts and amps."""

    uscale: float
    iscale: float


def calibration_from_eeprom(data: bytes) -> Calibration:
    """The 8 EEPROM bytes at 0x0E-0x15: current Uscale then Iscale, little-endian float32."""
    if len(data) != len(CALIBRATION_ADDRESSES):
        raise ProtocolError(f"calibration needs {len(CALIBRATION_ADDRESSES)} bytes, got {len(data)}")
    uscale, iscale = struct.unpack("<ff", data)
    if not (math.isfinite(uscale) and math.isfinite(iscale) and uscale > 0 and iscale > 0):
        raise ProtocolError(f"implausible calibration: Uscale {uscale}, Iscale {iscale}")
    return Calibration(uscale, iscale)


def eeprom_from_calibration(calibration: Calibration) -> bytes:
    return struct.pack("<ff", calibration.uscale, calibration.iscale)


@dataclass(frozen=True, slots=True)
class Measurement:
    """One stream packet in SI units: the average over its N mains periods."""

    volts: float
    amps: float
    watts: float
    volts_peak: float
    amps_peak: float


def parse_packet(payload: str, calibration: Calibration) -> Measurement:
    """`VVVVVVVV IIIIIIII PPPPPPPP vvvv iiii` -> volts, amps, watts (linear in P_raw), peaks."""
    match = _PACKET.fullmatch(payload)
    if not match:
        raise ProtocolError(f"not a stream packet: {payload!r}")
    v, i, p, v_peak, i_peak = (int(field, 16) for field in match.groups())
    u, s = calibration.uscale, calibration.iscale
    watts = 0.0 if p == NO_LOAD_RAW else p * u * s
    return Measurement(math.sqrt(v) * u, math.sqrt(i) * s, watts, v_peak * u, i_peak * s)


def packet_payload(measurement: Measurement, calibration: Calibration) -> str:
    """The inverse of `parse_packet` (to the nearest raw unit); 0 W is sent as no load."""
    u, s = calibration.uscale, calibration.iscale

    def field(value: float, digits: int) -> str:
        return f"{min(max(round(value), 0), 16**digits - 2):0{digits}X}"

    power = f"{NO_LOAD_RAW:08X}" if measurement.watts <= 0 else field(measurement.watts / (u * s), 8)
    return " ".join(
        (
            field((measurement.volts / u) ** 2, 8),
            field((measurement.amps / s) ** 2, 8),
            power,
            field(measurement.volts_peak / u, 4),
            field(measurement.amps_peak / s, 4),
        )
    )


def looks_like_packet(payload: str) -> bool:
    """A payload with a blank, which no answer has: a (possibly damaged) stream packet."""
    return " " in payload


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """How to get one reading per `interval`: N periods per packet, `per_reading` packets averaged."""

    periods: int
    per_reading: int
    period_s: float  # real spacing of packets, N / f_line


def plan_stream(interval_s: float, line_hz: float, v1: bool = False) -> StreamPlan:
    """N = round(f_line x interval), clamped to the device's range; above MAX_DEVICE_INTERVAL_S
    the device streams shorter packets and the host averages `per_reading` of them."""
    per_reading = max(1, math.ceil(interval_s / MAX_DEVICE_INTERVAL_S - 1e-9))
    periods = min(max(round(line_hz * interval_s / per_reading), 1), MAX_PERIODS[v1])
    return StreamPlan(periods, per_reading, periods / line_hz)


class Framer:
    """Cuts a byte stream into payloads: skips anything before `<`, ignores CR/LF, reads to `>`.

    A `<` inside a frame restarts it (the frame before was truncated); a frame longer than
    MAX_FRAME is dropped. `dropped` counts abandoned frames that looked like packets.
    """

    def __init__(self) -> None:
        self._frame: list[str] | None = None
        self.dropped = 0

    def feed(self, data: bytes) -> list[str]:
        payloads = []
        for char in data.decode("latin-1"):
            if char == "<":
                self._abandon()
                self._frame = []
            elif self._frame is None or char in "\r\n":
                continue
            elif char == ">":
                payloads.append("".join(self._frame))
                self._frame = None
            elif len(self._frame) < MAX_FRAME:
                self._frame.append(char)
            else:
                self._abandon()
        return payloads

    def _abandon(self) -> None:
        if self._frame is not None and looks_like_packet("".join(self._frame)):
            self.dropped += 1
        self._frame = None
