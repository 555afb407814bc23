"""Names in tests: a NameResolver that knows its names from the start (core.model's contract), for tests
of what the outputs do with names (give it to a Sampler, which names its Frames as the agent's does), and
the documents of a real agent that asks its name sources."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.support import agents
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


def named_documents(
    out: Path, *sources: str, json_args: Iterable[str] = ()
) -> tuple[list[Any], subprocess.CompletedProcess[str]]:
    """An estimating agent asking the name sources `sources` (global options) writes its json, with the
    containers' fields, once a second for 5 s to `out`: its documents, and how it ran (it must succeed)."""
    argv = [
        "-s",
        "estimate",
        *sources,
        "json",
        "-t",
        "5",
        "-s",
        "1",
        "--containers",
        *json_args,
        "-f",
        str(out),
    ]
    result = agents.run(agents.command(*argv), timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text()), result
