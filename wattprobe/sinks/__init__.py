"""Sinks: the last stage of the pipeline. Each renders immutable Frames somewhere people look.

A sink is a module, or a folder whose sink.py is that module (with the helpers it alone uses beside
it); what several sinks use is in kit/. The module declares its NAME and HELP, PULL = True if it
measures when asked (see `pulled`), its `Settings` (options, see `wattprobe.config.settings`), its
`Cadence` (the step and timeout flags of its Scaphandre-shaped command) and `create(settings,
context)`, which returns a `Sink`; one line in SINKS registers it. The runner
(`wattprobe.pipeline.runner`) drives the sampler and every sink; a sink has no loop, retry or option
parsing of its own. Sinks never read /proc or /sys, and never import a source or the sampler.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol

from wattprobe.core.model import Frame

# Command name -> module, in the order `wattprobe --help` lists them. Imported on use.
SINKS = {
    "stdout": "wattprobe.sinks.stdout",
    "json": "wattprobe.sinks.json",
    "powerapi": "wattprobe.sinks.powerapi.sink",
    "prometheus": "wattprobe.sinks.prometheus.sink",
    "prometheus-push": "wattprobe.sinks.prometheus.push",
    "riemann": "wattprobe.sinks.riemann.sink",
    "warp10": "wattprobe.sinks.warp10",
    "otlp": "wattprobe.sinks.otlp.sink",
    "qemu": "wattprobe.sinks.qemu.sink",
}
ALIASES = {"warpten": "warp10"}  # Scaphandre 1.0's spelling


class Sink(Protocol):
    """Renders Frames. write() may raise Retry (this write failed, the next may work) or Fatal (this
    sink cannot go on); any other exception is taken as Retry. close() flushes and lets go."""

    name: str

    def write(self, frame: Frame) -> None: ...

    def close(self) -> None: ...


class SinkError(Exception):
    """A sink's failure, said in one line."""


class Retry(SinkError):
    """This write failed, and a later one may work (a server down, a full disk freed later)."""


class Fatal(SinkError):
    """This sink cannot go on (the message says why and what to do); the others carry on."""


@dataclass(frozen=True, slots=True)
class Context:
    """What a sink may need from the agent that runs it."""

    hostname: str
    # For pull sinks: a Frame at most `min_interval` seconds old, measured on request (None: serve the
    # Frames the runner writes, because other sinks set the pace).
    fresh: Callable[[float], Frame | None] | None = None


def pulled(module: ModuleType) -> bool:
    """Whether the sink measures when asked (its module says PULL = True: prometheus), so that an agent
    whose every output is pulled needs no step of its own. The one place "pull" is read."""
    return bool(getattr(module, "PULL", False))


def module(name: str) -> ModuleType:
    """The module of the sink called `name` (or an alias); KeyError if there is none."""
    return importlib.import_module(SINKS[ALIASES.get(name, name)])
