"""Sinks: the last stage of the pipeline. Each renders immutable Frames somewhere people look.

A sink is a module, or a folder whose sink.py is that module (with the helpers it alone uses beside
it); what several sinks use is in kit/. The module declares its NAME and HELP, PULL = True if it
measures when asked (see `pulled`), `host_facts(settings)` if it writes the host's facts (see
`writes_host_facts`), its `Settings` (options, see `wattprobe.config.settings`), its
`Cadence` (the step and timeout flags of its Scaphandre-shaped command) and `create(settings,
context)`, which returns a `Sink`; one line in SINKS registers it. The runner
(`wattprobe.pipeline.runner`) drives the sampler and every sink; a sink has no loop, retry, queue or
option parsing of its own. A sink that talks to something that can be away is a `RemoteSink`: it
declares its `Remote` (see `remote`), and the pipeline sends what it renders off the tick. Sinks never
read /proc or /sys, and never import a source or the sampler.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol, TypeVar

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

T = TypeVar("T")


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


class Rejected(SinkError):
    """The far end refused these items for good (a malformed point): they are dropped, the sink goes on."""


@dataclass(frozen=True, slots=True)
class Remote:
    """How a remote sink's items are delivered: `to` names the far end in log lines; at most
    `capacity` items wait while it is away, the oldest dropped first (1: only the latest is worth
    sending, as for a live stream or a value that replaces the last); `batch` items at most per send."""

    to: str
    capacity: int
    batch: int = 1


class RemoteSink(Protocol[T]):
    """A sink that talks to something that can be away (a server, a socket). `render(frame)` runs on
    the tick and must be cheap: it turns the Frame into items (and may write local files); `send(items)`
    runs off the tick, from a bounded queue (`wattprobe.pipeline.delivery`), and raises Retry (may work
    later: sent again, with backoff), Rejected (never will: dropped) or Fatal. `remote` says how to queue
    them (None: nothing to send, the sink is written like any other). `write` does both at once."""

    name: str
    remote: Remote | None

    def render(self, frame: Frame) -> list[T]: ...

    def send(self, items: list[T]) -> None: ...

    def write(self, frame: Frame) -> None:
        self.send(self.render(frame))

    def close(self) -> None:
        """Let go of the connection, if any (after the last send); by default there is none."""
        return None


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


def writes_host_facts(module: ModuleType, settings: object) -> bool:
    """Whether the sink, so set, writes the host's load, memory, disks or CPUs (its module's
    `host_facts(settings)`; none: it does not), so that they are read only for those who write them.
    The one place it is read."""
    wants = getattr(module, "host_facts", None)
    return bool(wants(settings)) if wants is not None else False


def remote(sink: object) -> Remote | None:
    """How to deliver what `sink` renders when it is remote (its `remote`, see `RemoteSink`), else
    None. The one place "remote" is read."""
    policy = getattr(sink, "remote", None)
    return policy if isinstance(policy, Remote) else None


def module(name: str) -> ModuleType:
    """The module of the sink called `name` (or an alias); KeyError if there is none."""
    return importlib.import_module(SINKS[ALIASES.get(name, name)])
