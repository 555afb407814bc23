"""The agent as a user runs it, on a VM's powercap tree torn (or stalled) by its writer while it reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support import agents
from tests.support.powercap_tree import Key, PowercapTree

TREE_WATTS: dict[Key, float] = {
    (0, "package"): 30.0,
    (0, "core"): 20.0,
}  # a VM's tree, as the qemu exporter writes it


def torn_tree_run(root: Path, seconds: float, stall: tuple[float, float] | None = None) -> dict[str, float]:
    """`wattprobe --vm json` at 50 ms steps on a 30 W tree rewritten in place every ms (a reader can find
    a value empty or cut), optionally stalling; what its documents say."""
    tree = PowercapTree(root, TREE_WATTS, start_uj=1_500_000_000, max_uj=2**60, tear_pause_s=0.001)
    command = agents.command("--vm", "json", "-t", str(seconds), "-s", "0", "-n", "50000000")
    with tree.running(stall=stall):
        result = agents.run(
            command, env={**os.environ, "SCAPHANDRE_POWERCAP_PATH": str(root)}, timeout=seconds + 30
        )
    try:
        watts = [doc["host"]["consumption"] / 1e6 for doc in json.loads(result.stdout)]
    except (json.JSONDecodeError, KeyError, TypeError):
        watts = []
    return {
        "documents": len(watts),
        "spikes": sum(w > 3 * TREE_WATTS[(0, "package")] for w in watts),
        "holes": sum(w == 0 for w in watts),
        "max_w": max(watts, default=0.0),
        "traceback": float("Traceback" in result.stderr),
        "failed": float(result.returncode != 0),
    }
