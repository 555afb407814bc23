"""What the tests of `wattprobe.measure()` and the pytest plugin share: a program that measures, run in
a process of its own (its children only its own), and the JSON line it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

from tests.support.paths import REPO
from tests.support.powercap_tree import PowercapTree

__all__ = ["PRELUDE", "measured"]

# What every such program starts with: `burn(seconds)` of CPU in the calling thread, and `figures(m)`,
# which prints a measurement's figures as one JSON line.
PRELUDE = """
import json, os, subprocess, sys, threading, time
import wattprobe

def burn(seconds):
    start = time.thread_time()
    end = start + seconds
    while time.thread_time() < end:
        pass
    return time.thread_time() - start

def figures(m, **more):
    names = ("energy_j", "host_energy_j", "duration_s", "cpu_seconds", "carbon_g", "host_carbon_g",
             "estimated", "sensor", "overhead_cpu_s", "error")
    out = {name: getattr(m, name) for name in names}
    out["n_cpus"] = m.result.tally.n_cpus if m.result else None
    out["repr"] = repr(m)
    print(json.dumps({**out, **more}))
"""


def measured(tree: PowercapTree, code: str, *, timeout: float = 60) -> dict[str, Any]:
    """Run `code` (after PRELUDE) in a process of its own reading `tree` (with `vm=True`); the JSON
    line it prints last."""
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "SCAPHANDRE_POWERCAP_PATH": str(tree.root)},
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out
