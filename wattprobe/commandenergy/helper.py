"""The measuring helper: `wattprobe.measure()`'s sampling, in a process of its own.

`python -m wattprobe.commandenergy.helper`, started by the caller (`helper_link`), reads one JSON
request a line on its stdin and answers each with one line on its stdout:

- `{"op": "start", "id": N, "root": PID, "sources": {...}, "step": S, "cwd": DIR, "env": {...}}`
  (`env`: the caller's environment variables that opening the sources reads, `helper_link.ENVIRONMENT`):
  open the sources (the global options as keyword arguments), start a runner with a meter of PID's
  tree as its sink, and answer `{"id": N}` once the baseline is taken (the block may run), or
  `{"id": N, "error": WHY}`;
- `{"op": "stop", "id": N}`: close the last window, answer `{"id": N, "tally": {...},
  "overhead_cpu_s": X}` (or an error).

Every answer carries `logs`, what the sources said meanwhile (`[logger, level, message]`), which the
caller logs as its own. It is the runner and meter sink of `wattprobe run`: one runner per measurement
(its own step, its own thread here), the measurements with the same options sharing one sampler (one
reader of /proc: its descriptors are counted once, however many blocks are nested or concurrent). So
the caller's descriptors, threads and GIL stay its own, and the open-files limit raised is this
process's. The helper is the caller's child, hence in its tree: it is taken out of the tree the meter
adds up, and its CPU time for a measurement (opening the sources, its runner's ticks) is that
measurement's `overhead_cpu_s`. A sampler stays open for the next measurements with the same options
(a measurement then costs a tick, not a first scan of every process), a few at most. The helper exits
when its stdin closes: the caller's process ended.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from wattprobe.commandenergy.helper_link import tally_json
from wattprobe.commandenergy.meter import Meter, Tally
from wattprobe.config import settings
from wattprobe.core.model import Frame, Snapshot
from wattprobe.core.sampler import Sampler
from wattprobe.errors import UsageError, WattprobeError
from wattprobe.pipeline.runner import LAST_WINDOW_PAUSE_S, LAST_WINDOW_TRIES, Runner
from wattprobe.sinks import Fatal
from wattprobe.sources import Sources, SourceSettings, open_sources

log = logging.getLogger(__name__)
# Samplers kept open for the next measurements with the same options; closed when one with other
# options opens (each reader holds two descriptors per process on the machine).
IDLE_SAMPLERS = 2


class _Logs(logging.Handler):
    """Keeps what the wattprobe loggers say, per thread, for the measurement that thread serves."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.routes: dict[int, list[list[Any]]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        lines = self.routes.get(threading.get_ident())
        if lines is not None:
            lines.append([record.name, record.levelno, record.getMessage()])


class _Shared:
    """One Sampler for every measurement with the same options: they share its reader's descriptors
    (two per process on the machine) and its ticks. Each measurement's runner ticks it at its own step
    (and at its start and end, through a `_View`), and every Frame goes to every meter attached then:
    a meter attaches at its runner's first tick (the window its figures start from) and leaves at the
    first Frame once told to stop (where they end), so that each has exactly its own time."""

    def __init__(self, key: str, sources: Sources, root: int) -> None:
        self.key = key
        self.sources = sources
        self.sampler = Sampler(
            sources.sensor,
            sources.procfs,
            socket_cpus=sources.socket_cpus,
            host=sources.host,
            names=sources.names,
        )
        self.sampler.follow(root)
        self.root = root
        self.me = os.getpid()
        self.users = 0  # measurements started and not yet stopped
        self._lock = threading.Lock()
        self._attached: list[_Measurement] = []

    def tick(self, measurement: _Measurement) -> Frame | None:
        with self._lock:
            before = self.sampler.last_snapshot
            frame = self.sampler.tick()
            if measurement.joining:
                # Its start must be a snapshot that ends a window: after a skipped sample (energy that
                # has not moved yet, a few ms after another runner's tick), tick again.
                for _ in range(LAST_WINDOW_TRIES):
                    if frame is not None or before is None or self.sampler.last_snapshot is not before:
                        break
                    time.sleep(LAST_WINDOW_PAUSE_S)
                    frame = self.sampler.tick()
            if frame is not None:
                frame = self._without_helper(frame)
                for other in list(self._attached):
                    other.deliver(frame)
                    if other.failure is not None:
                        self._attached.remove(other)
            if measurement.joining:
                measurement.joining = False
                measurement.meter.begin()
                self._attached.append(measurement)
            elif frame is not None and measurement.stop.is_set():
                self.detach(measurement)
            return frame

    def detach(self, measurement: _Measurement) -> None:
        if measurement in self._attached:
            self._attached.remove(measurement)

    def leave(self, measurement: _Measurement) -> None:
        with self._lock:
            self.detach(measurement)

    def _without_helper(self, frame: Frame) -> Frame:
        """The helper is the caller's child, hence in its tree: taken out."""
        tree = frame.trees.get(self.root)
        if tree is None or self.me not in tree:
            return frame
        return dataclasses.replace(frame, trees={**frame.trees, self.root: tree - {self.me}})

    def close(self) -> None:
        self.sampler.close()


class _View:
    """What one measurement's runner ticks: the shared sampler."""

    def __init__(self, shared: _Shared, measurement: _Measurement) -> None:
        self.shared = shared
        self.measurement = measurement

    @property
    def last_snapshot(self) -> Snapshot | None:
        return self.shared.sampler.last_snapshot

    def tick(self) -> Frame | None:
        return self.shared.tick(self.measurement)


class _Measurement:
    """One runner, in a thread of its own, until told to stop. Its meter is given Frames by the shared
    sampler (whichever runner ticked); the runner's own sink only says when the meter failed."""

    name = "meter"

    def __init__(self, shared: _Shared, step_s: float, logs: _Logs) -> None:
        self.shared = shared
        self.logs = logs
        self.said: list[list[Any]] = []
        self.overhead_s = 0.0
        self.tally: Tally | None = None
        self.failure: str | None = None
        self.joining = True
        self.stop = threading.Event()
        self.ready = threading.Event()
        sensor = shared.sources.sensor
        self.meter = Meter(
            shared.root, sensor=sensor.name, estimated=sensor.estimated, step_s=step_s, root_counts=True
        )
        self.runner = Runner(
            _View(shared, self), [self], step_s=step_s, wait=self.stop.wait, started=self._started
        )
        self.thread = threading.Thread(target=self._run, name="wattprobe-measure", daemon=True)

    def _started(self) -> None:
        """The baseline is taken: the measured span starts here, and the caller's block may begin."""
        self.meter.begin()
        self.ready.set()

    def deliver(self, frame: Frame) -> None:
        """A Frame to the meter (under the shared sampler's lock)."""
        try:
            self.meter.write(frame)
        except Exception as error:
            self.failure = f"the measurement stopped: {error}"

    def write(self, frame: Frame) -> None:
        """The runner's sink: the Frame is the meter's already; a meter that failed stops the runner."""
        if self.failure is not None:
            raise Fatal(self.failure)

    def close(self) -> None:
        """Nothing to close: the meter's tally is taken once the runner ended."""

    def _run(self) -> None:
        started = time.thread_time()
        self.logs.routes[threading.get_ident()] = self.said
        try:
            self.runner.run()
        except Exception as error:  # whatever happens here, the other measurements go on
            self.failure = self.failure or f"the measurement stopped: {error}"
        finally:
            self.shared.leave(self)
            if self.failure is None:
                self.tally = self.meter.tally()
            self.ready.set()
            self.logs.routes.pop(threading.get_ident(), None)
            self.overhead_s += time.thread_time() - started

    def told(self) -> list[list[Any]]:
        """What was said since the last answer."""
        said, self.said[:] = list(self.said), []
        return said


class Helper:
    """Serves the requests of one caller, one at a time (each measurement runs in its own thread)."""

    def __init__(self) -> None:
        self.logs = _Logs()
        self.running: dict[int, _Measurement] = {}
        self.shared: list[_Shared] = []  # in use, or idle (the oldest first)

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        said: list[list[Any]] = []
        self.logs.routes[threading.get_ident()] = said
        try:
            op = request.get("op")
            if op == "start":
                answer = self._start(request)
            elif op == "stop":
                answer = self._stop(request)
            else:
                answer = {"error": f"unknown request {op!r}"}
        except Exception as error:  # an answer, whatever happened: the caller's block goes on
            answer = {"error": str(error) or repr(error)}
        finally:
            self.logs.routes.pop(threading.get_ident(), None)
        answer["id"] = request.get("id")
        answer["logs"] = said + answer.get("logs", [])
        return answer

    def _start(self, request: dict[str, Any]) -> dict[str, Any]:
        started = time.thread_time()
        root = int(request["root"])
        key = json.dumps([root, request["sources"], request["cwd"], request["env"]], sort_keys=True)
        shared = next((s for s in self.shared if s.key == key), None)
        if shared is None:
            self._close_idle(0)  # each reader keeps descriptors as if it were alone: as few as may be
            try:
                shared = _Shared(key, self._open(request), root)
            except WattprobeError as error:
                return {"error": str(error)}
            self.shared.append(shared)
        else:
            self.shared.remove(shared)  # the most recently used last
            self.shared.append(shared)
        measurement = _Measurement(shared, float(request["step"]), self.logs)
        measurement.overhead_s = time.thread_time() - started
        shared.users += 1
        measurement.thread.start()
        measurement.ready.wait()
        if measurement.failure is not None:
            self._done(measurement)
            return {"error": measurement.failure, "logs": measurement.told()}
        self.running[request["id"]] = measurement
        return {"logs": measurement.told()}

    def _stop(self, request: dict[str, Any]) -> dict[str, Any]:
        measurement = self.running.pop(request["id"], None)
        if measurement is None:
            return {"error": f"no measurement {request['id']!r} is running"}
        self._done(measurement)
        said = measurement.told()
        if measurement.tally is None:
            return {"error": measurement.failure or "the measurement stopped", "logs": said}
        return {
            "tally": tally_json(measurement.tally),
            "overhead_cpu_s": measurement.overhead_s,
            "logs": said,
        }

    def _done(self, measurement: _Measurement) -> None:
        """Stop a measurement; close the sampler it used if no other uses it and too many are idle."""
        measurement.meter.end()  # the block ended: the last window, closed right after, should reach here
        measurement.stop.set()
        measurement.thread.join()
        measurement.shared.users -= 1
        self._close_idle(IDLE_SAMPLERS)

    def _close_idle(self, keep: int) -> None:
        """Close the samplers no measurement uses, but the `keep` used last."""
        idle = [shared for shared in self.shared if shared.users == 0]
        for shared in idle[: max(0, len(idle) - keep)]:
            self.shared.remove(shared)
            shared.close()

    def _open(self, request: dict[str, Any]) -> Sources:
        """The sources the caller's options describe, opened where and as the caller is now."""
        os.chdir(request["cwd"])
        for name, value in request["env"].items():
            if value is None:
                os.environ.pop(name, None)
            elif os.environ.get(name) != value:
                os.environ[name] = value
        try:
            options = settings.from_table(SourceSettings, request["sources"], "wattprobe.measure()")
        except UsageError as error:
            raise WattprobeError(str(error)) from None
        return open_sources(options)


def main() -> None:
    """Serve requests until stdin closes (the caller ended)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides what a Ctrl-C does
    answers = os.dup(1)  # the answers' pipe; fd 1 now goes nowhere, so nothing else can write into it
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout = open(1, "w")  # noqa: SIM115 - this process's stdout for its whole life
    helper = Helper()
    wattprobe = logging.getLogger("wattprobe")
    wattprobe.setLevel(logging.INFO)
    wattprobe.addHandler(helper.logs)
    wattprobe.propagate = False  # said by the caller, not on the caller's stderr from here
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        data = (json.dumps(helper.handle(request)) + "\n").encode()
        try:
            while data:
                data = data[os.write(answers, data) :]
        except OSError:  # the caller is gone
            break
    os._exit(0)  # the runners' threads end with the process


if __name__ == "__main__":
    main()
