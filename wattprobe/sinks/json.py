"""`wattprobe json`: one Scaphandre-shaped document per step, written as one valid JSON array.

A file (`-f`) parses after every document, even if the agent is killed: each document is written
over the array's closing bracket, followed by a new one. On standard output the array is closed on
exit, Ctrl-C and SIGTERM included. Power is in µW (`consumption`), as Scaphandre writes it;
timestamps are Unix seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
import sys
from typing import Any

from wattprobe.core.model import Consumer, Frame
from wattprobe.errors import UsageError, WattprobeError
from wattprobe.options import count, regex, seconds
from wattprobe.sinks import select_consumers

NAME = "json"
HELP = "write one JSON document per step to a file or stdout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-t", "--timeout", type=seconds, help="stop after this many seconds (default: never)")
    parser.add_argument(
        "-s", "--step", type=seconds, default=2, help="seconds between measurements (default 2)"
    )
    parser.add_argument("-n", "--step-nano", type=count, default=0, help="nanoseconds added to the step")
    parser.add_argument(
        "-m", "--max-top-consumers", type=count, default=10, help="consumers per document (default 10)"
    )
    parser.add_argument("-f", "--file", help="write to this file (default stdout)")
    parser.add_argument("--containers", action="store_true", help="describe each consumer's container")
    parser.add_argument(
        "--process-regex",
        type=regex,
        help="every process whose exe or cmdline matches, instead of the top ones",
    )
    parser.add_argument("--container-regex", type=regex, help="only processes in containers whose id matches")
    parser.add_argument("--resources", action="store_true", help="add each consumer's CPU and memory use")


def run(args: argparse.Namespace) -> int:
    from wattprobe.core.sampler import open_sampler

    step = args.step + args.step_nano / 1e9
    if step <= 0:
        raise UsageError("the step (-s seconds + -n nanoseconds) must be above 0")
    timeout = None if args.timeout is None or args.timeout < 0 else args.timeout
    sampler = open_sampler(args)  # the sensor works before the file is touched
    try:
        array = JsonArray(args.file)
        try:
            for frame in sampler.frames(step, timeout):
                array.append(json.dumps(document(frame, args)))
        finally:
            array.close()
    finally:
        sampler.close()
    return 0


class JsonArray:
    """A JSON array of documents in a file (`path`) or on standard output (None).

    A regular file holds a complete array after every append; elsewhere (standard output, a pipe, a
    device) the array is closed by close(). A write error (disk full, I/O error, a reader that closed
    the pipe) is one WattprobeError, and what was written before it stays a valid array where it can.
    """

    def __init__(self, path: str | None) -> None:
        self.name = path or "standard output"
        self._count = 0
        self._owned = path is not None
        if path is None:
            self._fd = sys.stdout.fileno()
        else:
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            except OSError as error:
                raise WattprobeError(
                    f"cannot write {path}: {error.strerror}; choose another path with -f"
                ) from None
        # Where the closing bracket of a regular file starts; None: written in sequence, closed at the end.
        self._end: int | None = 0 if stat.S_ISREG(os.fstat(self._fd).st_mode) else None
        self._put(b"[")

    def append(self, text: str) -> None:
        self._put((b",\n" if self._count else b"\n") + text.encode())
        self._count += 1

    def close(self) -> None:
        try:
            if self._end is None:
                self._write(b"\n]\n")
        except WattprobeError:
            pass  # the write that failed has said it
        finally:
            if self._owned:
                os.close(self._fd)

    def _put(self, data: bytes) -> None:
        """Append `data`: in sequence, or over a file's closing bracket, which is written anew after it."""
        if self._end is None:
            self._write(data)
            return
        try:
            self._write(data + b"\n]\n", self._end)
        except WattprobeError:
            with contextlib.suppress(OSError, WattprobeError):  # back to the last complete array
                os.ftruncate(self._fd, self._end)
                if self._end:
                    self._write(b"\n]\n", self._end)
            raise
        self._end += len(data)

    def _write(self, data: bytes, offset: int | None = None) -> None:
        """Write all of `data` (at `offset`, or in sequence), or raise WattprobeError saying why not."""
        try:
            while data:
                if offset is None:
                    written = os.write(self._fd, data)
                else:
                    written = os.pwrite(self._fd, data, offset)
                    offset += written
                data = data[written:]
        except BrokenPipeError:
            raise WattprobeError(f"cannot write {self.name}: its reader closed it") from None
        except OSError as error:
            fix = "; choose another path with -f" if self._owned else ""
            raise WattprobeError(f"cannot write {self.name}: {error.strerror}{fix}") from None


def document(frame: Frame, args: argparse.Namespace) -> dict[str, Any]:
    """One Frame as Scaphandre's JSON document, plus `estimated`, `source` and unattributed power."""
    ts = frame.timestamp
    consumers = select_consumers(frame, args.max_top_consumers, args.process_regex, args.container_regex)
    return {
        "host": {
            "consumption": frame.host_watts * 1e6,
            "timestamp": ts,
            "estimated": frame.estimated,
            "source": frame.host_source,
            "sensor": frame.sensor,
            "unattributed_consumption": frame.unattributed_watts * 1e6,
            "cpu_load": frame.cpu_load,
        },
        "consumers": [_consumer(c, ts, frame, args) for c in consumers],
        "sockets": [
            {
                "id": s.id,
                "consumption": s.watts * 1e6,
                "timestamp": ts,
                "domains": [
                    {"name": d.name, "consumption": d.watts * 1e6, "timestamp": ts} for d in s.domains
                ],
            }
            for s in frame.sockets
        ],
    }


def _consumer(c: Consumer, ts: float, frame: Frame, args: argparse.Namespace) -> dict[str, Any]:
    container = c.info.container
    return {
        "exe": c.info.exe,
        "cmdline": c.info.cmdline,
        "pid": c.info.pid,
        "consumption": c.watts * 1e6,
        "timestamp": ts,
        "container": None
        if container is None or not args.containers
        else {
            "name": container.id[:12],
            "id": container.id,
            "runtime": container.runtime,
            "scheduler": container.scheduler,
        },
        "resources_usage": None
        if not args.resources
        else {
            "cpu_usage": c.cpu_share * 100,
            "cpu_usage_unit": "% of all CPUs",
            "memory_usage": c.rss_bytes,
            "memory_usage_unit": "Bytes",
            "memory_virtual_usage": c.vsize_bytes,
            "memory_virtual_usage_unit": "Bytes",
        },
    }
