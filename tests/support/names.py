"""A NameResolver that knows its names from the start (core.model's contract), for tests of what the
outputs do with names: give it to a Sampler, which names its Frames as the agent's does."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from wattprobe.core.model import Container, Workload


class KnownNames:
    """Names containers from a fixed table, by container id, on the Kubernetes node `node_name`."""

    def __init__(self, known: Mapping[str, Workload], node_name: str | None = None) -> None:
        self.known = dict(known)
        self.node_name = node_name

    def names(self, containers: Iterable[Container]) -> Mapping[str, Workload]:
        return {c.id: self.known[c.id] for c in containers if c.id in self.known}

    def close(self) -> None:
        pass
