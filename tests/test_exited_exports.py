"""What readers see of exited descendants and of unlisted consumers: the json document and Prometheus."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid

import pytest

from tests.powercap_tree import agent_command
from tests.test_attribution import Carry, frame_between, info, snapshot
from tests.test_prometheus_families import samples
from tests.workloads import shell_loop
from wattprobe.sinks.promfamilies import render
from wattprobe.sinks.promoptions import SeriesSettings

S = 1_000_000_000


def test_json_lists_the_workload_and_carries_the_rest_and_the_exited_part(powercap, tmp_path):
    marker = f"wpmark-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out.json"
    with powercap.running():
        agent = subprocess.Popen(
            agent_command(powercap.root, "json", "-s", "0.4", "--process-regex", marker, "-f", str(out)),
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            subprocess.run(shell_loop(2, 50, marker), check=True, stdout=subprocess.DEVNULL)
            written = out.read_text().count('"host"')
            deadline = time.monotonic() + 10  # the window it ended in, and one more
            while out.read_text().count('"host"') < written + 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(10) == 0, agent.stderr.read()
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
    infos = {1: info(1), 2: info(2)}
    s0 = snapshot(0, {1: S, 2: S}, exited={1: S // 2}, cpus=4)
    s1 = snapshot(1, {1: 2 * S, 2: S + S // 4}, exited={1: S // 2 + 3 * S // 4}, cpus=4)
    frame = frame_between(s0, s1, infos, Carry())
    found = samples(frame, SeriesSettings(naming=naming))
    series = found["wattprobe_process_exited_power_watts"]
    assert [(labels["pid"], value) for labels, value in series] == [("1", pytest.approx(50.0 / 4 * 0.75))]
    empty = render(None, SeriesSettings(naming=naming))
    assert "wattprobe_process_exited_power_watts" in {m.name for m in empty}  # the family is always there
