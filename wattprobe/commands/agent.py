"""`wattprobe agent -c FILE.toml`: one measurement, any number of outputs, set in a TOML file.

    step = 5                 # seconds between measurements (default 2)
    # timeout = 3600         # stop after this many seconds (default: never)

    [sensor]                 # the global options: name (= --sensor), vm, powercap_root, tdp, ...
    name = "auto"            # (over those given on the command line before `agent`)

    [outputs.prometheus]     # one table per output, named as its command; keys are its long
    port = 9100              # options with - as _ (port, output_root, write_token, ...)

    [outputs.qemu]
    output_root = "/var/lib/libvirt/scaphandre"

`[[outputs.json]]` (an array of tables) runs that output more than once. Every key is checked, and a
wrong one is one line that names the file, the table and the key.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from dataclasses import dataclass
from typing import Any

from wattprobe import sinks
from wattprobe.commands import places
from wattprobe.config import settings
from wattprobe.errors import UsageError, WattprobeError
from wattprobe.pipeline import wiring
from wattprobe.sinks.kit import options
from wattprobe.sources import SourceSettings

NAME = "agent"
HELP = "run any number of outputs from one measurement, as a TOML file sets them"


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """The top-level keys of the file."""

    step: float = options.step(2.0, whole=True, shown=False)
    timeout: float | None = options.timeout()

    def __post_init__(self) -> None:
        options.check_step(self.step)


@dataclass(frozen=True, slots=True)
class Config:
    agent: AgentSettings
    sources: SourceSettings
    outputs: list[wiring.Output]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", required=True, metavar="FILE.toml", help="the agent's configuration"
    )


def run(args: argparse.Namespace) -> int:
    config = load(args.config, settings.from_namespace(SourceSettings, args))
    return wiring.run(
        config.sources, config.outputs, step_s=config.agent.step, timeout_s=config.agent.timeout
    )


def load(path: str, sources: SourceSettings | None = None) -> Config:
    """The configuration in the file at `path`; UsageError (or WattprobeError) in one line if it is wrong.

    The `[sensor]` table sets what it names over `sources` (the global options of the command line).
    """
    try:
        with open(path, "rb") as f:
            document = parse(f.read(), path)
    except OSError as error:
        raise WattprobeError(f"cannot read {path}: {error.strerror}") from None
    top = {key: value for key, value in document.items() if key not in ("sensor", "outputs")}
    agent = settings.from_table(AgentSettings, top, path)
    sensor = _table(document, "sensor", path)
    sources = settings.from_table(
        SourceSettings, sensor, f"{path} [sensor]", base=sources or SourceSettings()
    )
    outputs: list[tuple[str, wiring.Output]] = []  # each with its table, for messages
    for name, given in _table(document, "outputs", path).items():
        table_name = f"outputs.{settings.shown_key(name)}"
        where = f"{path} [{table_name}]"
        try:
            module = sinks.module(name)
        except KeyError:
            known = ", ".join(sinks.SINKS)
            raise UsageError(f"{path}: unknown output [{table_name}] (known: {known})") from None
        tables = given if isinstance(given, list) else [given]
        for number, table in enumerate(tables, 1):
            if not isinstance(table, dict):
                raise UsageError(f"{where}: expected a table of options, got {settings.shown(table)}")
            label = f"[[{table_name}]] #{number}" if isinstance(given, list) else f"[{table_name}]"
            outputs.append((label, wiring.Output(module, _output_settings(module, table, where))))
    if not outputs:
        raise UsageError(f"{path}: no output: add a table such as [outputs.stdout] or [outputs.prometheus]")
    places.refuse_collisions(outputs, path)
    return Config(agent, sources, [output for _, output in outputs])


def parse(data: bytes, path: str) -> dict[str, Any]:
    """The TOML document in `data`; UsageError in one line when it is not one."""
    try:
        text = data.decode()
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UsageError(
            f"{path}: line {line}: byte {data[error.start]:#04x} is not UTF-8: a TOML file is UTF-8 text"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from None
    except RecursionError:
        raise UsageError(f"{path}: arrays or tables nested too deep to read") from None
    except ValueError:  # a number of more than 4300 digits, which Python will not convert
        raise UsageError(f"{path}: a number too long to read") from None


def _table(document: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    table = document.get(key, {})
    if not isinstance(table, dict):
        raise UsageError(f"{path}: {key} must be a table ([{key}]), got {settings.shown(table)}")
    return table


def _output_settings(module: Any, table: dict[str, Any], where: str) -> Any:
    cadence = {f.name for f in dataclasses.fields(module.Cadence)}
    for key in table:
        if key in cadence:
            raise UsageError(
                f"{where}: {key}: the agent measures for every output at once: set {key} at the top of the file"
            )
    return settings.from_table(module.Settings, table, where)
