"""A NameResolver that knows its names from the start (core.model's contract), and Frames named by it,
as the agent names them, for tests of what the outputs do with names."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

from wattprobe.core.model import Container, Frame, Workload


class KnownNames:
    """Names containers from a fixed table, by container id."""

    def __init__(self, known: Mapping[str, Workload]) -> None:
        self.known = dict(known)

    def names(self, containers: Iterable[Container]) -> Mapping[str, Workload]:
        return {c.id: self.known[c.id] for c in containers if c.id in self.known}

    def close(self) -> None:
        pass


def naming(resolver: KnownNames, node_name: str) -> Callable[[Frame | None], Frame | None]:
    """What names a Frame: its containers' names from `resolver`, and the node's name."""

    def named(frame: Frame | None) -> Frame | None:
        if frame is None:
            return None
        found = resolver.names(g.container for g in frame.containers if g.container is not None)
        return dataclasses.replace(frame, workloads=found, node_name=node_name)

    return named
