"""Where each output of an agent writes, and the refusal at start of two outputs that write to one place.

Two outputs on one file write over each other (a JSON array that no longer parses), two on standard
output interleave, an output's directory inside another's is written by both, and two Prometheus
outputs cannot listen on one port. A file is known by what it is (device and inode: a link or another
spelling of its path is the same file) when it exists, else by its absolute path with links resolved;
standard output is the file it is, so `file = "/dev/stdout"` or a redirection to an output's file is
seen too. /dev/null takes any number of outputs.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass

from wattprobe.errors import UsageError
from wattprobe.pipeline.wiring import Output

STDOUT = "standard output"
WILDCARDS = ("", "::", "0.0.0.0")  # addresses that listen on every address (:: on IPv4 too)


@dataclass(frozen=True, slots=True)
class Place:
    """A file (`path` None: standard output), a directory, or a listening address and port."""

    kind: str  # "file", "directory" or "port"
    given: str  # the option as given, for the message: "file same.json", "output_root /srv/vms"
    path: str | None = None
    address: tuple[str, int] | None = None


def writes(output: Output) -> list[Place]:
    """The places an output writes to or listens on (a server it sends to is no place of its own)."""
    name, s = output.module.NAME, output.settings
    if name == "stdout":
        return [Place("file", STDOUT)]
    if name == "json":
        if s.file is None:
            return [Place("file", f"no file: {STDOUT}")]
        return [Place("file", f"file {s.file}", s.file)] if s.file else []  # "": its open says why not
    if name == "powerapi":  # as PowerApiSink opens them
        places = [Place("directory", f"csv {s.csv}", s.csv)] if s.csv else []
        if s.file == "-" or not (s.file or s.csv or s.socket):
            places.append(Place("file", f"file -: {STDOUT}" if s.file else f"no file: {STDOUT}"))
        elif s.file:
            places.append(Place("file", f"file {s.file}", s.file))
        return places
    if name == "qemu" and s.output_root:
        return [Place("directory", f"output_root {s.output_root}", s.output_root)]
    if name == "prometheus" and s.port:  # port 0: any free port
        return [Place("port", f"address {s.address} port {s.port}", address=(s.address, s.port))]
    return []


def refuse_collisions(outputs: Iterable[tuple[str, Output]], where: str) -> None:
    """UsageError naming both outputs and the place when two of `outputs` (label, output) write to
    one place; `where` (the file) starts the message."""
    placed = [(label, place) for label, output in outputs for place in writes(output)]
    for (label_a, a), (label_b, b) in itertools.combinations(placed, 2):
        if label_a == label_b:
            continue  # one output's own file and directory (powerapi -f and --csv)
        clash = _clash(a, b) or _clash(b, a)
        if clash is not None:
            raise UsageError(f"{where}: {label_a} ({a.given}) and {label_b} ({b.given}) {clash}")


def _clash(a: Place, b: Place) -> str | None:
    """How `a` and `b` collide and what to do about it, or None."""
    if a.kind == b.kind == "file":
        if _file(a.path) == _file(b.path) != _file(os.devnull):
            if a.path is None or b.path is None:
                return f"both write to {STDOUT}: only one output can, give the others a file"
            return f"both write to {_real(a.path)}: give each output its own file"
    elif a.kind == b.kind == "directory":
        ra, rb = _real(a.path), _real(b.path)
        if ra == rb or _file(a.path) == _file(b.path):
            return f"both write in {ra}: give each output its own directory"
        if _inside(ra, rb):
            return f"write in one tree, {rb} inside {ra}: give each output a directory outside the other's"
    elif a.kind == "directory" and b.kind == "file" and b.path is not None:
        ra, rb = _real(a.path), _real(b.path)
        if _inside(ra, rb):
            return f"write in one tree, {rb} inside {ra}: put the file outside that directory"
    elif a.kind == b.kind == "port" and a.address and b.address:
        (host_a, port_a), (host_b, port_b) = a.address, b.address
        if port_a == port_b and (host_a == host_b or host_a in WILDCARDS or host_b in WILDCARDS):
            return f"both listen on port {port_a}: give each output its own port"
    return None


def _file(path: str | None) -> tuple[object, ...]:
    """What a path names: its device and inode when it exists (standard output's when None), else its
    resolved absolute path."""
    try:
        info = os.fstat(1) if path is None else os.stat(path)
    except (OSError, ValueError):
        return ("path", STDOUT if path is None else _real(path))
    return ("inode", info.st_dev, info.st_ino)


def _real(path: str | None) -> str:
    return os.path.realpath(path or ".")


def _inside(folder: str, path: str) -> bool:
    """Whether the resolved `path` is below the resolved `folder`."""
    return path != folder and os.path.commonpath([folder, path]) == folder
