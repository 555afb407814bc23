"""Energy per process, container, pod or VM, summed Frame after Frame: the cumulative counters OTLP wants.

A Frame gives each workload's power over its window; its energy is that power times the window, and
the sum of those since the workload was first seen is a counter that never goes down. Every workload
of every Frame is added, listed or not, so a process that leaves the top N and comes back has lost
nothing. A workload unseen for `forget_s` is forgotten (memory stays bounded); if it comes back, its
counter starts again from 0 with a new start time, which OpenTelemetry reads as a reset.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

FORGET_S = 600.0
SWEEP_S = 60.0  # how often forgotten workloads are looked for


@dataclass(slots=True)
class Counter:
    joules: float
    start_ns: int  # the start of the window it was first seen in
    seen: float  # Unix time of the last Frame it was in


class EnergySums:
    def __init__(self, forget_s: float = FORGET_S) -> None:
        self.forget_s = forget_s
        self.counters: dict[Hashable, Counter] = {}
        self._swept = -math.inf

    def add(self, key: Hashable, watts: float, window_s: float, start_ns: int, now: float) -> None:
        """`key` drew `watts` over a window of `window_s` seconds that started at `start_ns` and ended at
        `now`. A figure that is not a finite, non-negative power adds nothing (the sum stays right)."""
        joules = watts * window_s
        counter = self.counters.get(key)
        if counter is None:
            counter = self.counters[key] = Counter(0.0, start_ns, now)
        counter.seen = now
        if math.isfinite(joules) and joules > 0:
            counter.joules += joules

    def get(self, key: Hashable) -> Counter | None:
        return self.counters.get(key)

    def sweep(self, now: float) -> None:
        """Forget what was not seen for `forget_s` seconds (at most once every SWEEP_S)."""
        if now - self._swept < SWEEP_S:
            return
        self._swept = now
        for key in [k for k, c in self.counters.items() if now - c.seen > self.forget_s]:
            del self.counters[key]
