"""Run wattprobe's overhead benchmarks and write their results into docs/performance.md.

    python benchmarks/run.py                 # every benchmark, full length (about 41 minutes)
    python benchmarks/run.py --quick         # shorter runs (about 6 minutes), soak of 30 s
    python benchmarks/run.py --only tick,accuracy
    python benchmarks/run.py --out /tmp/perf.md

Each benchmark replaces its own section of the output file (between `<!-- results:NAME -->` and
`<!-- /results:NAME -->`), stamped with the date, the mode and the load average, so a long one
(the 10-minute soak) can be run once and the others again without losing it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import accuracy, agent, host, idle, names, peers, scrape, tick
from benchmarks.common import Result, machine, markdown_table
from tests.support.paths import REPO

# name: (function, full-length arguments, --quick arguments)
BENCHMARKS: dict[str, tuple[Callable[..., Result], dict, dict]] = {
    "tick": (tick.bench, {}, {"repeats": 10, "psutil_repeats": 3, "long_repeats": 2}),
    "names": (names.bench, {"rounds": 60}, {"rounds": 30}),
    "scrape": (scrape.bench, {}, {"rounds": 2, "min_interval_s": 1.0}),
    "steady": (agent.bench_steady, {}, {"seconds": 15, "big_seconds": 8}),
    "soak": (agent.bench_soak, {}, {"seconds": 30}),
    "host": (host.bench, {}, {"seconds": 1}),
    "peers": (peers.bench, {}, {"seconds": 8}),
    "idle": (idle.bench, {}, {"rounds": 3, "seconds": 5.0}),
    "accuracy": (
        accuracy.bench,
        {},
        {"windows": 100, "thread_windows": 100, "loop_s": 6, "make_files": 100, "make_times": 1},
    ),
}
DEFAULT_OUT = str(REPO / "docs" / "performance.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs: a smoke of each, soak of 30 s")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help="markdown file to update (default docs/performance.md)"
    )
    args = parser.parse_args(argv)
    names = list(BENCHMARKS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    sections = {"machine": _machine_section()}
    # In each section's stamp: the sections of one file may come from runs on different machines.
    processor = machine()["cpu"]
    missed = []
    for name in names:
        function, full, quick = BENCHMARKS[name]
        print(f"running {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        result = function(**(quick if args.quick else full))
        took = time.monotonic() - started
        stamp = (
            f"_{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {'quick' if args.quick else 'full'} mode, "
            f"{took:.0f} s, on {processor}; load average {load_before:.2f} before, "
            f"{os.getloadavg()[0]:.2f} after._"
        )
        sections[name] = f"{stamp}\n\n{result.markdown()}"
        for budget in result.budgets:
            print(f"  {'ok    ' if budget.ok else 'MISSED'} {' | '.join(budget.row()[:3])}", file=sys.stderr)
            if not budget.ok:
                missed.append(budget.name)
        for note in result.notes:
            print(f"  note: {note}", file=sys.stderr)
    update(args.out, sections)
    print(f"wrote {args.out}" + (f"; budgets missed: {', '.join(missed)}" if missed else ""), file=sys.stderr)
    return 0


def _machine_section() -> str:
    rows = [["", ""], *([key, value] for key, value in machine().items())]
    return (
        "The machine of the latest run. Each section's stamp names the processor it ran on (a stamp\n"
        "without one predates that: the history of this file has the machine it ran on).\n\n"
        + markdown_table(rows)
        + "\n"
    )


def update(path: str, sections: dict[str, str]) -> None:
    """Replace each section's text between its markers (appending those the file lacks), then the summary."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Performance\n"
    for name, body in sections.items():
        text = _replace(text, name, body)
    text = _replace(text, "summary", summary(text))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _replace(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    match = re.search(re.escape(begin) + r".*?" + re.escape(end), text, re.DOTALL)
    if match:
        return text[: match.start()] + block + text[match.end() :]
    return text.rstrip() + "\n\n" + block + "\n"


def summary(text: str) -> str:
    """Every budget row of every recorded section, with when it was measured."""
    rows = [["budget", "measured", "target", "", "measured on"]]
    for match in re.finditer(r"<!-- results:(\w+) -->\n(.*?)<!-- /results:\1 -->", text, re.DOTALL):
        if match.group(1) == "summary":
            continue
        body = match.group(2)
        stamp = re.search(r"^_(\d{4}-\d\d-\d\d) [\d:]+ UTC, (\w+) mode", body, re.MULTILINE)
        when = f"{stamp.group(1)} ({stamp.group(2)})" if stamp else ""
        table = re.search(
            r"^\| budget \| measured \| target \|.*\n\|[-|]+\|\n((?:\|.*\n?)+)", body, re.MULTILINE
        )
        for line in table.group(1).strip().splitlines() if table else []:
            rows.append([*(cell.strip() for cell in line.strip().strip("|").split("|")), when])
    return markdown_table(rows) + "\n" if len(rows) > 1 else "No benchmark has been recorded yet.\n"


if __name__ == "__main__":
    sys.exit(main())
