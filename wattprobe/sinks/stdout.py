"""`wattprobe stdout`: host, sockets and top consumers every step; a live table on a terminal.

Every name read from outside (process, container, powercap zone) goes through `printable`, and into a
table as a rich Text, never as markup: a process cannot write escape sequences or markup to the terminal.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from wattprobe.config.settings import option
from wattprobe.config.values import count, regex
from wattprobe.core.model import Frame
from wattprobe.core.printable import printable
from wattprobe.sinks import Context, Fatal, Sink
from wattprobe.sinks.kit import options
from wattprobe.sinks.kit.selection import select_consumers

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

NAME = "stdout"
HELP = "print power to the terminal every step"


@dataclass(frozen=True)
class Cadence(options.Cadence):
    timeout: float | None = options.timeout(10.0)


@dataclass(frozen=True)
class Settings:
    processes: int = option(
        5,
        "-p",
        "--processes",
        parse=count,
        metavar="N",
        help="of the processes that ran in the window, the N that drew the most (default 5)",
    )
    regex_filter: re.Pattern[str] | None = option(
        None,
        "-r",
        "--regex-filter",
        parse=regex,
        metavar="REGEX",
        help="show processes that ran in the window and whose exe or cmdline matches, instead of the top ones",
    )
    containers: bool = options.containers("show power per container too")


def create(settings: Settings, context: Context) -> Sink:
    return StdoutSink(settings)


class StdoutSink:
    """Scaphandre's plain text per Frame, or a live table on a terminal."""

    name = NAME

    def __init__(self, settings: Settings, out: TextIO | None = None) -> None:
        self.settings = settings
        self.out = out or sys.stdout
        self._live: Live | None = None
        if self.out.isatty():
            from rich.live import Live
            from rich.text import Text

            self._live = Live(Text("measuring the first step..."), auto_refresh=False)
            self._live.start()

    def write(self, frame: Frame) -> None:
        try:
            if self._live is not None:
                self._live.update(live_table(frame, self.settings), refresh=True)
            else:
                print(render_text(frame, self.settings), file=self.out, flush=True)
        except BrokenPipeError:
            raise Fatal("cannot write standard output: its reader closed it") from None
        except OSError as error:  # a full disk or an I/O error: as the json output, this output stops
            raise Fatal(f"cannot write standard output: {error.strerror}") from None

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()


def _watts(value: float) -> str:
    return f"{value:.2f} W" if value >= 0.1 or value == 0 else f"{value * 1000:.2f} mW"


def _by(frame: Frame) -> str:
    """Which model made estimated figures, for the header."""
    return f", estimated by the {printable(frame.model)}" if frame.model else ""


def render_text(frame: Frame, settings: Settings) -> str:
    """Scaphandre's plain layout, plus where host power comes from and what is unattributed."""
    estimated = " (estimated)" if frame.estimated else ""
    lines = [
        f"Host:\t{_watts(frame.host_watts)}{estimated}\tfrom {frame.host_source}, "
        f"CPU load {frame.cpu_load:.0%} of {frame.n_cpus} CPUs{_by(frame)}"
    ]
    domain_names = sorted({d.name for s in frame.sockets for d in s.domains})
    if frame.sockets:
        lines.append("\tpackage\t" + "\t".join(printable(n) for n in domain_names))
    for socket in frame.sockets:
        by_name = {d.name: d.watts for d in socket.domains}
        cells = "\t".join(_watts(by_name[n]) if n in by_name else "-" for n in domain_names)
        lines.append(f"Socket{socket.id}\t{_watts(socket.watts)} |\t{cells}")
    consumers = select_consumers(frame, settings.processes, settings.regex_filter)
    title = (
        "Consumers matching the filter" if settings.regex_filter else f"Top {settings.processes} consumers"
    )
    lines += [f"{title}:", "Power\t\tPID\tExe"]
    lines += [f'{_watts(c.watts)}\t{c.info.pid}\t"{printable(c.info.exe or c.info.comm)}"' for c in consumers]
    lines.append(f"Unattributed (idle CPUs, exited processes, kernel):\t{_watts(frame.unattributed_watts)}")
    if settings.containers:
        lines += ["Containers:", "Power\t\tRuntime\tId"]
        lines += [
            f"{_watts(g.watts)}\t{printable(g.container.runtime or '-')}\t{printable(g.key[:12])}"
            for g in frame.containers[: settings.processes]
            if g.container is not None
        ]
    lines.append("-" * 60)
    return "\n".join(lines)


def live_table(frame: Frame, settings: Settings) -> RenderableType:
    """The same as rich tables, for a terminal."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    estimated = " [yellow](estimated)[/]" if frame.estimated else ""
    head = Text.from_markup(
        f"[bold]Host {_watts(frame.host_watts)}[/]{estimated}  from {escape(printable(frame.host_source))}, "
        f"CPU load {frame.cpu_load:.0%} of {frame.n_cpus} CPUs, "
        f"unattributed {_watts(frame.unattributed_watts)}{escape(_by(frame))}"
    )
    sockets = Table("Socket", "Package", "Domains", box=None, title="Sockets", title_justify="left")
    for socket in frame.sockets:
        domains = Text("  ".join(f"{printable(d.name)} {_watts(d.watts)}" for d in socket.domains))
        sockets.add_row(str(socket.id), _watts(socket.watts), domains)
    title = "Matching processes" if settings.regex_filter else f"Top {settings.processes} consumers"
    processes = Table("Power", "CPU", "PID", "Exe", "Cmdline", box=None, title=title, title_justify="left")
    for c in select_consumers(frame, settings.processes, settings.regex_filter):
        processes.add_row(
            _watts(c.watts),
            f"{c.cpu_share:.1%}",
            str(c.info.pid),
            Text(printable(c.info.name)),
            Text(printable(c.info.cmdline[:60])),
        )
    parts: list[RenderableType] = [head, sockets, processes]
    if settings.containers:
        containers = Table(
            "Power", "Runtime", "Container", box=None, title="Containers", title_justify="left"
        )
        for g in frame.containers[: settings.processes]:
            runtime = g.container.runtime or "-" if g.container else "-"
            containers.add_row(_watts(g.watts), Text(printable(runtime)), Text(printable(g.key[:12])))
        parts.append(containers)
    return Group(*parts)
