"""`wattprobe prometheus-push` against a real Pushgateway, which is down at first."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.support import agents
from tests.support.net import free_port, http_get
from tests.support.powercap_tree import PowercapTree
from tests.support.prometheus import binary
from tests.support.waiting import wait_for
from wattprobe.sinks.prometheus.push import group_url

FAMILIES = (
    "wattprobe_host_power_watts",
    "wattprobe_host_energy_joules_total",
    "wattprobe_socket_power_watts",
    "wattprobe_domain_power_watts",
    "wattprobe_process_power_watts",
    "wattprobe_exe_power_watts",
    "wattprobe_sensor_info",
    "wattprobe_self_cpu_seconds_total",
)
SCAPH_FAMILIES = (
    "scaph_host_power_microwatts",
    "scaph_host_energy_microjoules",
    "scaph_socket_power_microwatts",
    "scaph_process_power_consumption_microwatts",
    "scaph_self_version",
)


def samples(text: str, name: str, job: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{") and f'job="{job}"' in line]


def test_push_survives_a_gateway_that_is_down_then_delivers(tmp_path: Path):
    gateway = binary("prometheus-pushgateway")
    tree = PowercapTree(tmp_path / "powercap")
    port = free_port()
    logs = {job: tmp_path / f"{job}.log" for job in ("native", "scaph")}
    push = ["prometheus-push", "-H", "127.0.0.1", "-p", str(port), "-s", "0.5"]
    with (
        tree.running(),
        agents.running(
            agents.on_tree(tree.root, *push, "-j", "native"), stderr=logs["native"].open("w")
        ) as native,
        agents.running(
            agents.on_tree(tree.root, *push, "-j", "scaph", "--naming", "scaphandre"),
            stderr=logs["scaph"].open("w"),
        ) as scaph,
    ):
        for log in logs.values():
            wait_for(lambda log=log: "retrying in" in log.read_text(), 10, "a failed push to be logged")
        assert native.poll() is None and scaph.poll() is None  # still running

        # Debian's build persists to /var/lib/prometheus by default: keep this one in memory.
        command = [
            gateway,
            f"--web.listen-address=127.0.0.1:{port}",
            "--persistence.file=",
            "--log.level=warn",
        ]
        with agents.running(command, stdout=(tmp_path / "gateway.log").open("w"), stderr=subprocess.STDOUT):
            url = f"http://127.0.0.1:{port}/metrics"

            def pushed() -> str | None:
                status, _, body = http_get(url)
                text = body.decode()
                both = samples(text, "wattprobe_host_power_watts", "native") and samples(
                    text, "scaph_host_power_microwatts", "scaph"
                )
                return text if status == 200 and both else None

            text = wait_for(pushed, 15, "both pushes to reach the gateway")
            for log in logs.values():
                wait_for(lambda log=log: "works again" in log.read_text(), 5, "the recovery to be logged")

    instance = f'instance="{socket.gethostname()}"'
    for name in FAMILIES:
        assert samples(text, name, "native"), name
    for name in SCAPH_FAMILIES:
        assert samples(text, name, "scaph"), name
    (host,) = samples(text, "wattprobe_host_power_watts", "native")
    assert instance in host
    # The tree's writer is another process, late by some ms on a busy machine: a loose bound.
    assert float(host.rsplit(" ", 1)[1]) == pytest.approx(60.0, rel=0.15)
    (scaph_host,) = samples(text, "scaph_host_power_microwatts", "scaph")
    assert float(scaph_host.rsplit(" ", 1)[1]) == pytest.approx(60e6, rel=0.15)
    # As Scaphandre pushes them, every series carries the host's name (the native ones need not).
    hostname = f'hostname="{socket.gethostname()}"'
    assert hostname in scaph_host and hostname not in host
    assert "Traceback" not in logs["native"].read_text()


def test_group_url():
    assert group_url("http", "gw", 9091, "metrics", "wattprobe", "node1") == (
        "http://gw:9091/metrics/job/wattprobe/instance/node1"
    )
    assert group_url("https", "::1", 9091, "/prefix/metrics/", "a b", "host/x") == (
        "https://[::1]:9091/prefix/metrics/job/a%20b/instance@base64/aG9zdC94"
    )
    assert group_url("http", "gw", 1, "metrics", "j", "").endswith("/instance@base64/=")
    assert group_url("http", "gw", 1, "", "j", "i") == "http://gw:1/job/j/instance/i"


def test_bad_step_is_one_clear_line(tmp_path: Path):
    tree = PowercapTree(tmp_path / "powercap")
    result = agents.run(agents.on_tree(tree.root, "prometheus-push", "-s", "0"), timeout=20)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "wattprobe: error: the step must be above 0 seconds and at most 86400 (a day), got 0"
    )
    assert len(result.stderr.strip().splitlines()) == 1
