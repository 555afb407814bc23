"""`wattprobe stdout`: host, sockets and top consumers every step; a live table on a terminal."""

from __future__ import annotations

import argparse
import sys

from wattprobe.core.model import Frame
from wattprobe.errors import UsageError
from wattprobe.options import count, regex, seconds
from wattprobe.sinks import select_consumers

NAME = "stdout"
HELP = "print power to the terminal every step"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-t",
        "--timeout",
        type=seconds,
        default=10,
        help="stop after this many seconds (default 10; negative: run until stopped)",
    )
    parser.add_argument(
        "-s", "--step", type=seconds, default=2, help="seconds between measurements (default 2)"
    )
    parser.add_argument("-p", "--processes", type=count, default=5, help="top consumers to show (default 5)")
    parser.add_argument(
        "-r",
        "--regex-filter",
        type=regex,
        help="show processes whose exe or cmdline match, instead of the top ones",
    )
    parser.add_argument("--containers", action="store_true", help="show power per container too")


def run(args: argparse.Namespace) -> int:
    from wattprobe.core.sampler import open_sampler

    if args.step <= 0:
        raise UsageError(f"--step must be above 0 seconds, got {args.step:g}")
    sampler = open_sampler(args)
    frames = sampler.frames(args.step, None if args.timeout < 0 else args.timeout)
    try:
        if sys.stdout.isatty():
            _live(frames, args)
        else:
            for frame in frames:
                print(render_text(frame, args), flush=True)
    finally:
        sampler.close()
    return 0


def _watts(value: float) -> str:
    return f"{value:.2f} W" if value >= 0.1 or value == 0 else f"{value * 1000:.2f} mW"


def render_text(frame: Frame, args: argparse.Namespace) -> str:
    """Scaphandre's plain layout, plus where host power comes from and what is unattributed."""
    estimated = " (estimated)" if frame.estimated else ""
    lines = [
        f"Host:\t{_watts(frame.host_watts)}{estimated}\tfrom {frame.host_source}, "
        f"CPU load {frame.cpu_load:.0%} of {frame.n_cpus} CPUs"
    ]
    domain_names = sorted({d.name for s in frame.sockets for d in s.domains})
    if frame.sockets:
        lines.append("\tpackage\t" + "\t".join(domain_names))
    for socket in frame.sockets:
        by_name = {d.name: d.watts for d in socket.domains}
        cells = "\t".join(_watts(by_name[n]) if n in by_name else "-" for n in domain_names)
        lines.append(f"Socket{socket.id}\t{_watts(socket.watts)} |\t{cells}")
    consumers = select_consumers(frame, args.processes, args.regex_filter)
    title = "Consumers matching the filter" if args.regex_filter else f"Top {args.processes} consumers"
    lines += [f"{title}:", "Power\t\tPID\tExe"]
    lines += [f'{_watts(c.watts)}\t{c.info.pid}\t"{c.info.exe or c.info.comm}"' for c in consumers]
    lines.append(f"Unattributed (idle CPUs, exited processes, kernel):\t{_watts(frame.unattributed_watts)}")
    if args.containers:
        lines += ["Containers:", "Power\t\tRuntime\tId"]
        lines += [
            f"{_watts(g.watts)}\t{g.container.runtime or '-'}\t{g.key[:12]}"
            for g in frame.containers[: args.processes]
            if g.container is not None
        ]
    lines.append("-" * 60)
    return "\n".join(lines)


def _live(frames, args: argparse.Namespace) -> None:
    from rich.console import Group
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    def table(frame: Frame) -> Group:
        estimated = " [yellow](estimated)[/]" if frame.estimated else ""
        head = Text.from_markup(
            f"[bold]Host {_watts(frame.host_watts)}[/]{estimated}  from {frame.host_source}, "
            f"CPU load {frame.cpu_load:.0%} of {frame.n_cpus} CPUs, "
            f"unattributed {_watts(frame.unattributed_watts)}"
        )
        sockets = Table("Socket", "Package", "Domains", box=None, title="Sockets", title_justify="left")
        for socket in frame.sockets:
            domains = "  ".join(f"{d.name} {_watts(d.watts)}" for d in socket.domains)
            sockets.add_row(str(socket.id), _watts(socket.watts), domains)
        title = "Matching processes" if args.regex_filter else f"Top {args.processes} consumers"
        processes = Table(
            "Power", "CPU", "PID", "Exe", "Cmdline", box=None, title=title, title_justify="left"
        )
        for c in select_consumers(frame, args.processes, args.regex_filter):
            processes.add_row(
                _watts(c.watts), f"{c.cpu_share:.1%}", str(c.info.pid), c.info.name, c.info.cmdline[:60]
            )
        parts = [head, sockets, processes]
        if args.containers:
            containers = Table(
                "Power", "Runtime", "Container", box=None, title="Containers", title_justify="left"
            )
            for g in frame.containers[: args.processes]:
                containers.add_row(
                    _watts(g.watts), g.container.runtime or "-" if g.container else "-", g.key[:12]
                )
            parts.append(containers)
        return Group(*parts)

    with Live(Text("measuring the first step..."), auto_refresh=False) as live:
        for frame in frames:
            live.update(table(frame), refresh=True)
