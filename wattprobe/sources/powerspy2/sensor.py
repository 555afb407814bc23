"""PowerSpy2 as a Sensor: the wall power of the host, integrated into a monotonic µJ counter.

A background thread streams packets and adds P × real period for each; `read()` returns that counter
extrapolated to now at the last packet's power (for at most one period, and never backwards), so host
power downstream is wall power. A gap in the stream (lost packets, a reconnection) is bridged at the
power of the packet that ends it.
"""

from __future__ import annotations

import logging
import threading
import time

from wattprobe.core.model import Counter, EnergyReading
from wattprobe.errors import SensorReadError
from wattprobe.sources.powerspy2.device import Packet, PowerSpy2

log = logging.getLogger(__name__)

INTERVAL_S = 0.25  # asked packet spacing (rounded to whole mains periods: 240 ms at 50 Hz)
STALE_S = 3.0  # no packet for this long (plus a period): reads fail until the stream is back
FIRST_PACKET_S = 2.0  # how long the constructor waits for the first packet
BRIDGE_AFTER = 1.5  # a gap longer than this many periods is bridged


class PowerSpy2Sensor:
    """Wall energy from a PowerSpy2 at `device_path`; opening failures raise WattprobeError."""

    name = "powerspy2"
    estimated = False

    def __init__(self, device_path: str, interval_s: float = INTERVAL_S) -> None:
        self._device = PowerSpy2(device_path)
        self._device.open()
        self._lock = threading.Lock()
        self._first_packet = threading.Event()
        self._uj = 0.0  # energy up to the last packet
        self._last: Packet | None = None
        self._reported = 0
        self._thread = threading.Thread(target=self._run, args=(interval_s,), name="powerspy2", daemon=True)
        self._thread.start()
        self._first_packet.wait(FIRST_PACKET_S + interval_s)

    def read(self) -> EnergyReading:
        now = time.time()
        with self._lock:
            last = self._last
            if last is None or now - last.time > STALE_S + last.period_s:
                raise SensorReadError(f"no packet from the PowerSpy2 at {self._device.path} for a while")
            since = min(max(now - last.time, 0.0), last.period_s)
            self._reported = max(self._reported, int(self._uj + last.watts * since * 1e6))
            uj = self._reported
        return EnergyReading(time.monotonic_ns(), (Counter(socket=None, domain="wall", uj=uj, max_uj=0),))

    def close(self) -> None:
        self._device.stop()
        self._thread.join(timeout=3)

    def _run(self, interval_s: float) -> None:
        try:
            for packet in self._device.packets(interval_s):
                self._add(packet)
        except Exception:
            log.exception("PowerSpy2 at %s: stream failed", self._device.path)
        finally:
            self._device.close()

    def _add(self, packet: Packet) -> None:
        with self._lock:
            span = packet.period_s
            if self._last is not None and packet.time - self._last.time > BRIDGE_AFTER * packet.period_s:
                span = packet.time - self._last.time
            self._uj += packet.watts * span * 1e6
            self._last = packet
        self._first_packet.set()
