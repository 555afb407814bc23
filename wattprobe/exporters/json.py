"""`wattprobe json`: one Scaphandre-shaped document per step, written as one valid JSON array.

The array is closed on exit, Ctrl-C and SIGTERM included, so the file always parses.
Power is in µW (`consumption`), as Scaphandre writes it; timestamps are Unix seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from wattprobe.errors import UsageError, WattprobeError
from wattprobe.exporters import select_consumers
from wattprobe.model import Consumer, Frame
from wattprobe.options import count, regex, seconds

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
    from wattprobe.sampler import open_sampler

    step = args.step + args.step_nano / 1e9
    if step <= 0:
        raise UsageError("the step (-s seconds + -n nanoseconds) must be above 0")
    timeout = None if args.timeout is None or args.timeout < 0 else args.timeout
    out = _open(args.file)
    sampler = open_sampler(args)
    written = 0
    out.write("[")
    try:
        for frame in sampler.frames(step, timeout):
            out.write(("," if written else "") + "\n" + json.dumps(document(frame, args)))
            out.flush()
            written += 1
    finally:
        out.write("\n]\n")
        out.flush()
        if out is not sys.stdout:
            out.close()
        sampler.close()
    return 0


def _open(path: str | None) -> TextIO:
    if path is None:
        return sys.stdout
    try:
        return open(path, "w")
    except OSError as error:
        raise WattprobeError(f"cannot write {path}: {error.strerror}; choose another path with -f") from None


def document(frame: Frame, args: argparse.Namespace) -> dict[str, Any]:
    """One Frame as Scaphandre's JSON document, plus `estimated`, `source`, unattributed power and the
    power of the consumers left out of the list (`others_consumption`): listed + others +
    unattributed = host."""
    ts = frame.timestamp
    consumers = select_consumers(frame, args.max_top_consumers, args.process_regex, args.container_regex)
    listed = {id(c) for c in consumers}
    others = sum(c.watts for c in frame.consumers if id(c) not in listed)
    return {
        "host": {
            "consumption": frame.host_watts * 1e6,
            "timestamp": ts,
            "estimated": frame.estimated,
            "source": frame.host_source,
            "sensor": frame.sensor,
            "unattributed_consumption": frame.unattributed_watts * 1e6,
            "others_consumption": others * 1e6,
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
        "exited_consumption": c.exited_watts * 1e6,
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
