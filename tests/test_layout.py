"""The layout's rules, read from the code's own imports (every import, lazy and type-only ones too).

The rooms, from the floor up: errors, config, retry; core (the model, the protocols its readers
implement, the counter judge, attribution, the sampler); sources; sinks; pipeline (wiring, runner);
commandenergy; api; commands and cli. An arrow may only go down.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support.paths import REPO
from wattprobe import sinks

PACKAGE = REPO / "wattprobe"
# Modules at the edge, which may import commands: the command line and the reference it generates.
EDGE = {"wattprobe.cli", "wattprobe.__main__", "wattprobe.docs_reference"}
# The tests of the benchmarks themselves: they import what they test.
BENCHMARK_TESTS = {"test_benchmarks_smoke.py", "test_run_benchmark.py"}


def _name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> Iterator[str]:
    """The modules `path` imports (for `from M import N`: M.N when N is a module, else M)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield full if _is_module(full) else node.module


def _graph(root: Path) -> dict[str, set[str]]:
    return {_name(path): set(_imports(path)) for path in root.rglob("*.py")}


def _room(module: str) -> str:
    """`wattprobe.X...` -> X (a package, or a top-level module)."""
    return module.split(".")[1] if module.count(".") else module


def _under(module: str, *rooms: str) -> bool:
    return any(module == room or module.startswith(f"{room}.") for room in rooms)


GRAPH = _graph(PACKAGE)


def test_the_graph_is_read() -> None:
    assert "wattprobe.core.sampler" in GRAPH["wattprobe.pipeline.wiring"]
    assert "wattprobe.sources.procfs" in GRAPH["wattprobe.pipeline.wiring"]


def test_core_imports_no_source_sink_or_command() -> None:
    wrong = {
        (module, target)
        for module, targets in GRAPH.items()
        if _under(module, "wattprobe.core")
        for target in targets
        if target.startswith("wattprobe") and not _under(target, "wattprobe.core", "wattprobe.errors")
    }
    assert not wrong


def test_sinks_import_no_source_sampler_pipeline_or_command() -> None:
    above = ("wattprobe.sources", "wattprobe.core.sampler", "wattprobe.pipeline", "wattprobe.commands")
    above += ("wattprobe.commandenergy", "wattprobe.api", "wattprobe.cli")
    wrong = {
        (module, target)
        for module, targets in GRAPH.items()
        if _under(module, "wattprobe.sinks")
        for target in targets
        if _under(target, *above)
    }
    assert not wrong


def test_a_sink_folder_keeps_its_helpers_and_shared_ones_are_in_kit() -> None:
    """A helper used by one sink sits in that sink's folder; what another sink folder, or anything
    outside sinks/, imports from a sink folder is a helper that belongs in sinks/kit."""
    folders = {p.name for p in (PACKAGE / "sinks").iterdir() if (p / "__init__.py").is_file()} - {"kit"}
    assert {"prometheus", "riemann", "qemu", "powerapi"} <= folders
    wrong = set()
    for module, targets in GRAPH.items():
        for target in targets:
            for folder in folders:
                inside = f"wattprobe.sinks.{folder}"
                if _under(target, inside) and not _under(module, inside):
                    wrong.add((module, target))
    assert not wrong
    for name, path in sinks.SINKS.items():
        parts = path.split(".")
        assert len(parts) == 3 or (len(parts) == 4 and parts[2] in folders), (name, path)


def test_the_library_imports_no_command() -> None:
    wrong = {
        (module, target)
        for module, targets in GRAPH.items()
        if not _under(module, "wattprobe.commands") and module not in EDGE
        for target in targets
        if _under(target, "wattprobe.commands")
    }
    assert not wrong


def test_no_circle_between_rooms() -> None:
    """The package itself (`wattprobe`: its version, and `measure` loaded on first use) is left out:
    modules import its __version__, and it stands above everything as the library's entry."""
    rooms: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        if module == "wattprobe":
            continue
        rooms.setdefault(_room(module), set()).update(
            _room(t) for t in targets if t.startswith("wattprobe.") and _room(t) != _room(module)
        )
    done: set[str] = set()

    def visit(room: str, path: tuple[str, ...]) -> None:
        assert room not in path, " -> ".join((*path, room))
        if room in done:
            return
        for target in sorted(rooms.get(room, ())):
            visit(target, (*path, room))
        done.add(room)

    for room in sorted(rooms):
        visit(room, ())


def test_tests_and_benchmarks_share_only_tests_support() -> None:
    wrong = set()
    for path in (REPO / "tests").glob("*.py"):
        for target in _imports(path):
            if _under(target, "tests") and not _under(target, "tests.support"):
                wrong.add((path.name, target))
            if _under(target, "benchmarks") and path.name not in BENCHMARK_TESTS:
                wrong.add((path.name, target))
    for path in (REPO / "tests" / "support").glob("*.py"):
        wrong |= {(path.name, t) for t in _imports(path) if _under(t, "benchmarks")}
    for path in (REPO / "benchmarks").glob("*.py"):
        wrong |= {
            (path.name, t) for t in _imports(path) if _under(t, "tests") and not _under(t, "tests.support")
        }
    assert not wrong
