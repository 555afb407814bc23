"""The top processes give a process its own time, not that of the children it reaped: the kernel adds
an exited child's time to its parent's, without saying which child; that time goes to an entry of its
own (processes that ended, reaped by the parent), so a `make` is not shown with its compilers' time."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest

from tests.support import frames
from tests.support.run import vm_tree, wattprobe_run
from wattprobe.commandenergy.meter import ENDED, Meter

S = 10**9


def test_a_member_keeps_its_own_time_and_its_reaped_childrens_goes_apart():
    make = frames.process(101, "make -j2", exe="/usr/bin/make")
    meter = Meter(100, sensor="powercap_rapl", estimated=False, step_s=1.0, root_counts=False)
    for i in range(2):
        reaper = dataclasses.replace(
            frames.consumer(make, 20.0, cpu_ns=S), exited_cpu_ns=S - S // 100, exited_watts=19.8
        )
        made = frames.frame([reaper], host_watts=60.0)
        meter.write(dataclasses.replace(made, scan_ns=(i * S, (i + 1) * S), trees={100: frozenset({101})}))
    tally = meter.tally()
    top = {p.cmdline: p for p in tally.top}
    assert top["make -j2"].cpu_seconds == pytest.approx(0.02) and top["make -j2"].pid == 101
    ended = top[ENDED.format(name="make", pid=101)]
    assert ended.cpu_seconds == pytest.approx(1.98) and ended.energy_j == pytest.approx(39.6)
    assert tally.energy_j == pytest.approx(40.0) and tally.cpu_seconds == pytest.approx(
        2.0
    )  # totals as before


def test_a_shell_is_not_given_the_time_of_the_children_it_ran(tmp_path):
    """A shell that runs six busy children one after another: measured by its process tree, the shell's
    own entry has its own few ms, not their seconds."""
    out = tmp_path / "run.json"
    burn = "import time\nwhile time.process_time() < 0.25: pass"
    loop = f'for i in 1 2 3 4 5 6; do {sys.executable} -S -c "$0"; done'
    with vm_tree(tmp_path / "tree") as tree:
        result = wattprobe_run(
            tree.root,
            "-o",
            str(out),
            "-s",
            "1",
            "--",
            "sh",
            "-c",
            loop,
            burn,
            global_args=("--cgroupfs-root", str(tmp_path / "no-cgroupfs")),
        )
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert doc["cpu_seconds"] >= 1.5
    top = doc["top_processes"]
    shell = [p for p in top if p["cmdline"].startswith("sh -c for i")]
    assert shell and shell[0]["cpu_seconds"] < 0.15, top
    by_shell = f" {shell[0]['pid']})"  # (..., reaped by sh PID), sh as its executable is named
    ended = [
        p for p in top if p["cmdline"].startswith("(processes that ended") and p["cmdline"].endswith(by_shell)
    ]
    assert ended and ended[0]["cpu_seconds"] > 0.5, top
    assert sum(p["cpu_seconds"] for p in top) == pytest.approx(doc["cpu_seconds"], rel=0.02)
