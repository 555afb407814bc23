"""PowerSpy2 as a Sensor: the wall power of the host, integrated into a monotonic µJ counter.

A background thread streams packets and adds P × real period for each; `read()` returns that counter
extrapolated to now at the last packet's power (never backwards), so host power downstream is wall
power.

Gaps. Packets are stamped on the meter's schedule and Bluetooth delivers them late, in bursts: the
last packet is normally up to one period plus the delivery delay old. The packet clock takes a delay
above LATE_BOUND_S (1 s) for lost packets, and so does `read()`: once the last packet is older than one
period plus that bound, extrapolating further would be a guess (the first windows of a silence would
show the old power, or a frozen counter a made-up 0 W), so `read()` raises SensorReadError. The sampler
then skips the step and measures the next window from the last good reading, so the window that spans
the gap averages over it instead of showing 0 W and then a spike. One warning marks the start of a
gap and one line its end. The energy of the lost packets is filled on a straight line between the
power before and after the gap (see gaps.py), so it is conserved; each reading counts the filled
energy it includes (`EnergyReading.estimated_uj`), so a window that spans a gap is marked estimated. A silent meter never shows as a counter that stops advancing: a sampler that
skips such windows would otherwise still let the partial windows at the start of a gap through.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import NoReturn

from wattprobe.core.model import Counter, EnergyReading
from wattprobe.errors import SensorReadError
from wattprobe.sources.powerspy2.clock import LATE_BOUND_S
from wattprobe.sources.powerspy2.device import Packet, PowerSpy2
from wattprobe.sources.powerspy2.gaps import Gap, gap

log = logging.getLogger(__name__)

INTERVAL_S = 0.25  # asked packet spacing (rounded to whole mains periods: 240 ms at 50 Hz)
FIRST_PACKET_S = 2.0  # how long the constructor waits for the first packet
# A bound on what the meter can read: it sits in a 16 A socket (3.7 kW at 230 V, 4 kW at 250 V).
MAX_WATTS = 4000.0


class PowerSpy2Sensor:
    """Wall energy from a PowerSpy2 at `device_path`; opening failures raise WattprobeError."""

    name = "powerspy2"
    estimated = False  # measured; a filled gap is marked per window (EnergyReading.estimated_uj)

    def __init__(self, device_path: str, interval_s: float = INTERVAL_S) -> None:
        self._device = PowerSpy2(device_path)
        self._device.open()
        self._lock = threading.Lock()
        self._first_packet = threading.Event()
        self._uj = 0.0  # energy up to the last packet, filled gaps included
        self._filled_uj = 0.0  # of which filled
        self._last: Packet | None = None
        self._reported = 0  # the highest value read() returned
        self._started = time.monotonic()
        self._silent_since: float | None = None  # monotonic time of the last packet before a refused read
        self._thread = threading.Thread(target=self._run, args=(interval_s,), name="powerspy2", daemon=True)
        self._thread.start()
        self._first_packet.wait(FIRST_PACKET_S + interval_s)

    def read(self) -> EnergyReading:
        t_ns = time.monotonic_ns()
        now = t_ns / 1e9
        with self._lock:
            last = self._last
            age = now - (last.mono if last else self._started)
            if last is None or age > last.period_s + LATE_BOUND_S:
                self._refuse(now - age, age)
            # a negative age (a packet stamped up to the clock's early bound ahead) takes back the
            # part of its period still to come; max() keeps the counter from going backwards
            self._reported = max(self._reported, int(self._uj + last.watts * age * 1e6))
            counter = Counter(socket=None, domain="wall", uj=self._reported, max_uj=0, max_w=MAX_WATTS)
            filled = int(self._filled_uj)
        return EnergyReading(t_ns, (counter,), estimated_uj=filled)

    def close(self) -> None:
        self._device.stop()
        self._thread.join(timeout=3)

    def _refuse(self, since: float, age: float) -> NoReturn:
        """Raise SensorReadError for a stream silent since `since`, warning at the first refusal."""
        if self._silent_since is None:
            self._silent_since = since
            log.warning(
                "no packet from the PowerSpy2 at %s for %d ms: steps are skipped until it answers",
                self._device.path,
                age * 1000,
            )
        raise SensorReadError(f"no packet from the PowerSpy2 for {age:.1f} s", said=True)

    def _run(self, interval_s: float) -> None:
        try:
            for packet in self._device.packets(interval_s):
                self._add(packet)
        except Exception as error:  # a bug, not a fault of the link (those are retried): one line
            log.error(
                "PowerSpy2 at %s: the stream stopped (%r); no figures from now on", self._device.path, error
            )
            log.debug("PowerSpy2 stream failure", exc_info=True)
        finally:
            self._device.close()

    def _add(self, packet: Packet) -> None:
        with self._lock:
            lost = gap(self._last, packet) if self._last is not None else None
            if lost is not None:
                self._uj += lost.joules * 1e6
                self._filled_uj += lost.joules * 1e6
            self._uj += packet.watts * packet.period_s * 1e6
            self._last = packet
            silent_since, self._silent_since = self._silent_since, None
        self._first_packet.set()
        if silent_since is not None:
            self._log_back(time.monotonic() - silent_since, lost)
        elif lost is not None:
            log.info("PowerSpy2 at %s: %s", self._device.path, lost.describe())

    def _log_back(self, silent_s: float, lost: Gap | None) -> None:
        log.warning(
            "the PowerSpy2 at %s answers again after %.1f s without packets: %s",
            self._device.path,
            silent_s,
            lost.describe() if lost else "they were held back, none was lost",
        )
