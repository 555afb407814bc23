"""`--naming kepler`: Kepler's families, labels and figures, from hand-made Frames and the real attribution."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from tests.support import frames
from tests.support.prometheus import all_samples, registry
from wattprobe.core.model import Container, CpuInfo, DomainPower, Frame, HostFacts, SocketPower, Workload
from wattprobe.sinks.kit import catalogue
from wattprobe.sinks.prometheus.families import FrameCollector
from wattprobe.sinks.prometheus.series import SeriesSettings

KEPLER = SeriesSettings(naming="kepler")
POD = "0b1c2d3e-0000-4000-8000-00000000000a"
APP, LONE = "a" * 64, "d" * 64
# Kepler's families (docs/user/metrics.md, internal/exporter/prometheus/collector/power_collector.go at
# 0.11) and their labels, less the GPU ones (no GPU is measured here).
NODE = {"zone", "path", "node_name"}
WORKLOAD = {"state", "zone", "node_name"}
FAMILIES = {
    "kepler_node_cpu_joules_total": NODE,
    "kepler_node_cpu_watts": NODE,
    "kepler_node_cpu_active_joules_total": NODE,
    "kepler_node_cpu_active_watts": NODE,
    "kepler_node_cpu_idle_joules_total": NODE,
    "kepler_node_cpu_idle_watts": NODE,
    "kepler_node_cpu_usage_ratio": {"node_name"},
    "kepler_node_cpu_info": {"processor", "vendor_id", "model_name", "physical_id", "core_id"},
    "kepler_process_cpu_joules_total": {"pid", "comm", "exe", "type", "container_id", "vm_id"} | WORKLOAD,
    "kepler_process_cpu_watts": {"pid", "comm", "exe", "type", "container_id", "vm_id"} | WORKLOAD,
    "kepler_process_cpu_seconds_total": {"pid", "comm", "exe", "type", "container_id", "vm_id", "node_name"},
    "kepler_container_cpu_joules_total": {"container_id", "container_name", "runtime", "pod_id"} | WORKLOAD,
    "kepler_container_cpu_watts": {"container_id", "container_name", "runtime", "pod_id"} | WORKLOAD,
    "kepler_container_cpu_seconds_total": {"container_id", "container_name", "runtime", "pod_id"}
    | {"state", "node_name"},
    "kepler_pod_cpu_joules_total": {"pod_id", "pod_name", "pod_namespace"} | WORKLOAD,
    "kepler_pod_cpu_watts": {"pod_id", "pod_name", "pod_namespace"} | WORKLOAD,
    "kepler_vm_cpu_joules_total": {"vm_id", "vm_name", "hypervisor"} | WORKLOAD,
    "kepler_vm_cpu_watts": {"vm_id", "vm_name", "hypervisor"} | WORKLOAD,
    "kepler_build_info": {"arch", "branch", "revision", "version", "goversion"},
}
CPUS = (CpuInfo(0, "GenuineIntel", "Xeon", 0, 0), CpuInfo(1, "GenuineIntel", "Xeon", 0, 1))


def host_frame(timestamp: float = frames.TIMESTAMP, *, app_w: float = 20.0, vm_w: float = 10.0) -> Frame:
    """100 W (psys) over 1 s, half the CPUs busy; package 80 W (core 50, dram 10); a pod's container, a
    Docker container, a VM and a plain process."""
    app = Container(APP, "cri-o", "kubernetes", POD)
    lone = Container(LONE, "docker", "docker")
    consumers = [
        frames.consumer(
            frames.process(10, exe="/app", cgroup=f"/kubepods/pod{POD}/crio-{APP}.scope", container=app),
            app_w,
        ),
        frames.consumer(frames.process(11, exe="/bin/sh", cgroup=f"/docker/{LONE}", container=lone), 4.0),
        frames.consumer(
            frames.process(12, argv=["/usr/bin/qemu-system-x86_64", "-name", "guest=win11"]), vm_w
        ),
        frames.consumer(frames.process(13, exe="/usr/bin/make"), 6.0),
    ]
    domains = (DomainPower("core", 50.0, 500.0, 0), DomainPower("dram", 10.0, 100.0, 1))
    return frames.frame(
        [c for c in consumers if c.watts > 0],
        host_watts=100.0,
        host_energy_j=1000.0,
        timestamp=timestamp,
        sockets=(SocketPower(0, 80.0, 800.0, domains),),
        cpu_load=0.5,
        containers=frames.containers([c for c in consumers if c.watts > 0]),
        host=HostFacts((0.0, 0.0, 0.0), 0, 0, 0, 0, 0, None, (), cpus=CPUS),
        workloads={
            APP: Workload("api", "api:2", (), "api-7d9f", "shop", POD),
            LONE: Workload("lonely_turing", "busybox"),
        },
        node_name="node-7",
    )


def test_every_kepler_family_with_its_labels_and_nothing_else():
    found = all_samples(registry(host_frame(), KEPLER))
    assert set(found) == set(FAMILIES)
    for name, series in found.items():
        assert series, name
        for labels, _ in series:
            assert set(labels) <= FAMILIES[name], (name, set(labels) - FAMILIES[name])
            if "node_name" in FAMILIES[name]:
                assert labels["node_name"] == "node-7"
            if "state" in FAMILIES[name]:
                assert labels["state"] == "running"
    assert {lab["zone"] for lab, _ in found["kepler_node_cpu_watts"]} == {"package", "core", "dram", "psys"}
    assert {lab["processor"] for lab, _ in found["kepler_node_cpu_info"]} == {"0", "1"}
    assert {f.name("kepler") for f in catalogue.families("kepler")} <= {
        n.removesuffix("_total") for n in FAMILIES
    }


def at(found: list[tuple[dict[str, str], float]], **labels: str) -> float:
    (value,) = [v for lab, v in found if all(lab.get(k) == want for k, want in labels.items())]
    return value


def test_figures_are_wattprobes_attribution_by_zone():
    f = host_frame()
    found = all_samples(registry(f, KEPLER))
    # Node: active = zone x CPU usage ratio, idle = the rest.
    assert at(found["kepler_node_cpu_watts"], zone="package") == 80.0
    assert at(found["kepler_node_cpu_active_watts"], zone="package") == 40.0
    assert at(found["kepler_node_cpu_idle_watts"], zone="core") == 25.0
    assert at(found["kepler_node_cpu_joules_total"], zone="dram") == 100.0  # the counter's own
    assert found["kepler_node_cpu_usage_ratio"][0][1] == 0.5
    # A workload: the zone's power x its CPU share; against psys (the host counter), wattprobe's figure.
    for zone, zone_w in (("psys", 100.0), ("package", 80.0), ("core", 50.0), ("dram", 10.0)):
        assert at(found["kepler_process_cpu_watts"], pid="10", zone=zone) == pytest.approx(zone_w * 0.2)
        assert at(found["kepler_vm_cpu_watts"], vm_name="win11", zone=zone) == pytest.approx(zone_w * 0.1)
    assert at(found["kepler_process_cpu_watts"], pid="10", zone="psys") == f.consumers[0].watts
    container = {
        "container_id": APP,
        "container_name": "api",
        "runtime": "crio",
        "pod_id": POD,
        "state": "running",
        "zone": "package",
        "node_name": "node-7",
    }
    assert (container, pytest.approx(16.0)) in found["kepler_container_cpu_watts"]
    pod = at(
        found["kepler_pod_cpu_watts"], pod_name="api-7d9f", pod_namespace="shop", pod_id=POD, zone="psys"
    )
    assert pod == pytest.approx(20.0)
    assert at(
        found["kepler_container_cpu_watts"], container_name="lonely_turing", zone="psys"
    ) == pytest.approx(4.0)
    assert {lab["pod_id"] for lab, _ in found["kepler_pod_cpu_watts"]} == {POD}  # a Docker container: no pod
    types = {
        lab["pid"]: (lab["type"], lab["container_id"], lab["vm_id"])
        for lab, _ in found["kepler_process_cpu_seconds_total"]
    }
    assert types == {
        "10": ("container", APP, ""),
        "11": ("container", LONE, ""),
        "12": ("vm", "", "win11"),
        "13": ("regular", "", ""),
    }
    assert at(found["kepler_process_cpu_seconds_total"], pid="10") == pytest.approx(0.2)  # 20 % of 1 s
    # sum over processes + idle-of-the-share = zone: the shares come from one attribution.
    total = sum(v for lab, v in found["kepler_process_cpu_watts"] if lab["zone"] == "psys")
    assert total == pytest.approx(f.host_watts - f.unattributed_watts)


def test_energy_counters_add_up_and_never_go_back_as_processes_come_and_go():
    shown: list[Frame] = []
    collector = FrameCollector(lambda: shown[-1], SeriesSettings(naming="kepler", max_top_consumers=1))
    pod_j, vm_j, app_j = [], [], []
    for i, (app_w, vm_w) in enumerate(((20.0, 10.0), (0.0, 30.0), (20.0, 0.0), (20.0, 10.0))):
        shown.append(host_frame(frames.TIMESTAMP + i, app_w=app_w, vm_w=vm_w))
        found = {
            s.name + repr(sorted(s.labels.items())): s.value for m in collector.collect() for s in m.samples
        }
        series = [(k, v) for k, v in found.items() if "zone', 'psys" in k]
        pod_j.append(sum(v for k, v in series if k.startswith("kepler_pod_cpu_joules_total")))
        vm_j.append(sum(v for k, v in series if k.startswith("kepler_vm_cpu_joules_total")))
        app_j.append(
            sum(
                v for k, v in series if k.startswith("kepler_process_cpu_joules_total") and "'pid', '10'" in k
            )
        )
    assert pod_j == pytest.approx([20.0, 20.0, 40.0, 60.0])  # idle in the second window: kept, not reset
    assert vm_j == pytest.approx([10.0, 40.0, 40.0, 50.0])
    # The top 1 process is the pod's, then the VM's, then the pod's again: its counter went on meanwhile.
    assert app_j == pytest.approx([20.0, 0.0, 40.0, 60.0])


def test_node_name_is_the_hosts_where_the_frame_has_none():
    f = host_frame()
    f = dataclasses.replace(f, node_name=None)
    found = all_samples(registry(f, KEPLER))
    assert {lab["node_name"] for lab, _ in found["kepler_node_cpu_watts"]} == {socket.gethostname()}
    labels = catalogue.Labels("kepler", node="given")
    assert labels.node_name(f) == "given"
