"""The runner: one sampler, any number of sinks, every Frame to every sink, each sink contained.

It drives every use: the agent's outputs, `wattprobe run` and `wattprobe.measure()` (whose meter is a
sink like any other). With a step, the runner ticks the sampler every step and writes each Frame to
every sink. A sink whose write raises Retry (or anything unforeseen) loses that Frame only: it is said
once per outage and the sink gets the next Frame; a sink that raises Fatal is closed and left out, and
the others go on, at its first write as at any later one. The agent stops at the timeout (after one
step at least), on SIGINT/SIGTERM, or when no sink is left.

Between two ticks the runner calls `wait(seconds)`, which returns True to stop now: the agent's only
sleeps; `wattprobe run`'s waits for the command (forwarding signals meanwhile) and says when it ended;
`measure()`'s is an Event's. On such a stop the runner closes the last window at once (a tick, again
a few ms apart while the sampler skips the sample, until a Frame comes), writes that Frame, and
closes the sinks. `started()` is called once the baseline is taken: the measurement starts there.

Without a step (the wiring gives none when every sink is pulled: `sinks.pulled`), requests measure on
demand (through the sampler's rate-limited `frame()`), and the runner only takes the baseline and a
first Frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from wattprobe.core.model import Frame, Snapshot
from wattprobe.errors import WattprobeError
from wattprobe.retry import Outage
from wattprobe.sinks import Fatal, Sink

log = logging.getLogger(__name__)

IDLE_WAIT_S = 3600.0  # an on-demand agent's main thread, between its timeout checks
WARMUP_S = 0.5  # the first window of an on-demand agent: RAPL moves every ~1 ms, a few ms would be noise
# Tries, this far apart, to close the last window at a stop when the sampler skips the sample (energy
# that has not moved yet in a window of a few ms: RAPL moves every ~1 ms, a VM's tree when its host
# writes it).
LAST_WINDOW_TRIES = 20
LAST_WINDOW_PAUSE_S = 0.01
# A wait that returns this much before the tick is due was cut short (a signal forwarded): wait on.
_EARLY_S = 1e-6


class Ticks(Protocol):
    """What the runner drives: a `Sampler`, or a view of one that several runners share (the
    measuring helper's, `commandenergy.helper`)."""

    @property
    def last_snapshot(self) -> Snapshot | None: ...

    def tick(self) -> Frame | None: ...


class Runner:
    def __init__(
        self,
        sampler: Ticks,
        sinks: Sequence[Sink],
        *,
        step_s: float | None,
        timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wait: Callable[[float], bool] | None = None,
        started: Callable[[], None] | None = None,
    ) -> None:
        """`wait(seconds)` (default: `sleep`, never stopping) waits until the next tick is due, and
        returns True to stop now; it may return False early (the runner then waits on). `started()`
        runs once the baseline is taken."""
        if wait is not None and step_s is None:
            raise ValueError("a runner that stops on `wait` measures every step: give it a step")
        self.sampler = sampler
        self.live = list(sinks)
        self.step_s = step_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._sleep = sleep
        self._wait = wait if wait is not None else self._slept
        self._started = started
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

    def _slept(self, seconds: float) -> bool:
        self._sleep(seconds)
        return False

    def _stepped(self, step_s: float) -> None:
        start = self._clock()
        self.sampler.tick()  # the baseline
        if self._started is not None:
            self._started()
        # A timeout shorter than the step still measures one step: an output that is never written
        # would not say that it cannot be (nor would it have anything to show).
        deadline = None if self.timeout_s is None else start + max(self.timeout_s, step_s) + step_s / 10
        due = start + step_s
        while self.live and (deadline is None or due <= deadline):
            if self._wait(max(0.0, due - self._clock())):
                self._last_window()
                return
            now = self._clock()
            if due - now > _EARLY_S:
                continue  # woken before the tick is due
            self._publish(self.sampler.tick())
            # A tick that took longer than a step is not followed by a burst of ticks to catch up.
            due = max(due + step_s, now + step_s / 10)

    def _last_window(self) -> None:
        """Close the window now: tick until a Frame comes (a skipped sample is tried again a few ms
        later; a new baseline too, whose Frame says so), unless there is no baseline to close it from."""
        for _ in range(LAST_WINDOW_TRIES):
            before = self.sampler.last_snapshot
            frame = self.sampler.tick()
            if frame is not None or before is None:
                self._publish(frame)
                return
            self._sleep(LAST_WINDOW_PAUSE_S)

    def _publish(self, frame: Frame | None) -> None:
        if frame is not None:
            for sink in list(self.live):
                self.write(sink, frame)

    def _on_demand(self) -> None:
        self.sampler.tick()
        if self._started is not None:
            self._started()
        self._sleep(WARMUP_S)
        self._publish(self.sampler.tick())  # so that the first request already has power
        end = None if self.timeout_s is None else self._clock() + self.timeout_s
        # Requests measure in their own threads; this one only waits for the timeout or a signal
        # (which interrupts a sleep), so an idle agent is not woken for nothing.
        while self.live and (end is None or self._clock() < end):
            self._sleep(IDLE_WAIT_S if end is None else max(0.0, min(IDLE_WAIT_S, end - self._clock())))

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
