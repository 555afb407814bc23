"""The runner: one sampler, any number of sinks, every Frame to every sink, each sink contained.

With a step, the runner ticks the sampler every step and writes each Frame to every sink. A sink
whose write raises Retry (or anything unforeseen) loses that Frame only: it is said once per outage
and the sink gets the next Frame; a sink that raises Fatal is closed and left out, and the others go
on, at its first write as at any later one. The agent stops at the timeout (after one step at least),
on SIGINT/SIGTERM, or when no sink is left.

Without a step (the wiring gives none when every sink is pulled: `sinks.pulled`), requests measure on
demand (through the sampler's rate-limited `frame()`), and the runner only takes the baseline and a
first Frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from wattprobe.core.model import Frame
from wattprobe.core.sampler import Sampler
from wattprobe.errors import WattprobeError
from wattprobe.retry import Outage
from wattprobe.sinks import Fatal, Sink

log = logging.getLogger(__name__)

WARMUP_S = 0.5  # the first window of an on-demand agent: RAPL moves every ~1 ms, a few ms would be noise


class Runner:
    def __init__(
        self,
        sampler: Sampler,
        sinks: Sequence[Sink],
        *,
        step_s: float | None,
        timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sampler = sampler
        self.live = list(sinks)
        self.step_s = step_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._sleep = sleep
        self._outages = {id(sink): Outage(log, f"output {sink.name}") for sink in sinks}
        self.failures: list[str] = []  # why sinks stopped

    def run(self) -> int:
        """Run until the timeout, an interrupt, or no sink is left; close every sink. Raises
        WattprobeError when the last sink stopped on an error (the agent has nothing left to do)."""
        try:
            if self.step_s is None:
                self._on_demand()
            else:
                self._stepped(self.step_s)
        finally:
            for sink in self.live:
                self._close(sink)
        if not self.live and self.failures:
            raise WattprobeError(self.failures[-1])
        return 0

    def _stepped(self, step_s: float) -> None:
        start = self._clock()
        self.sampler.tick()  # the baseline
        # A timeout shorter than the step still measures one step: an output that is never written
        # would not say that it cannot be (nor would it have anything to show).
        deadline = None if self.timeout_s is None else start + max(self.timeout_s, step_s) + step_s / 10
        due = start + step_s
        while self.live and (deadline is None or due <= deadline):
            self._sleep(max(0.0, due - self._clock()))
            frame = self.sampler.tick()
            if frame is not None:
                for sink in list(self.live):
                    self.write(sink, frame)
            due += step_s

    def _on_demand(self) -> None:
        self.sampler.tick()
        self._sleep(WARMUP_S)
        frame = self.sampler.tick()
        if frame is not None:  # so that the first request already has power
            for sink in list(self.live):
                self.write(sink, frame)
        end = None if self.timeout_s is None else self._clock() + self.timeout_s
        while self.live and (end is None or self._clock() < end):
            self._sleep(0.5 if end is None else max(0.0, min(0.5, end - self._clock())))

    def write(self, sink: Sink, frame: Frame) -> None:
        """Write one Frame to one sink, containing whatever it raises."""
        outage = self._outages[id(sink)]
        try:
            sink.write(frame)
        except Fatal as error:
            self._stop(sink, str(error))
        except Exception as error:  # Retry, or a bug: this Frame is lost, not the sink
            outage.failed(error if str(error) else repr(error))
            log.debug("output %s failed", sink.name, exc_info=True)
        else:
            outage.recovered()

    def _stop(self, sink: Sink, why: str) -> None:
        self.live.remove(sink)
        self.failures.append(why)
        others = ", ".join(s.name for s in self.live)
        if others:
            log.error("output %s stopped: %s (still running: %s)", sink.name, why, others)
        self._close(sink)

    def _close(self, sink: Sink) -> None:
        try:
            sink.close()
        except Exception as error:  # closing one sink must not keep the others open
            log.warning("output %s did not close cleanly: %s", sink.name, error)
