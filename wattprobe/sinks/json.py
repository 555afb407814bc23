"""`wattprobe json`: one Scaphandre-shaped document per step, written as one valid JSON array.

A file (`-f`) parses after every document, even if the agent is killed: each document is written
over the array's closing bracket, followed by a new one (`sinks.files`). On standard output the array
is closed on exit, Ctrl-C and SIGTERM included. Power is in µW (`consumption`), as Scaphandre writes
it; timestamps are Unix seconds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from wattprobe.config.settings import option
from wattprobe.config.values import count, regex
from wattprobe.core.model import Consumer, Frame
from wattprobe.errors import WattprobeError
from wattprobe.sinks import Context, Fatal, Sink
from wattprobe.sinks.kit import options
from wattprobe.sinks.kit.catalogue import MICRO
from wattprobe.sinks.kit.files import OutputFile
from wattprobe.sinks.kit.selection import select_consumers

NAME = "json"
HELP = "write one JSON document per step to a file or stdout"


@dataclass(frozen=True)
class Cadence(options.Cadence):
    timeout: float | None = options.timeout()
    step: float | None = options.step(2.0)
    step_nano: int = option(
        0, "-n", "--step-nano", parse=count, metavar="NS", help="nanoseconds added to the step"
    )

    @property
    def step_s(self) -> float:
        return (self.step or 0.0) + self.step_nano / 1e9


@dataclass(frozen=True)
class Settings:
    max_top_consumers: int = options.top(10)
    file: str | None = option(
        None, "-f", "--file", metavar="PATH", help="write to this file (default stdout)"
    )
    containers: bool = options.containers("describe each consumer's container")
    process_regex: re.Pattern[str] | None = options.process_regex()
    container_regex: re.Pattern[str] | None = option(
        None, parse=regex, metavar="REGEX", help="only processes in containers whose id matches"
    )
    resources: bool = option(False, help="add each consumer's CPU and memory use")


def create(settings: Settings, context: Context) -> Sink:
    return JsonSink(settings)


class JsonSink:
    """One document per Frame, in one JSON array."""

    name = NAME

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.array = JsonArray(settings.file)

    def write(self, frame: Frame) -> None:
        try:
            self.array.append(json.dumps(document(frame, self.settings)))
        except WattprobeError as error:  # the array stays valid; nothing more can go into it
            raise Fatal(str(error)) from None

    def close(self) -> None:
        self.array.close()


class JsonArray:
    """A JSON array of documents in a file (`path`) or on standard output (None); see `OutputFile`."""

    def __init__(self, path: str | None) -> None:
        self.file = OutputFile(path, tail=b"\n]\n")
        self._count = 0
        self._failed: WattprobeError | None = None
        try:
            self.file.write(b"[")
        except WattprobeError as error:  # a write that failed, as a later one may: said by the first append
            self._failed = error

    def append(self, text: str) -> None:
        if self._failed is not None:
            raise self._failed
        self.file.write((b",\n" if self._count else b"\n") + text.encode())
        self._count += 1

    def close(self) -> None:
        self.file.close()


def document(frame: Frame, settings: Settings) -> dict[str, Any]:
    """One Frame as Scaphandre's JSON document, plus `estimated` (and the `model` that made estimated
    figures), `source`, unattributed power and the
    power of the consumers left out of the list (`others_consumption`): listed + others +
    unattributed = host."""
    ts = frame.timestamp
    consumers = select_consumers(
        frame, settings.max_top_consumers, settings.process_regex, settings.container_regex
    )
    listed = {id(c) for c in consumers}
    others = sum(c.watts for c in frame.consumers if id(c) not in listed)
    return {
        "host": {
            "consumption": frame.host_watts * MICRO,
            "timestamp": ts,
            "estimated": frame.estimated,
            "source": frame.host_source,
            "sensor": frame.sensor,
            "model": frame.model,
            "unattributed_consumption": frame.unattributed_watts * MICRO,
            "others_consumption": others * MICRO,
            "cpu_load": frame.cpu_load,
        },
        "consumers": [_consumer(c, frame, settings) for c in consumers],
        "sockets": [
            {
                "id": s.id,
                "consumption": s.watts * MICRO,
                "timestamp": ts,
                "domains": [
                    {"name": d.name, "consumption": d.watts * MICRO, "timestamp": ts} for d in s.domains
                ],
            }
            for s in frame.sockets
        ],
    }


def _consumer(c: Consumer, frame: Frame, settings: Settings) -> dict[str, Any]:
    ts = frame.timestamp
    container = c.info.container
    workload = frame.workloads.get(container.id) if container is not None else None
    return {
        "exe": c.info.exe,
        "cmdline": c.info.cmdline,
        "pid": c.info.pid,
        "consumption": c.watts * MICRO,
        "exited_consumption": c.exited_watts * MICRO,
        "timestamp": ts,
        "container": None
        if container is None or not settings.containers
        else {
            # the engine's (or the pod's) name once known, else the short id
            "name": (workload.name if workload else None) or container.id[:12],
            "id": container.id,
            "runtime": container.runtime,
            "scheduler": container.scheduler,
            "pod_name": workload.pod_name if workload else None,
            "pod_namespace": workload.pod_namespace if workload else None,
            "pod_uid": (workload.pod_uid if workload else None) or container.pod_uid,
            "node_name": frame.node_name,
        },
        "resources_usage": None
        if not settings.resources
        else {
            "cpu_usage": c.cpu_share * 100,
            "cpu_usage_unit": "% of all CPUs",
            "memory_usage": c.rss_bytes,
            "memory_usage_unit": "Bytes",
            "memory_virtual_usage": c.vsize_bytes,
            "memory_virtual_usage_unit": "Bytes",
        },
    }
