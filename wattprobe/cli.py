"""Command line: wattprobe [GLOBAL OPTIONS] COMMAND [OPTIONS].

Every sink is a command (`wattprobe.commands.exporter`); the other commands are tools, each a module
with NAME, HELP, add_arguments(parser) and run(args) -> int. Heavy imports stay inside run() and the
sinks' constructors so that start-up and `--help` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from typing import NoReturn

from wattprobe import __version__, sinks
from wattprobe.commands import exporter
from wattprobe.config import settings
from wattprobe.errors import WattprobeError
from wattprobe.sources import SourceSettings

# Commands that are tools rather than outputs of the pipeline.
TOOLS = (
    "wattprobe.commands.agent",
    "wattprobe.commands.calibrate",
    "wattprobe.commands.compare",
    "wattprobe.commands.powerapi_validate",
    "wattprobe.commands.powerspy2",
    "wattprobe.commands.powerspy2_emulator",
    "wattprobe.commands.run",
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line that says where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wattprobe",
        description="Measure host power and split it among processes, containers and VMs.",
    )
    parser.add_argument("--version", action="version", version=f"wattprobe {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logs on stderr (-vv: debug)")
    parser.add_argument("--no-header", action="store_true", help="accepted for Scaphandre compatibility")
    settings.add_options(parser, SourceSettings)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name in sinks.SINKS:
        exporter.add_parser(sub, name, sinks.module(name))
    for alias, name in sinks.ALIASES.items():
        exporter.add_parser(sub, alias, sinks.module(name), help=f"the same as {name}")
    for module_name in TOOLS:
        module = importlib.import_module(module_name)
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def _stop(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop)
    args = build_parser().parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="wattprobe: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return args.run(args) or 0
    except WattprobeError as error:
        print(f"wattprobe: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `wattprobe json | head`: the reader left, not an error
        sys.stderr.close()
        return 0
