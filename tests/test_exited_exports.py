"""What readers see of exited descendants and of unlisted consumers: the json document and Prometheus."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from tests.support import agents
from tests.support.frames import frame_between, process, snapshot
from tests.support.prometheus import family_names, registry, samples
from tests.support.waiting import wait_for
from tests.support.workloads import shell_loop
from wattprobe.sinks.prometheus.series import SeriesSettings

S = 1_000_000_000


def test_json_lists_the_workload_and_carries_the_rest_and_the_exited_part(powercap, tmp_path):
    marker = f"wpmark-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out.json"
    with powercap.running():
        command = agents.on_tree(
            powercap.root, "json", "-s", "0.4", "--process-regex", marker, "-f", str(out)
        )
        agent = agents.start(command, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(out.exists, 20, "the agent to open its file (once its sensor works)", alive=agent)
            subprocess.run(shell_loop(2, 50, marker), check=True, stdout=subprocess.DEVNULL)
            written = out.read_text().count('"host"')
            wait_for(  # the window it ended in, and one more
                lambda: out.read_text().count('"host"') >= written + 2, 10, "two more documents", alive=agent
            )
        finally:
            stderr = agents.stop(agent)
        assert agent.returncode == 0, stderr
    documents = json.loads(out.read_text())
    for doc in documents:
        host = doc["host"]
        listed = sum(c["consumption"] for c in doc["consumers"])
        assert all(marker in c["cmdline"] for c in doc["consumers"])
        # Listed + the others + unattributed = host, for a reader too.
        assert listed + host["others_consumption"] + host["unattributed_consumption"] == pytest.approx(
            host["consumption"], rel=1e-9
        )
    assert any(doc["host"]["others_consumption"] > 0 for doc in documents)  # the agent itself, at least
    shells = [c for doc in documents for c in doc["consumers"] if c["cmdline"].startswith("bash")]
    assert any(c["exited_consumption"] > 0 for c in shells)
    assert all(0 <= c["exited_consumption"] <= c["consumption"] + 1e-6 for c in shells)


@pytest.mark.parametrize("naming", ["native", "scaphandre"])
def test_prometheus_has_the_exited_part_of_the_processes_that_have_one(naming):
    infos = {1: process(1), 2: process(2)}
    s0 = snapshot(0, {1: S, 2: S}, exited={1: S // 2}, cpus=4)
    s1 = snapshot(1, {1: 2 * S, 2: S + S // 4}, exited={1: S // 2 + 3 * S // 4}, cpus=4)
    frame = frame_between(s0, s1, infos)
    series = samples(registry(frame, SeriesSettings(naming=naming)), "wattprobe_process_exited_power_watts")
    assert [(labels["pid"], value) for labels, value in series] == [("1", pytest.approx(50.0 / 4 * 0.75))]
    empty = registry(None, SeriesSettings(naming=naming))
    assert "wattprobe_process_exited_power_watts" in family_names(empty)  # the family is always there
