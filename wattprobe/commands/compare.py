"""`wattprobe compare BASE.json NEW.json`: did a command's energy (CPU time, duration...) change between
two sets of runs, and does the change fail a gate?

Each file is one run's JSON (`wattprobe run -o`) or repeated runs' (`run --repeat N -o`: `runs` and
their `summary`). Per figure: both means, the change with its 95 % interval (Welch's: see
`commandenergy.stats`) and a verdict. The exit status is 1 only when a figure is significantly higher
and its change (the point estimate) is above `--fail-above`: the interval keeps noise from failing the
gate, the threshold keeps a small, real rise from failing it. It is 2 for bad input, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from typing import Any

from wattprobe.commandenergy import stats
from wattprobe.config import settings
from wattprobe.config.settings import option
from wattprobe.errors import UsageError

NAME = "compare"
HELP = (
    "compare two measurements of a command (wattprobe run -o files): each figure's change and its "
    "confidence interval; exit 1 on a significant rise above --fail-above"
)
DEFAULT_METRICS = ("energy_j", "cpu_seconds", "duration_s")


def percent(text: str) -> float:
    """A change in %, `5` or `5%`, >= 0."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a percentage >= 0 such as 5 or 5%, got {text!r}")
    return value


def metrics(text: str) -> list[str]:
    """Figure names, comma-separated, each one of stats.METRICS."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in stats.METRICS:
            raise argparse.ArgumentTypeError(f"unknown figure {name!r} (known: {', '.join(stats.METRICS)})")
    if not names:
        raise argparse.ArgumentTypeError(f"expected figure names (known: {', '.join(stats.METRICS)})")
    return names


@dataclass(frozen=True, slots=True)
class CompareSettings:
    fail_above: float | None = option(
        None,
        "--fail-above",
        parse=percent,
        metavar="PCT",
        help="exit 1 when a figure is significantly higher and its change is above PCT %% (5 or 5%%)",
    )
    format: str = option(
        "text",
        "--format",
        choices=("text", "markdown", "json"),
        help="text (aligned columns), markdown (a table, for a CI job summary) or json (default text)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE.json", help="the reference: a run's or repeated runs' JSON")
    parser.add_argument("new", metavar="NEW.json", help="the runs compared with it")
    # Repeatable, which a settings option cannot be: a plain argument, rendered in the reference as well.
    parser.add_argument(
        "--metric",
        dest="metrics",
        action="extend",
        type=metrics,
        metavar="M",
        help=f"the figures to compare, comma-separated; repeatable (default {','.join(DEFAULT_METRICS)}; "
        f"known: {', '.join(stats.METRICS)})",
    )
    settings.add_options(parser, CompareSettings)


@dataclass(frozen=True, slots=True)
class Runs:
    """One file's runs: their JSON documents, as read."""

    path: str
    runs: list[dict[str, Any]]

    @property
    def sensors(self) -> list[str]:
        return sorted({str(run["sensor"]) for run in self.runs if run.get("sensor")})

    @property
    def estimated(self) -> bool:
        return any(run.get("estimated") is True for run in self.runs)

    def summary(self, metric: str) -> stats.Summary:
        try:
            values = stats.values_of(self.runs, metric)
        except ValueError as error:
            raise UsageError(f"{self.path}: {error}") from None
        if not values:
            present = [m for m in stats.METRICS if any(run.get(m) is not None for run in self.runs)]
            raise UsageError(
                f"{self.path}: no run has a value for {metric} (it has: {', '.join(present) or 'none'}); "
                "choose others with --metric"
            )
        return stats.summarize(values)


def load(path: str) -> Runs:
    """A file's runs; a UsageError (one line) when it cannot be read or is not a run's JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as error:
        raise UsageError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise UsageError(
            f"{path}: not JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    what = "expected the JSON of `wattprobe run -o` (one run, or repeated runs with 'runs')"
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: {what}, got a JSON {type(doc).__name__}")
    version = doc.get("schema_version", stats.SCHEMA_VERSION)  # a run's JSON had none before version 1
    if isinstance(version, bool) or not isinstance(version, int):
        raise UsageError(f"{path}: schema_version is {settings.shown(version)}, not a whole number")
    if version > stats.SCHEMA_VERSION:
        raise UsageError(
            f"{path}: schema_version {version} is newer than this wattprobe reads "
            f"({stats.SCHEMA_VERSION}): upgrade wattprobe"
        )
    if "runs" not in doc:
        if not any(metric in doc for metric in stats.METRICS):
            raise UsageError(f"{path}: {what}; it has neither 'runs' nor 'energy_j'")
        return Runs(path, [doc])
    runs = doc["runs"]
    if not isinstance(runs, list) or not runs:
        raise UsageError(f"{path}: 'runs' must be a non-empty list of runs, got {settings.shown(runs)}")
    for number, run in enumerate(runs, 1):
        if not isinstance(run, dict):
            raise UsageError(f"{path}: run {number} is a JSON {type(run).__name__}, not a run's object")
    return Runs(path, runs)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The comparison of every figure asked, the gate's result and what the reader must know."""

    base: Runs
    new: Runs
    fail_above: float | None
    changes: dict[str, stats.Comparison]
    failing: list[str]  # the figures that fail the gate
    notes: list[str]


def evaluate(base: Runs, new: Runs, names: list[str], fail_above: float | None) -> Outcome:
    changes = {name: stats.compare(base.summary(name), new.summary(name)) for name in names}
    failing = [name for name, change in changes.items() if _fails(change, fail_above)]
    return Outcome(base, new, fail_above, changes, failing, _notes(base, new, changes))


def _fails(change: stats.Comparison, fail_above: float | None) -> bool:
    """Significantly higher, and by more than `fail_above` % (a rise from 0 is above any threshold)."""
    if fail_above is None or change.verdict != stats.HIGHER:
        return False
    return change.change_pct is None or change.change_pct > fail_above


def _notes(base: Runs, new: Runs, changes: dict[str, stats.Comparison]) -> list[str]:
    notes = []
    estimated = [runs.path for runs in (base, new) if runs.estimated]
    if estimated:
        notes.append(
            f"{' and '.join(estimated)} {'hold' if len(estimated) > 1 else 'holds'} estimated figures: an "
            "estimated energy is the host's estimated power shared by CPU time, so comparing it compares "
            "CPU-time shares (compare cpu_seconds too)"
        )
    if base.sensors and new.sensors and base.sensors != new.sensors:
        notes.append(
            f"the sensors differ ({', '.join(base.sensors)} against {', '.join(new.sensors)}): "
            "their energies are not comparable"
        )
    if any(change.verdict == stats.TOO_FEW for change in changes.values()):
        notes.append("an interval needs at least 2 runs in each file (wattprobe run --repeat N)")
    return notes


def run(args: argparse.Namespace) -> int:
    options = settings.from_namespace(CompareSettings, args)
    names = list(dict.fromkeys(args.metrics or DEFAULT_METRICS))
    outcome = evaluate(load(args.base), load(args.new), names, options.fail_above)
    sys.stdout.write(FORMATS[options.format](outcome))
    sys.stdout.flush()
    for name in outcome.failing:
        change = outcome.changes[name]
        print(
            f"wattprobe: compare: {name} is higher by {_change(change)}, above {outcome.fail_above:g} %",
            file=sys.stderr,
        )
    return 1 if outcome.failing else 0


def text(outcome: Outcome) -> str:
    """Aligned columns, one figure a line, never wrapped; then the notes and the gate's result."""
    header = ("figure", "base", "new", "change", "verdict")
    rows = [header, *(_row(outcome, name, change) for name, change in outcome.changes.items())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        f"base: {outcome.base.path} ({_count(outcome.base)}); new: {outcome.new.path} ({_count(outcome.new)})",
        *(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ),
    ]
    lines += [f"note: {note}" for note in outcome.notes]
    lines += _gate(outcome)
    return "\n".join(lines) + "\n"


def markdown(outcome: Outcome) -> str:
    """A table for a CI job summary ($GITHUB_STEP_SUMMARY), then the notes and the gate's result."""
    lines = [
        "### wattprobe compare",
        "",
        f"Base: `{_md(outcome.base.path)}` ({_count(outcome.base)}); "
        f"new: `{_md(outcome.new.path)}` ({_count(outcome.new)}). Means ± their 95 % interval; "
        "the change in % of the base mean, with its 95 % interval (Welch).",
        "",
        "| figure | base | new | change | verdict |",
        "|---|---:|---:|---:|---|",
        *(
            "| " + " | ".join(_md(cell) for cell in _row(outcome, name, change)) + " |"
            for name, change in outcome.changes.items()
        ),
    ]
    if outcome.notes or outcome.fail_above is not None:
        lines.append("")
    lines += [f"- {_md(note)}" for note in outcome.notes]
    lines += [f"- **{_md(line)}**" if outcome.failing else f"- {_md(line)}" for line in _gate(outcome)]
    return "\n".join(lines) + "\n"


def as_json(outcome: Outcome) -> str:
    doc = {
        "schema_version": stats.SCHEMA_VERSION,
        "base": _side(outcome.base),
        "new": _side(outcome.new),
        "fail_above_pct": outcome.fail_above,
        "metrics": {
            name: {**change.to_json(), "unit": stats.UNITS[name], "fails": name in outcome.failing}
            for name, change in outcome.changes.items()
        },
        "failed": bool(outcome.failing),
        "notes": outcome.notes,
    }
    return json.dumps(doc, indent=2) + "\n"


FORMATS = {"text": text, "markdown": markdown, "json": as_json}


def _side(runs: Runs) -> dict[str, Any]:
    return {"path": runs.path, "runs": len(runs.runs), "estimated": runs.estimated, "sensors": runs.sensors}


def _row(outcome: Outcome, name: str, change: stats.Comparison) -> tuple[str, str, str, str, str]:
    unit = stats.UNITS[name]
    cells = []
    for summary, runs in ((change.base, outcome.base), (change.new, outcome.new)):
        shown = _mean(summary, unit)
        cells.append(shown if summary.n == len(runs.runs) else f"{shown} (n={summary.n})")
    return (name, cells[0], cells[1], _change(change), change.verdict)


def _mean(summary: stats.Summary, unit: str) -> str:
    """`12.35 ± 0.21 J`: the mean to the half-width's second significant digit."""
    if summary.ci95 is None:
        return f"{summary.mean:.4g} {unit}"
    half = (summary.ci95[1] - summary.ci95[0]) / 2
    if half <= 0:
        return f"{summary.mean:.4g} ± 0 {unit}"
    decimals = max(0, 1 - math.floor(math.log10(half)))
    return f"{summary.mean:.{decimals}f} ± {half:.{decimals}f} {unit}"


def _change(change: stats.Comparison) -> str:
    """`+98.5 % [+90.1, +106.9]`, or the difference in the figure's unit when the base mean is 0."""
    if change.change_pct is None:
        shown = f"{change.difference:+.4g} (base 0)"
        return shown if change.ci95 is None else f"{shown} [{change.ci95[0]:+.4g}, {change.ci95[1]:+.4g}]"
    shown = f"{change.change_pct:+.1f} %"
    ci = change.change_ci95_pct
    return shown if ci is None else f"{shown} [{ci[0]:+.1f}, {ci[1]:+.1f}]"


def _count(runs: Runs) -> str:
    return f"{len(runs.runs)} run{'s' if len(runs.runs) != 1 else ''}"


def _gate(outcome: Outcome) -> list[str]:
    if outcome.fail_above is None:
        return []
    if outcome.failing:
        return [
            f"failed: {', '.join(outcome.failing)} significantly higher by more than {outcome.fail_above:g} %"
        ]
    unjudged = [name for name, change in outcome.changes.items() if change.verdict == stats.TOO_FEW]
    if unjudged:
        return [f"passed, but not judged: {', '.join(unjudged)} (not enough runs for an interval)"]
    return [f"passed: no figure significantly higher by more than {outcome.fail_above:g} %"]


def _md(text: str) -> str:
    """Text safe in a Markdown table cell or a code span: no pipe, no backtick, one line."""
    return " ".join(text.replace("|", "\\|").replace("`", "'").split())
