"""A PowerSpy2 on a pseudo-terminal, for tests and for trying the driver without a meter.

The emulator keeps the pty's master side, sets the slave side raw at once (so nothing is echoed back)
and exposes it through a symlink. It answers the command table of the protocol, streams packets on the
N / f_line schedule, encodes them with the inverse of its calibration (so a driver decodes the asked
watts) and can inject faults while running (see FAULTS).
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import threading
import time
import tty
from dataclasses import dataclass
from typing import Any

from wattprobe.sources.powerspy2 import protocol

# The calibration of the protocol's worked example; the factory one differs, so that reading the
# wrong EEPROM addresses shows.
EXAMPLE_CALIBRATION = protocol.Calibration(0.08154758810997009, 0.0005449772579595447)
FACTORY_SKEW = 1.02
EXAMPLE_PACKET = "007A1FCA 001F82FB 003AC29C 0FA9 0AB5"

FAULTS = {
    "silent": "neither answer nor stream (commands are still recorded)",
    "burst": "hold packets back and release them together (every 0.5 s by default)",
    "truncate": "cut packets short (every third by default)",
    "garble": "damage packets (every third by default) and put noise between them",
    "nak": "answer <Z> to commands (the next three by default)",
    "ignore-stop": "acknowledge <Q> but keep streaming",
    "drop": "close the link and remove its path, then bring it back (after 1 s by default)",
}
NOISE = b"\x00\xfe#~ \r\n"
_TICK_S = 0.05  # longest wait of the serving loop


@dataclass(frozen=True, slots=True)
class Fault:
    mode: str
    every: int = 3
    count: int = 3
    burst_s: float = 0.5
    down_s: float = 1.0


class PowerSpy2Emulator:
    """Serve a PowerSpy2 at `link` until `stop()`; usable as a context manager."""

    def __init__(
        self,
        link: str,
        *,
        watts: float = 171.14,
        volts: float = 230.7,
        line_hz: float = 50.0,
        v1: bool = False,
        streaming: bool = False,
        periods: int = 50,
        power_factor: float = 0.947,
        calibration: protocol.Calibration = EXAMPLE_CALIBRATION,
    ) -> None:
        self.link = link
        self.calibration = calibration
        self.v1 = v1
        self.power_factor = power_factor
        self.identity = protocol.Identity("R", 1, 0, "0F", protocol.V1_HW_VERSION if v1 else "03", "0123")
        self.received: list[str] = []  # command payloads, in order (also while silent)
        self.raw_packet: str | None = None  # when set, streamed verbatim instead of the set power
        self._watts, self._volts, self._line_hz = watts, volts, line_hz
        self._fault: Fault | None = None
        self._naks_left = 0
        self._lock = threading.Lock()
        self._running = False
        self._thread: threading.Thread | None = None
        self._master = self._slave = -1
        self._framer = protocol.Framer()
        self._streaming = streaming
        self._periods = periods
        self._t0 = time.monotonic()
        self._sent_k = 0
        self._held: list[bytes] = []
        self._hold_since = 0.0
        self._up_at = 0.0  # when a dropped link comes back

    # -- control -------------------------------------------------------------------------------------

    def start(self) -> PowerSpy2Emulator:
        self._open_link()
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="powerspy2-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._close_link()

    def __enter__(self) -> PowerSpy2Emulator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def set_power(self, watts: float, volts: float | None = None) -> None:
        """Power (0: nothing plugged in) and optionally voltage of the packets to come."""
        with self._lock:
            self._watts = watts
            if volts is not None:
                self._volts = volts

    def set_line_frequency(self, hz: float) -> None:
        with self._lock:
            self._line_hz = hz
            self._restart_schedule()

    def set_fault(self, mode: str | None, **options: Any) -> None:
        """Inject a fault from FAULTS (None: behave); options: every, count, burst_s, down_s."""
        if mode is not None and mode not in FAULTS:
            raise ValueError(f"unknown fault {mode!r}: one of {', '.join(FAULTS)}")
        with self._lock:
            self._release_held()
            self._fault = Fault(mode, **options) if mode else None
            self._naks_left = self._fault.count if self._fault else 0
            self._up_at = time.monotonic() + (self._fault.down_s if self._fault else 0.0)

    @property
    def fault(self) -> str | None:
        return self._fault.mode if self._fault else None

    @property
    def period_s(self) -> float:
        return self._periods / self._line_hz

    # -- the link ------------------------------------------------------------------------------------

    def _open_link(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        tmp = f"{self.link}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(self._slave), tmp)
        os.replace(tmp, self.link)
        self._framer = protocol.Framer()

    def _close_link(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.link)
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    def _write(self, data: bytes) -> None:
        """Write to the link; data the reader has no room for is lost, as over the air."""
        if self._master < 0:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._master, data)

    # -- serving -------------------------------------------------------------------------------------

    def _serve(self) -> None:
        while self._running:
            with self._lock:
                self._drop_or_restore_link()
            if self._master < 0:
                time.sleep(_TICK_S)
                continue
            wait = min(_TICK_S, max(0.0, self._next_event_at() - time.monotonic()))
            try:
                readable, _, _ = select.select([self._master], [], [], wait)
                data = os.read(self._master, 4096) if readable else b""
            except OSError:
                data = b""
            with self._lock:
                for payload in self._framer.feed(data):
                    self._answer(payload)
                self._send_due_packets()

    def _drop_or_restore_link(self) -> None:
        """The `drop` fault: the link is down until `_up_at`, then a new pty appears at the same path."""
        if self.fault == "drop" and time.monotonic() < self._up_at:
            self._close_link()
        elif self._master < 0:
            self._open_link()
            lost = int((time.monotonic() - self._t0) / self.period_s)
            self._sent_k = max(self._sent_k, lost)  # what fell due while the link was down is lost
            if self.fault == "drop":
                self._fault = None

    def _answer(self, payload: str) -> None:
        self.received.append(payload)
        mode = self.fault
        if mode == "silent":
            return
        if mode == "nak" and self._naks_left > 0:
            self._naks_left -= 1
            self._write(b"<Z>")
            return
        self._write(f"<{self._reply(payload)}>".encode("ascii"))

    def _reply(self, payload: str) -> str:
        letter, param = payload[:1], payload[1:]
        if payload == "?":
            return protocol.identity_answer(self.identity)
        if letter == "V" and len(param) == 2:
            return f"{self._eeprom(int(param, 16)):02X}"
        if payload == "F":
            return protocol.frequency_answer(self._line_hz, self.v1)
        if payload == "S":
            return protocol.ACK
        if letter == "J":
            periods = int(param, 16) if param else 0
            if len(param) != (2 if self.v1 else 4) or not 1 <= periods <= protocol.MAX_PERIODS[self.v1]:
                return protocol.NAK
            self._periods, self._streaming = periods, True
            self._restart_schedule()
            return protocol.ACK
        if payload == "Q":
            if self.fault != "ignore-stop":
                self._streaming = False
                self._held.clear()
            return protocol.ACK
        if payload == "R" and self.v1:
            return protocol.ACK
        return protocol.NAK  # <C> included: devices seen answer Z

    def _eeprom(self, address: int) -> int:
        factory = protocol.Calibration(
            self.calibration.uscale * FACTORY_SKEW, self.calibration.iscale * FACTORY_SKEW
        )
        image = bytearray(0x20)
        for addresses, calibration in (
            (protocol.FACTORY_CALIBRATION_ADDRESSES, factory),
            (protocol.CALIBRATION_ADDRESSES, self.calibration),
        ):
            image[addresses.start : addresses.stop] = protocol.eeprom_from_calibration(calibration)
        return image[address] if address < len(image) else 0xFF

    # -- streaming -----------------------------------------------------------------------------------

    def _restart_schedule(self) -> None:
        self._t0, self._sent_k = time.monotonic(), 0

    def _due_at(self) -> float:
        """When the next packet of the stream is due."""
        return self._t0 + (self._sent_k + 1) * self.period_s

    def _next_event_at(self) -> float:
        """When the serving loop has something to send: the next packet, or the release of held ones."""
        due = self._due_at() if self._streaming else math.inf
        return min(due, self._hold_since + self._burst_s()) if self._held else due

    def _burst_s(self) -> float:
        return self._fault.burst_s if self._fault else 0.0

    def _send_due_packets(self) -> None:
        now = time.monotonic()
        while self._streaming and self._due_at() <= now:
            self._sent_k += 1
            self._emit(self._packet_bytes(self._sent_k))
        if self._held and now - self._hold_since >= self._burst_s():
            self._release_held()

    def _emit(self, packet: bytes) -> None:
        mode = self.fault
        if mode == "silent":
            return
        if mode == "burst":
            if not self._held:
                self._hold_since = time.monotonic()
            self._held.append(packet)
            return
        self._write(packet)

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for packet in held:
            self._write(packet)

    def _packet_bytes(self, k: int) -> bytes:
        payload = self.raw_packet or protocol.packet_payload(self._measurement(), self.calibration)
        fault = self._fault
        if fault and fault.mode in ("truncate", "garble") and k % fault.every == 0:
            if fault.mode == "truncate":
                return f"<{payload[: len(payload) // 2]}\n\r".encode("ascii")
            damaged = f"{payload[:5]}#~{payload[7:20]}\x7f{payload[21:]}"
            return NOISE + f"<{damaged}>\n\r".encode("latin-1") + NOISE
        return f"<{payload}>\n\r".encode("ascii")

    def _measurement(self) -> protocol.Measurement:
        watts, volts = self._watts, self._volts
        amps = watts / (volts * self.power_factor) if volts > 0 else 0.0
        return protocol.Measurement(volts, amps, watts, volts * math.sqrt(2), amps * 1.9)
