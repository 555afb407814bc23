"""`wattprobe powerapi`: PowerAPI HWPC reports (as a sensor) and Power reports, every step.

Outputs, any together: JSON lines (`-f FILE`, stdout by default), a CSV directory in PowerAPI's
layout (`--csv DIR`), a PowerAPI socket input (`--socket HOST:PORT`). See wattprobe.sinks.powerapi.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
from typing import TextIO

from wattprobe.errors import UsageError, WattprobeError
from wattprobe.sinks import count, seconds

NAME = "powerapi"
HELP = "write PowerAPI HWPC and Power reports: JSON lines, a CSV directory, or a PowerAPI socket"

log = logging.getLogger(__name__)


def address(text: str) -> tuple[str, int]:
    """argparse type: HOST:PORT, or [IPv6]:PORT."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r} (e.g. 127.0.0.1:9080)")
    return host, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from wattprobe.sources.topology import SYSFS_CPU_ROOT

    parser.add_argument(
        "--report",
        choices=("hwpc", "power", "both"),
        default="hwpc",
        help="HWPC reports (RAPL energy, as a PowerAPI sensor), Power reports (watts), or both (default hwpc)",
    )
    parser.add_argument("-s", "--step", type=seconds, default=1, help="seconds between reports (default 1)")
    parser.add_argument("-t", "--timeout", type=seconds, help="stop after this many seconds (default: never)")
    parser.add_argument(
        "--sensor-name", default=socket.gethostname(), help="the reports' sensor field (default: hostname)"
    )
    parser.add_argument(
        "-f",
        "--file",
        help="append JSON lines to this file ('-': stdout; default stdout without --csv/--socket)",
    )
    parser.add_argument("--csv", metavar="DIR", help="append to CSV files in PowerAPI's layout under DIR")
    parser.add_argument(
        "--socket",
        type=address,
        metavar="HOST:PORT",
        help="send to a PowerAPI socket input (reconnects; reports are queued meanwhile)",
    )
    parser.add_argument(
        "--processes", type=count, default=0, help="Power reports for the top N processes too (default 0)"
    )
    parser.add_argument(
        "--iso-time",
        action="store_true",
        help="JSON lines: UTC 'YYYY-MM-DDThh:mm:ss.ffffff' timestamps instead of integer ms",
    )
    parser.add_argument(
        "--sysfs-cpu-root",
        metavar="PATH",
        default=SYSFS_CPU_ROOT,
        help=f"cpu topology, for each socket's first cpu in HWPC reports (default {SYSFS_CPU_ROOT})",
    )


def run(args: argparse.Namespace) -> int:
    from wattprobe.core.sampler import open_sampler
    from wattprobe.sinks.powerapi.csvdir import CsvDirectory
    from wattprobe.sinks.powerapi.reports import hwpc_reports, iso_utc, power_reports
    from wattprobe.sinks.powerapi.tcp import SocketClient
    from wattprobe.sources.topology import first_cpus

    if args.step <= 0:
        raise UsageError(f"--step must be above 0 seconds, got {args.step:g}")
    if args.socket and args.report == "both":
        raise UsageError(
            "a PowerAPI socket input reads one kind of report: use --report hwpc or power with --socket"
        )
    if not args.sensor_name:
        raise UsageError("--sensor-name must not be empty")
    cpus = first_cpus(args.sysfs_cpu_root) if args.report != "power" else {}
    if args.report != "power" and not cpus:
        log.warning("no cpu topology at %s: HWPC reports name cpu 0 for every socket", args.sysfs_cpu_root)
    timeout = None if args.timeout is None or args.timeout < 0 else args.timeout

    csv_dir = CsvDirectory(args.csv) if args.csv else None
    out = _open(args.file if args.file or args.csv or args.socket else "-")
    sampler = open_sampler(args)
    client = SocketClient(*args.socket) if args.socket else None
    warned_no_rapl = False
    try:
        for frame in sampler.frames(args.step, timeout):
            reports = []
            if args.report != "power":
                reports += hwpc_reports(frame, args.sensor_name, cpus)
                if not reports and not warned_no_rapl:
                    log.warning("the %s sensor has no RAPL counter: no HWPC reports", frame.sensor)
                    warned_no_rapl = True
            if args.report != "hwpc":
                reports += power_reports(frame, args.sensor_name, args.processes)
            if client is not None:
                client.send([(json.dumps(r) + "\n").encode() for r in reports])
            if csv_dir is not None:
                csv_dir.write(reports)
            if out is not None:
                if args.iso_time:
                    reports = [r | {"timestamp": iso_utc(r["timestamp"])} for r in reports]
                _write(out, "".join(json.dumps(r) + "\n" for r in reports))
    finally:
        sampler.close()
        if client is not None:
            client.close()
        if out is not None and out is not sys.stdout:
            out.close()
    return 0


def _write(out: TextIO, text: str) -> None:
    """Write and flush; a full disk or a failing device loses this tick's lines, not the agent."""
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        log.warning("cannot write reports to %s: %s", out.name, error.strerror)


def _open(path: str | None) -> TextIO | None:
    if path is None:
        return None
    if path == "-":
        return sys.stdout
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as error:
        raise WattprobeError(f"cannot write {path}: {error.strerror}; choose another path with -f") from None
