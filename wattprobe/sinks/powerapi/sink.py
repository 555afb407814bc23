"""`wattprobe powerapi`: PowerAPI HWPC reports (as a sensor) and Power reports, every step.

Outputs, any together: JSON lines (`-f FILE`, stdout by default), a CSV directory in PowerAPI's
layout (`--csv DIR`), a PowerAPI socket input (`--socket HOST:PORT`). See wattprobe.sinks.powerapi.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
from dataclasses import dataclass

from wattprobe.config.settings import option
from wattprobe.config.values import count
from wattprobe.core.model import Frame
from wattprobe.errors import UsageError, WattprobeError
from wattprobe.sinks import Context, Fatal, Remote, RemoteSink, Sink
from wattprobe.sinks.kit import options
from wattprobe.sinks.kit.files import OutputFile

NAME = "powerapi"
HELP = "write PowerAPI HWPC and Power reports: JSON lines, a CSV directory, or a PowerAPI socket"
MAX_PENDING = 10_000  # reports kept for the socket while PowerAPI is away

log = logging.getLogger(__name__)


def address(text: str) -> tuple[str, int]:
    """HOST:PORT, or [IPv6]:PORT."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r} (e.g. 127.0.0.1:9080)")
    return host, int(port)


@dataclass(frozen=True)
class Cadence(options.Cadence):
    step: float | None = options.step(1.0, what="reports")
    timeout: float | None = options.timeout()


@dataclass(frozen=True)
class Settings:
    report: str = option(
        "hwpc",
        choices=("hwpc", "power", "both"),
        help="HWPC reports (RAPL energy, as a PowerAPI sensor), Power reports (watts), or both (default hwpc)",
    )
    sensor_name: str = option(
        socket.gethostname(), metavar="NAME", help="the reports' sensor field (default: hostname)"
    )
    file: str | None = option(
        None,
        "-f",
        "--file",
        metavar="PATH",
        help="append JSON lines to this file ('-': stdout; default stdout without --csv/--socket)",
    )
    csv: str | None = option(None, metavar="DIR", help="append to CSV files in PowerAPI's layout under DIR")
    socket: tuple[str, int] | None = option(
        None,
        parse=address,
        metavar="HOST:PORT",
        help="send to a PowerAPI socket input (reconnects; reports are queued meanwhile)",
    )
    processes: int = option(
        0,
        parse=count,
        metavar="N",
        help="Power reports too for the N processes that drew the most of those that ran in the step "
        "(default 0)",
    )
    iso_time: bool = option(
        False, help="JSON lines: UTC 'YYYY-MM-DDThh:mm:ss.ffffff' timestamps instead of integer ms"
    )

    def __post_init__(self) -> None:
        if self.socket and self.report == "both":
            raise UsageError(
                "a PowerAPI socket input reads one kind of report: use --report hwpc or power with --socket"
            )
        if not self.sensor_name:
            raise UsageError("--sensor-name must not be empty")


def create(settings: Settings, context: Context) -> Sink:
    return PowerApiSink(settings)


class PowerApiSink(RemoteSink[bytes]):
    """Each Frame's reports to a JSON-lines file and a CSV directory on the tick, and to a PowerAPI
    socket, as asked; with a socket it is a remote sink, whose reports are sent off the tick."""

    name = NAME

    def __init__(self, settings: Settings) -> None:
        from wattprobe.sinks.powerapi.csvdir import CsvDirectory
        from wattprobe.sinks.powerapi.tcp import SocketSender

        self.settings = settings
        self.csv = CsvDirectory(settings.csv) if settings.csv else None
        path = settings.file if settings.file or settings.csv or settings.socket else "-"
        self.out = None if path is None else OutputFile(None if path == "-" else path, append=True)
        self.sender = SocketSender(*settings.socket) if settings.socket else None
        self.remote: Remote | None = None
        if self.sender is not None:
            self.remote = Remote(f"PowerAPI socket {self.sender.where}", capacity=MAX_PENDING, batch=1000)
        self._warned_no_rapl = self._warned_no_cpus = False

    def render(self, frame: Frame) -> list[bytes]:
        """Write the file and the CSV directory; the lines for the socket, if any."""
        from wattprobe.sinks.powerapi.reports import hwpc_reports, iso_utc, power_reports

        reports = []
        if self.settings.report != "power":
            cpus = dict(frame.socket_cpus)
            if not cpus and frame.sockets and not self._warned_no_cpus:
                log.warning(
                    "no cpu topology: HWPC reports name cpu 0 for every socket (see --sysfs-cpu-root)"
                )
                self._warned_no_cpus = True
            reports += hwpc_reports(frame, self.settings.sensor_name, cpus)
            if not reports and not self._warned_no_rapl:
                log.warning("the %s sensor has no RAPL counter: no HWPC reports", frame.sensor)
                self._warned_no_rapl = True
        if self.settings.report != "hwpc":
            reports += power_reports(frame, self.settings.sensor_name, self.settings.processes)
        lines = [] if self.sender is None else [(json.dumps(r) + "\n").encode() for r in reports]
        if self.csv is not None:
            self.csv.write(reports)
        if self.out is not None:
            if self.settings.iso_time:
                reports = [r | {"timestamp": iso_utc(r["timestamp"])} for r in reports]
            try:
                self.out.write("".join(json.dumps(r) + "\n" for r in reports).encode())
            except WattprobeError as error:  # the file ends with its last complete line
                raise Fatal(str(error)) from None
        return lines

    def send(self, lines: list[bytes]) -> None:
        if self.sender is not None and lines:
            self.sender.send(lines)

    def close(self) -> None:
        if self.sender is not None:
            self.sender.close()
        if self.out is not None:
            self.out.close()
