"""Figures under faults: the agent at short steps on a powercap tree rewritten in place while it reads.

A guest reading its host's tree through 9p or virtiofs can see `energy_uj` empty or holding its first
digits while the host rewrites it (truncate, then write in pieces): `PowercapTree(tear_pause_s=...)`
does exactly that every millisecond. The agent runs as a user would run it (`wattprobe --vm json` at
50 ms steps), many times, optionally with CPU burners competing for the two cores, and every
document is checked: a spike is a host power above 3 x the tree's, a hole a document at 0 W. A
second mode stalls the writer (it stops for a while, then catches up at once, as a hung exporter).

    python -m benchmarks.faults [RUNS]     # 20 runs of 5 s per case by default (about 6 minutes)

It prints a markdown table; tests/test_counters.py runs a short version on every test run.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchmarks.common import Result
from tests.support.faults import torn_tree_run
from tests.support.processes import burners


def bench(runs: int = 20, seconds: float = 5.0) -> Result:
    cases = [
        ("torn writes", 0, None),
        ("torn writes, 2 CPU burners", 2, None),
        ("torn writes, writer stalls 0.5 s every 1.5 s", 0, (1.5, 0.5)),
    ]
    rows = [
        ["case", "runs", "documents", "spikes > 3x", "documents at 0 W", "highest W", "tracebacks", "failed"]
    ]
    numbers: dict[str, float] = {}
    for name, n_burners, stall in cases:
        totals = {
            "documents": 0.0,
            "spikes": 0.0,
            "holes": 0.0,
            "max_w": 0.0,
            "traceback": 0.0,
            "failed": 0.0,
        }
        with burners(n_burners):
            for i in range(runs):
                with tempfile.TemporaryDirectory() as tmp:
                    run = torn_tree_run(Path(tmp) / f"tree{i}", seconds, stall)
                for key, value in run.items():
                    totals[key] = max(totals[key], value) if key == "max_w" else totals[key] + value
        rows.append(
            [
                name,
                str(runs),
                f"{totals['documents']:.0f}",
                f"{totals['spikes']:.0f}",
                f"{totals['holes']:.0f}",
                f"{totals['max_w']:.1f}",
                f"{totals['traceback']:.0f}",
                f"{totals['failed']:.0f}",
            ]
        )
        numbers |= {f"{name}: {key}": value for key, value in totals.items()}
    return Result(
        key="faults",
        title="Figures under faults (torn and stalled counters)",
        method=__doc__.split("\n\n", 1)[1].replace("\n", " ")
        + f" Each run: `wattprobe --vm json -t {seconds:g} -s 0 -n 50000000` on a 30 W tree.",
        tables=[rows],
        numbers=numbers,
    )


if __name__ == "__main__":
    print(bench(runs=int(sys.argv[1]) if len(sys.argv) > 1 else 20).markdown())
