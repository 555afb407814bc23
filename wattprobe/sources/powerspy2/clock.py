"""Packet timestamps from the device's schedule rather than from Bluetooth arrival.

After `<K>` answers `<J>`, the meter sends packet k at t0 + k·period. Bluetooth delivers late and in
bursts, so arrival time is noisy and one-sided (never early). The clock counts packets and stamps each on
the schedule; it resynchronises the schedule to arrival when the two disagree by more than a bound:

- arrival later than the schedule by more than LATE_BOUND_S (1 s, above usual Bluetooth hold-ups):
  packets were lost, or the meter's clock runs slow. A longer hold-up is told from a loss by the
  packets that come with it: when the burst it releases is already read (`queued`), the newest of them
  is judged instead, and a burst that catches up with the schedule keeps it;
- arrival earlier than the schedule by more than EARLY_BOUND_S (50 ms, above usual jitter): a packet
  cannot arrive before it is sent, so the schedule is late (the `<K>` was held up, or the meter's clock
  runs fast).

Stamps are monotonic seconds (strictly increasing), turned into Unix time by one offset taken at start
(`unix()`), so a step of the wall clock cannot make timestamps go backwards.
"""

from __future__ import annotations

import time

LATE_BOUND_S = 1.0
EARLY_BOUND_S = 0.05
MIN_STEP_S = 1e-6


class PacketClock:
    """Stamps packets of one stream; `t0_mono` is when the `<K>` after `<J>` arrived."""

    def __init__(self, period_s: float, t0_mono: float, wall_offset: float | None = None) -> None:
        self.period_s = period_s
        self.resyncs = 0
        self._base = t0_mono  # schedule origin, monotonic seconds
        self._k = 0
        self._last: float | None = None
        self._offset = time.time() - time.monotonic() if wall_offset is None else wall_offset

    def lateness(self, arrival_mono: float, skipped: int = 0) -> float:
        """How far behind its slot the next packet, arrived at `arrival_mono`, would be."""
        return arrival_mono - (self._base + (self._k + 1 + skipped) * self.period_s)

    def stamp(self, arrival_mono: float, skipped: int = 0, queued: int = 0) -> float:
        """Monotonic time of the next packet, arrived at `arrival_mono`, after `skipped` lost packets.

        `queued`: packets already read that arrived after this one (the rest of a burst).
        """
        self._k += 1 + skipped
        scheduled = self._base + self._k * self.period_s
        drift = arrival_mono - scheduled
        if drift - queued * self.period_s > LATE_BOUND_S or drift < -EARLY_BOUND_S:
            self._base += drift
            scheduled = arrival_mono
            self.resyncs += 1
        if self._last is not None and scheduled <= self._last:
            scheduled = self._last + MIN_STEP_S
        self._last = scheduled
        return scheduled

    def unix(self, mono: float) -> float:
        """Unix time of a monotonic stamp."""
        return mono + self._offset
