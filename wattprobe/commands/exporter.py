"""`wattprobe NAME [OPTIONS]` for every sink: Scaphandre's one-exporter commands, run on the runner."""

from __future__ import annotations

import argparse
import functools
from types import ModuleType

from wattprobe.config import settings
from wattprobe.pipeline import wiring
from wattprobe.sources import SourceSettings


def add_parser(
    sub: argparse._SubParsersAction, name: str, module: ModuleType, help: str | None = None
) -> None:
    parser = sub.add_parser(name, help=help or module.HELP, description=module.HELP)
    settings.add_options(parser, module.Cadence)
    settings.add_options(parser, module.Settings)
    parser.set_defaults(run=functools.partial(run, module))


def run(module: ModuleType, args: argparse.Namespace) -> int:
    cadence = settings.from_namespace(module.Cadence, args)
    output = wiring.Output(module, settings.from_namespace(module.Settings, args))
    sources = settings.from_namespace(SourceSettings, args)
    return wiring.run(sources, [output], step_s=cadence.step_s, timeout_s=cadence.timeout_s)
