"""A PowerSpy2 on a serial port (Bluetooth RFCOMM tty): handshake, streaming, reconnection.

Every read has a short timeout, so nothing blocks on a silent meter and a stop request (`stop()`, safe
from another thread or a signal handler) is honoured within READ_TIMEOUT_S. A link that goes silent
or fails mid-run is reopened with exponential backoff (BACKOFF_S, capped) until it comes back or the
stream is stopped; only the first connection reports failure, as a DeviceError that says how to fix it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import serial

from wattprobe.errors import WattprobeError
from wattprobe.retry import Backoff
from wattprobe.sources.powerspy2 import protocol
from wattprobe.sources.powerspy2.clock import LATE_BOUND_S, PacketClock

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.1  # every blocking read: bounds how late a stop request is seen
WRITE_TIMEOUT_S = 0.5
ANSWER_TIMEOUT_S = 1.0  # the spec: wait for an answer or 1 s
DRAIN_QUIET_S = 0.2  # an earlier run's stream is drained when the line is this quiet...
DRAIN_MAX_S = 1.5  # ...or after this long, for a meter that keeps streaming after <Q>
CLOSE_WAIT_S = 0.5  # how long close() waits for <Q> to be acknowledged
SILENCE_S = 2.0  # no packet for this long plus two periods: the link is lost
BURST_QUIET_S = 0.05  # a packet later than the clock's bound: the rest of its burst is read until
BURST_MAX_S = 0.5  # the line is this quiet, or for this long at most
OPEN_ATTEMPTS = 3
BACKOFF_S = (0.5, 8.0)  # first and longest wait before reopening a lost link

Trace = Callable[[str, str], None]  # (">" sent or "<" received, frame as on the wire)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Packet:
    """One reading: averages over `period_s` ending at `time` (Unix s, from the device schedule)."""

    time: float
    watts: float
    volts: float
    amps: float
    period_s: float  # real averaging time, N / f_line (not the asked interval)
    mono: float  # `time` on the monotonic clock, to compare with time.monotonic()
    volts_peak: float = 0.0
    amps_peak: float = 0.0


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    identity: protocol.Identity
    calibration: protocol.Calibration
    line_hz: float


class DeviceError(WattprobeError):
    """The meter cannot be used; the message says what to check."""


class LinkLost(Exception):
    """A transient failure of an open link: no answer, a `<Z>`, an I/O error. The link is reopened."""


class Stopped(Exception):
    """A stop was requested while connecting."""


def average(packets: list[Packet]) -> Packet:
    """One packet for several consecutive ones (host-side averaging of long intervals)."""
    total = sum(p.period_s for p in packets)

    def mean(field: str) -> float:
        return sum(getattr(p, field) * p.period_s for p in packets) / total

    return Packet(
        time=packets[-1].time,
        watts=mean("watts"),
        volts=mean("volts"),
        amps=mean("amps"),
        period_s=total,
        mono=packets[-1].mono,
        volts_peak=max(p.volts_peak for p in packets),
        amps_peak=max(p.amps_peak for p in packets),
    )


def _fix_hint(path: str) -> str:
    return (
        f"check the meter is switched on, paired and in range, and bound with "
        f"`sudo rfcomm connect {path} <MAC> 1` (MAC from `bluetoothctl devices`)"
    )


class PowerSpy2:
    """One meter at `path`. Use `open()` then iterate `packets()`; `close()` stops the stream."""

    def __init__(self, path: str, trace: Trace | None = None) -> None:
        self.path = path
        self.info: DeviceInfo | None = None
        self._trace = trace
        self._port: serial.Serial | None = None
        self._framer = protocol.Framer()
        self._pending: deque[tuple[str, float]] = deque()  # payload, monotonic arrival time
        self._last_arrival = 0.0  # of the frame last taken from the queue
        self._stop_requested = False
        self._backoff = Backoff(*BACKOFF_S)

    # -- control -------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `open()` and `packets()` to return soon; a plain flag, so safe in a signal handler."""
        self._stop_requested = True

    def open(self) -> DeviceInfo:
        """Connect and read identity, calibration and line frequency, retrying a few times.

        Raises DeviceError when the meter is missing or never answers, Stopped on a stop request.
        """
        if not os.path.exists(self.path):
            raise DeviceError(f"PowerSpy2 device {self.path} does not exist: {_fix_hint(self.path)}")
        if not os.access(self.path, os.R_OK | os.W_OK):
            raise DeviceError(
                f"no permission to open {self.path}: run as root or join the group that owns it (dialout)"
            )
        why: LinkLost | None = None
        for attempt in range(OPEN_ATTEMPTS):
            if attempt:
                self._sleep(BACKOFF_S[0])
            try:
                return self._connect()
            except LinkLost as error:
                self._drop()
                why = error
                log.info(
                    "PowerSpy2 at %s: %s (attempt %d of %d)", self.path, error, attempt + 1, OPEN_ATTEMPTS
                )
        raise DeviceError(f"PowerSpy2 at {self.path} does not work ({why}): {_fix_hint(self.path)}")

    def packets(self, interval_s: float) -> Iterator[Packet]:
        """Stream one packet per `interval_s` (rounded to whole mains periods) until `stop()`.

        Connects first if `open()` was not called (raising DeviceError as it does). A lost link is
        reopened with backoff and the stream carries on.
        """
        try:
            if self._port is None:
                self.open()
            while not self._stop_requested:
                try:
                    if self._port is None:
                        self._connect()
                    yield from self._stream(interval_s)
                except LinkLost as why:
                    self._drop()
                    if self._stop_requested:
                        break
                    delay = self._backoff.failed()
                    log.warning("PowerSpy2 at %s: %s; reconnecting in %.1f s", self.path, why, delay)
                    self._sleep(delay)
        except Stopped:
            return

    def close(self) -> None:
        """Stop the stream (`<Q>`, acknowledgement awaited briefly) and close the port."""
        if self._port is None:
            return
        try:
            self._send(protocol.STOP)
            deadline = time.monotonic() + CLOSE_WAIT_S
            while time.monotonic() < deadline:
                frame = self._next_frame()
                if frame in (protocol.ACK, protocol.NAK):
                    break
        except LinkLost:
            pass
        finally:
            self._drop()

    # -- connection ----------------------------------------------------------------------------------

    def _connect(self) -> DeviceInfo:
        """One attempt: open, drain a stream left running, identify, read calibration and frequency."""
        try:
            self._port = serial.Serial(self.path, timeout=READ_TIMEOUT_S, write_timeout=WRITE_TIMEOUT_S)
        except (serial.SerialException, OSError) as error:
            raise LinkLost(
                "device gone" if not os.path.exists(self.path) else f"cannot open: {error}"
            ) from None
        self._framer = protocol.Framer()
        self._pending.clear()
        self._drain()
        identity = self._ask(protocol.IDENTIFY, protocol.parse_identity)
        eeprom = bytes(
            self._ask(protocol.read_eeprom(address), protocol.parse_byte)
            for address in protocol.CALIBRATION_ADDRESSES
        )
        try:
            calibration = protocol.calibration_from_eeprom(eeprom)
        except protocol.ProtocolError as error:
            raise LinkLost(str(error)) from None
        line_hz = self._ask(protocol.FREQUENCY, lambda payload: _line_frequency(payload, identity.v1))
        self.info = DeviceInfo(identity, calibration, line_hz)
        log.info(
            "PowerSpy2 at %s: serial %s, hardware %s, software %s, %.2f Hz, Uscale %.7g, Iscale %.7g",
            self.path,
            identity.serial,
            identity.hw_version,
            identity.sw_version,
            line_hz,
            calibration.uscale,
            calibration.iscale,
        )
        return self.info

    def _drain(self) -> None:
        """Stop a stream an earlier run left running and discard what is in flight."""
        self._send(protocol.STOP)
        start = quiet_since = time.monotonic()
        while (now := time.monotonic()) - quiet_since < DRAIN_QUIET_S and now - start < DRAIN_MAX_S:
            self._check_stop()
            if self._read():
                quiet_since = time.monotonic()
        self._pending.clear()

    def _drop(self) -> None:
        """Close the port without a word to the meter (the link is gone or being reset)."""
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    # -- streaming -----------------------------------------------------------------------------------

    def _stream(self, interval_s: float) -> Iterator[Packet]:
        assert self.info is not None
        info = self.info
        plan = protocol.plan_stream(interval_s, info.line_hz, info.identity.v1)
        self._ask(protocol.stream(plan.periods, info.identity.v1), _acknowledged)
        clock = PacketClock(plan.period_s, self._last_arrival)
        silence_s = SILENCE_S + 2 * plan.period_s
        last_seen = time.monotonic()
        skipped, dropped_seen = 0, self._framer.dropped
        group: list[Packet] = []
        while not self._stop_requested:
            item = self._next_arrival()
            if item is None:
                if time.monotonic() - last_seen > silence_s:
                    raise LinkLost(f"no packet for {silence_s:.1f} s")
                continue
            payload, arrival = item
            if not protocol.looks_like_packet(payload):
                continue  # a stray answer
            try:
                measurement = protocol.parse_packet(payload, info.calibration)
            except protocol.ProtocolError:
                log.info("PowerSpy2 at %s: skipping a damaged packet %r", self.path, payload)
                skipped += 1
                continue
            skipped += self._framer.dropped - dropped_seen
            dropped_seen = self._framer.dropped
            if clock.lateness(arrival, skipped) > LATE_BOUND_S:
                self._read_burst()  # held back, or lost? The packets that come with it tell
            queued = sum(protocol.looks_like_packet(frame) for frame, _ in self._pending)
            when = clock.stamp(arrival, skipped, queued)
            skipped, last_seen = 0, arrival
            self._backoff.succeeded()
            group.append(_packet(clock.unix(when), when, measurement, plan.period_s))
            if len(group) == plan.per_reading:
                yield group[0] if len(group) == 1 else average(group)
                group = []

    def _read_burst(self) -> None:
        """Read the rest of a burst under way into the frame queue."""
        start = quiet_since = time.monotonic()
        while (now := time.monotonic()) - quiet_since < BURST_QUIET_S and now - start < BURST_MAX_S:
            if self._read():
                quiet_since = time.monotonic()

    # -- framing and I/O -----------------------------------------------------------------------------

    def _ask(self, command: bytes, parse: Callable[[str], T]) -> T:
        """Send `command` and return the first answer `parse` accepts, skipping packets in flight."""
        self._send(command)
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_stop()
            frame = self._next_frame()
            if frame is None or protocol.looks_like_packet(frame):
                continue
            if frame == protocol.NAK:
                raise LinkLost(f"{command.decode()} answered <Z>")
            try:
                return parse(frame)
            except protocol.ProtocolError:
                continue
        raise LinkLost(f"no answer to {command.decode()} within {ANSWER_TIMEOUT_S:g} s")

    def _send(self, data: bytes) -> None:
        if self._port is None:
            raise LinkLost("not connected")
        if self._trace:
            self._trace(">", data.decode("ascii"))
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as error:
            raise LinkLost(f"write failed: {error}") from None

    def _read(self) -> bool:
        """Read what arrived (waiting at most READ_TIMEOUT_S) into the frame queue; False on nothing."""
        if self._port is None:
            raise LinkLost("not connected")
        try:
            data = self._port.read(self._port.in_waiting or 1)
        except (serial.SerialException, OSError) as error:
            raise LinkLost(f"read failed: {error}") from None
        if data:
            now = time.monotonic()
            for payload in self._framer.feed(data):
                if self._trace:
                    self._trace("<", f"<{payload}>")
                self._pending.append((payload, now))
        return bool(data)

    def _next_arrival(self) -> tuple[str, float] | None:
        if not self._pending:
            self._read()
        if not self._pending:
            return None
        item = self._pending.popleft()
        self._last_arrival = item[1]
        return item

    def _next_frame(self) -> str | None:
        item = self._next_arrival()
        return item[0] if item else None

    def _check_stop(self) -> None:
        if self._stop_requested:
            raise Stopped

    def _sleep(self, seconds: float) -> None:
        """Sleep in short steps, returning early on a stop request."""
        end = time.monotonic() + seconds
        while not self._stop_requested and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, READ_TIMEOUT_S))


def _acknowledged(payload: str) -> bool:
    if payload != protocol.ACK:
        raise protocol.ProtocolError(f"not an acknowledgement: {payload!r}")
    return True


def _line_frequency(payload: str, v1: bool) -> float:
    hz = protocol.parse_frequency(payload, v1)
    if not 40 <= hz <= 70:
        raise protocol.ProtocolError(f"implausible line frequency {hz:.2f} Hz")
    return hz


def _packet(when: float, mono: float, m: protocol.Measurement, period_s: float) -> Packet:
    return Packet(when, m.watts, m.volts, m.amps, period_s, mono, m.volts_peak, m.amps_peak)
