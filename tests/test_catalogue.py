"""One catalogue: one Frame through every exporter gives the catalogue's names, labels and units."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re

import pytest

from tests.support import frames
from tests.support.prometheus import all_samples, registry
from wattprobe import sinks
from wattprobe.core.model import (
    Container,
    CpuInfo,
    Disk,
    DiskIo,
    DomainPower,
    Frame,
    HostFacts,
    MachineCpu,
    SocketPower,
    Workload,
)
from wattprobe.sinks.json import Settings as JsonSettings
from wattprobe.sinks.json import document
from wattprobe.sinks.kit import catalogue
from wattprobe.sinks.kit.points import frame_points
from wattprobe.sinks.prometheus.families import FrameCollector
from wattprobe.sinks.prometheus.series import SeriesSettings
from wattprobe.sinks.riemann.sink import event
from wattprobe.sinks.warp10 import gts_line

# Scaphandre 1.0's families (src/exporters/mod.rs and src/sensors/mod.rs), less the MMIO counters
# (wattprobe reads each RAPL counter once) and the internal buffer statistics (it keeps no buffers).
SCAPHANDRE_FAMILIES = {
    "scaph_self_version",
    "scaph_self_cpu_usage_percent",
    "scaph_self_memory_bytes",
    "scaph_self_memory_virtual_bytes",
    "scaph_self_topo_procs_nb",
    "scaph_host_energy_microjoules",
    "scaph_host_power_microwatts",
    "scaph_host_load_avg_one",
    "scaph_host_load_avg_five",
    "scaph_host_load_avg_fifteen",
    "scaph_host_cpu_frequency",
    "scaph_host_disk_total_bytes",
    "scaph_host_disk_available_bytes",
    "scaph_host_memory_total_bytes",
    "scaph_host_memory_available_bytes",
    "scaph_host_memory_free_bytes",
    "scaph_host_swap_free_bytes",
    "scaph_host_swap_total_bytes",
    "scaph_socket_energy_microjoules",
    "scaph_socket_power_microwatts",
    "scaph_domain_energy_microjoules",
    "scaph_domain_power_microwatts",
    "scaph_forks_since_boot_total",
    "scaph_processes_running_current",
    "scaph_processes_blocked_current",
    "scaph_context_switches_total",
    "scaph_process_power_consumption_microwatts",
    "scaph_process_cpu_usage_percentage",
    "scaph_process_memory_bytes",
    "scaph_process_memory_virtual_bytes",
    "scaph_process_disk_write_bytes",
    "scaph_process_disk_read_bytes",
    "scaph_process_disk_total_write_bytes",
    "scaph_process_disk_total_read_bytes",
}
LEFT_OUT = {
    "scaph_socket_rapl_mmio_energy_microjoules",
    "scaph_domain_rapl_mmio_energy_microjoules",
    "scaph_self_topo_stats_nb",
    "scaph_self_topo_records_nb",
    "scaph_self_socket_stats_nb",
    "scaph_self_socket_records_nb",
    "scaph_self_domain_records_nb",
}
HOST = HostFacts(
    load_avg=(0.5, 0.75, 1.25),
    memory_total_bytes=16 << 30,
    memory_available_bytes=8 << 30,
    memory_free_bytes=4 << 30,
    swap_total_bytes=2 << 30,
    swap_free_bytes=1 << 30,
    cpu_mhz=2400.0,
    disks=(Disk("/dev/nvme0n1p2", "/", "ext4", "SSD", False, 500 << 30, 200 << 30),),
    cpus=(CpuInfo(0, "GenuineIntel", "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", 0, 0),),
)
MACHINE = MachineCpu(1000, 3000, 0, 4, context_switches=123456, forks=4242, running=3, blocked=1)


def full_frame():
    """A Frame with every part a sink can show: sockets, domains, host facts, a process with disk I/O."""
    info = frames.process(101, "/usr/bin/app --serve", exe="/usr/bin/app")
    busy = frames.consumer(
        info, 30.0, rss_bytes=4096, vsize_bytes=8192, disk_io=DiskIo(4096, 8192, 1024, 2048)
    )
    domains = (DomainPower("core", 12.0, 120.0, 0), DomainPower("dram", 5.0, 50.0, 1))
    return frames.frame(
        [busy],
        host_watts=60.0,
        host_energy_j=600.0,
        sockets=(SocketPower(0, 20.0, 200.0, domains),),
        host=HOST,
        machine=MACHINE,
    )


def samples(f: Frame, opts: SeriesSettings) -> dict[str, list[tuple[dict[str, str], float]]]:
    return all_samples(registry(f, opts))


def test_every_scaphandre_family_but_the_meaningless_ones():
    assert {f.scaph for f in catalogue.FAMILIES if f.scaph} == SCAPHANDRE_FAMILIES
    assert not LEFT_OUT & {f.name("scaphandre") for f in catalogue.FAMILIES}
    found = samples(full_frame(), SeriesSettings(naming="scaphandre"))
    assert {name for name in found if name.startswith("scaph_")} == SCAPHANDRE_FAMILIES
    one = {name: values[0][1] for name, values in found.items()}
    assert one["scaph_host_load_avg_fifteen"] == 1.25  # (Scaphandre 1.0 repeats the five-minute load here)
    assert one["scaph_host_cpu_frequency"] == 2400.0
    assert one["scaph_host_memory_available_bytes"] == 8 << 30
    assert one["scaph_context_switches_total"] == 123456 and one["scaph_forks_since_boot_total"] == 4242
    assert (one["scaph_processes_running_current"], one["scaph_processes_blocked_current"]) == (3, 1)
    assert (
        one["scaph_process_disk_total_write_bytes"] == 8192 and one["scaph_process_disk_read_bytes"] == 1024
    )
    ((disk, size),) = found["scaph_host_disk_total_bytes"]
    assert size == 500 << 30
    assert disk == {
        "disk_name": "/dev/nvme0n1p2",
        "disk_mount_point": "/",
        "disk_file_system": "ext4",
        "disk_type": "SSD",
        "disk_is_removable": "false",
    }


def test_native_naming_leaves_host_facts_to_node_exporter():
    found = samples(full_frame(), SeriesSettings())
    assert not any("load" in name or "memory_total" in name or "disk_total" in name for name in found)
    assert found["wattprobe_process_disk_written_bytes_total"][0][1] == 8192
    assert not any(name.startswith("scaph_") for name in found)


@pytest.mark.parametrize(
    ("output", "naming"),
    [("prometheus", n) for n in catalogue.NAMINGS] + [("prometheus-push", "scaphandre"), ("riemann", None),
     ("warp10", None), ("json", None), ("stdout", None), ("otlp", None), ("powerapi", None)],
)  # fmt: skip
def test_the_host_s_facts_are_read_for_the_outputs_that_write_them_only(output, naming):
    """The sampler reads the host's load, memory, disks and CPUs only for an output that writes them: one
    whose rendering of a Frame changes without them."""
    module = sinks.module(output)
    settings = module.Settings(**({"naming": naming} if naming else {}))
    with_facts, without = full_frame(), dataclasses.replace(full_frame(), host=None)
    if output.startswith("prometheus"):
        differs = samples(with_facts, settings) != samples(without, settings)
    elif output in ("riemann", "warp10"):
        differs = frame_points(with_facts) != frame_points(without)
    elif output == "json":
        differs = document(with_facts, settings) != document(without, settings)
    else:
        differs = False  # neither has a field for them (their renderings are checked in their own tests)
    assert sinks.writes_host_facts(module, settings) == differs


def test_one_frame_through_every_exporter_says_what_the_catalogue_says():
    f = full_frame()
    points = frame_points(f)
    # Riemann: one event per point, its service the family's Scaphandre name (a process's: + pid, exe).
    events = [event(p, "host-a", f.timestamp, 60) for p in points]
    services = {e.service.split("_101_")[0] for e in events}
    # Warp 10: one line per point, the class the same name.
    classes = {gts_line(p, 1, "host-a").split("// ", 1)[1].split("{", 1)[0] for p in points}
    # Prometheus, Scaphandre's naming, every process listed.
    prometheus = samples(f, SeriesSettings(naming="scaphandre", max_top_consumers=1000))
    written = {name for name, values in prometheus.items() if values}
    assert services == classes == written
    for p, e in zip(points, events, strict=True):
        family = next(fam for fam in catalogue.FAMILIES if fam.sample_name("scaphandre") == p.name)
        assert {a.key: a.value for a in e.attributes} == dict(p.labels)
        assert e.HasField("metric_sint64") == family.integer  # µJ and counts are integers
        assert p.description == family.help
    by_name = {p.name: p for p in points if not p.labels or "socket_id" not in dict(p.labels)}
    assert by_name["scaph_host_power_microwatts"].value == pytest.approx(60e6)  # µW
    assert by_name["scaph_host_energy_microjoules"].value == 600_000_000  # µJ, an integer
    assert by_name["wattprobe_host_unattributed_power_watts"].value == 30.0  # what Scaphandre lacks: W
    process = dict(next(p for p in points if p.name == "scaph_process_power_consumption_microwatts").labels)
    assert process == {"pid": "101", "exe": "app", "cmdline": "/usr/bin/app --serve"}
    # JSON: Scaphandre's document, in the same µW.
    doc = json.loads(json.dumps(document(f, JsonSettings())))
    assert doc["host"]["consumption"] == catalogue.HOST_POWER.value_in("scaphandre", f.host_watts)
    assert doc["consumers"][0]["consumption"] == catalogue.PROCESS_POWER.value_in("scaphandre", 30.0)


def test_one_label_policy():
    info = frames.process(7, "python3 -c 'import x\nx.run()'" + "y" * 300, exe="/usr/bin/python3")
    native, scaph = catalogue.Labels("native"), catalogue.Labels("scaphandre", qemu=True)
    assert native.process(info)["exe"] == info.exe_key and "comm" in native.process(info)
    assert scaph.process(info)["exe"] == info.comm  # Scaphandre's exe label is the command name
    for labels in (native, scaph):
        cmdline = labels.process(info)["cmdline"]
        assert "\n" not in cmdline and cmdline.endswith("...") and len(cmdline) == 256 + 3
    assert catalogue.Labels("scaphandre", hostname="h1").extra({"a": "b"}) == {"a": "b", "hostname": "h1"}


# -- workloads by name: containers, pods, namespaces ----------------------------------------------------
POD_A, POD_B = "0b1c2d3e-0000-4000-8000-00000000000a", "0b1c2d3e-0000-4000-8000-00000000000b"
WEB, SIDECAR, DB, LONE = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
NAMES = {
    WEB: Workload(
        "web", "nginx:1", (("app.kubernetes.io/name", "web"), ("tier", "front")), "shop-0", "shop", POD_A
    ),
    SIDECAR: Workload("proxy", "envoy:1", (), "shop-0", "shop", POD_A),
    DB: Workload("db", "postgres:16", (), "db-0", "data", POD_B),
    LONE: Workload("lonely_turing", "busybox", (("com.example.owner", "ops team"),)),
}


def named_frame(
    watts: dict[str, float], *, timestamp: float = frames.TIMESTAMP, window_s: float = 1.0
) -> Frame:
    """Processes of four containers drawing `watts` (by container id; absent: idle this window): WEB and
    SIDECAR in pod A (namespace shop), DB in pod B (data), LONE a Docker container in no pod."""
    pods = {WEB: POD_A, SIDECAR: POD_A, DB: POD_B}
    consumers = []
    for pid, cid in enumerate((WEB, SIDECAR, DB, LONE), start=100):
        if cid in watts:
            pod = pods.get(cid)
            path = f"/kubepods/besteffort/pod{pod}/{cid}" if pod else f"/docker/{cid}"
            found = Container(cid, "containerd" if pod else "docker", "kubernetes" if pod else "docker", pod)
            info = frames.process(pid, exe=f"/usr/bin/{NAMES[cid].name}", cgroup=path, container=found)
            consumers.append(frames.consumer(info, watts[cid]))
    return frames.frame(
        consumers,
        host_watts=100.0,
        timestamp=timestamp,
        window_s=window_s,
        containers=frames.containers(consumers),
        workloads=NAMES,
        node_name="node-7",
    )


def by(found: list[tuple[dict[str, str], float]], key: str) -> dict[str, float]:
    return {labels.get(key, ""): value for labels, value in found}


def test_native_series_name_containers_and_sum_pods_and_namespaces():
    f = named_frame({WEB: 20.0, SIDECAR: 5.0, DB: 10.0, LONE: 8.0})
    found = samples(f, SeriesSettings(containers=True))
    process = {labels["pid"]: labels for labels, _ in found["wattprobe_process_power_watts"]}
    assert {k: process["100"][k] for k in ("container_name", "pod_name", "pod_namespace")} == {
        "container_name": "web",
        "pod_name": "shop-0",
        "pod_namespace": "shop",
    }
    assert process["103"]["container_name"] == "lonely_turing" and "pod_name" not in process["103"]
    containers = by(found["wattprobe_container_power_watts"], "container_name")
    assert containers == {"web": 20.0, "proxy": 5.0, "db": 10.0, "lonely_turing": 8.0}
    pods = {
        (lab["pod_name"], lab["pod_namespace"], lab["pod_uid"]): v
        for lab, v in found["wattprobe_pod_power_watts"]
    }
    assert pods == {("shop-0", "shop", POD_A): 25.0, ("db-0", "data", POD_B): 10.0}  # no pod: in none
    assert by(found["wattprobe_namespace_power_watts"], "namespace") == {"shop": 25.0, "data": 10.0}
    # Energy over the one window the collector was given: power x 1 s.
    assert by(found["wattprobe_pod_energy_joules_total"], "pod_name") == {"shop-0": 25.0, "db-0": 10.0}
    assert by(found["wattprobe_namespace_energy_joules_total"], "namespace") == {"shop": 25.0, "data": 10.0}
    assert by(found["wattprobe_container_energy_joules_total"], "container_name")["lonely_turing"] == 8.0


def test_a_pod_known_by_its_cgroup_alone_is_summed_under_its_uid():
    f = dataclasses.replace(named_frame({WEB: 20.0, DB: 10.0}), workloads={})  # names not resolved yet
    found = samples(f, SeriesSettings(containers=True))
    pods = {lab["pod_uid"]: (lab["pod_name"], v) for lab, v in found["wattprobe_pod_power_watts"]}
    assert pods == {POD_A: ("", 20.0), POD_B: ("", 10.0)}
    assert "wattprobe_namespace_power_watts" not in found  # a namespace needs the API's answer
    (labels, _), *_ = found["wattprobe_process_power_watts"]
    assert "container_name" not in labels and labels["container_id"] in (WEB, DB)


def test_scaphandre_naming_has_its_container_and_kubernetes_labels_exactly():
    f = named_frame({WEB: 20.0, LONE: 8.0})
    found = samples(f, SeriesSettings(naming="scaphandre", containers=True))
    process = {lab["pid"]: lab for lab, _ in found["scaph_process_power_consumption_microwatts"]}
    assert {k: v for k, v in process["100"].items() if k.startswith(("container_", "kubernetes_"))} == {
        "container_id": WEB,
        "container_runtime": "containerd",
        "container_scheduler": "kubernetes",
        "container_names": "web",
        "container_label_app_kubernetes_io_name": "web",
        "container_label_tier": "front",
        "kubernetes_pod_uid": POD_A,
        "kubernetes_pod_name": "shop-0",
        "kubernetes_pod_namespace": "shop",
        "kubernetes_node_name": "node-7",
    }
    lone = process["103"]
    assert (
        lone["container_names"] == "lonely_turing" and lone["container_label_com_example_owner"] == "ops team"
    )
    assert not any(k.startswith("kubernetes_") for k in lone)
    # Every label name is one Prometheus takes.
    assert all(re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", k) for lab in process.values() for k in lab)
    # Without --containers, as Scaphandre: no container label at all.
    plain = samples(f, SeriesSettings(naming="scaphandre"))["scaph_process_power_consumption_microwatts"]
    assert not any(k.startswith(("container_", "kubernetes_")) for lab, _ in plain for k in lab)


def test_label_names_are_sanitized_and_the_first_of_two_alike_is_kept():
    assert catalogue.label_name("app.kubernetes.io/name") == "app_kubernetes_io_name"
    assert catalogue.label_name("a b:c-d.é") == "a_b_c_d__"
    workload = Workload("x", labels=(("a-b", "first"), ("a.b", "second")))
    labels = catalogue.container_labels(Container(WEB, "docker", "docker"), workload, scaph=True)
    assert labels["container_label_a_b"] == "first"


def energy_by_pod(collector: FrameCollector) -> dict[str, float]:
    return {
        s.labels["pod_name"]: s.value
        for m in collector.collect()
        for s in m.samples
        if s.name == "wattprobe_pod_energy_joules_total"
    }


def test_pod_energy_counters_add_each_frame_once_and_never_go_back():
    shown: list[Frame] = []
    collector = FrameCollector(lambda: shown[-1], SeriesSettings())
    expected = {"shop-0": 0.0, "db-0": 0.0}
    seen = []
    for i, watts in enumerate(({WEB: 20.0, DB: 10.0}, {WEB: 5.0}, {DB: 40.0}, {WEB: 1.0, SIDECAR: 2.0})):
        f = named_frame(watts, timestamp=frames.TIMESTAMP + 2 * i, window_s=2.0)
        shown.append(f)
        collector.add(f)  # given by the runner, then scraped twice: counted once
        first, again = energy_by_pod(collector), energy_by_pod(collector)
        expected["shop-0"] += 2.0 * (watts.get(WEB, 0.0) + watts.get(SIDECAR, 0.0))
        expected["db-0"] += 2.0 * watts.get(DB, 0.0)
        assert first == again == pytest.approx(expected)  # an idle pod keeps its counter
        seen.append(first)
    for before, after in itertools.pairwise(seen):
        assert all(after[k] >= before[k] for k in before)
    # An older Frame served late (a scrape racing the runner) adds nothing.
    shown.append(named_frame({WEB: 100.0}, timestamp=frames.TIMESTAMP))
    assert energy_by_pod(collector) == pytest.approx(expected)


def test_riemann_and_warp10_get_names_and_pod_energy_from_the_catalogue():
    ledger = catalogue.ledger_for("scaphandre")
    for i in range(3):
        f = named_frame({WEB: 20.0, DB: 10.0}, timestamp=frames.TIMESTAMP + i)
        points = frame_points(f, ledger=ledger)
    pods = {
        dict(p.labels)["pod_name"]: p.value for p in points if p.name == "wattprobe_pod_energy_joules_total"
    }
    assert pods == {"shop-0": 60.0, "db-0": 30.0}  # 3 windows of 1 s
    container = next(p for p in points if p.name == "wattprobe_container_power_watts" and p.value == 20.0)
    assert dict(container.labels)["container_name"] == "web"
    line = gts_line(container, 1, "host-a")
    assert "container_name=web" in line and "pod_namespace=shop" in line
    attributes = {a.key: a.value for a in event(container, "host-a", f.timestamp, 60).attributes}
    assert attributes["pod_name"] == "shop-0"
    assert not any(p.name == "wattprobe_pod_energy_joules_total" for p in frame_points(f))  # no ledger


def test_a_power_that_is_not_a_number_adds_no_energy_to_a_workload():
    ledger = catalogue.ledger_for("native")
    for i, web in enumerate((20.0, math.nan, 20.0)):
        f = named_frame({WEB: 20.0, DB: 10.0}, timestamp=frames.TIMESTAMP + i)
        if i == 1:  # the web container's power unknown in this window
            groups = [dataclasses.replace(g, watts=web) if g.key == WEB else g for g in f.containers]
            f = dataclasses.replace(f, containers=tuple(groups))
        points = frame_points(f, ledger=ledger)
    pods = {
        dict(p.labels)["pod_name"]: p.value for p in points if p.name == "wattprobe_pod_energy_joules_total"
    }
    assert pods == {"shop-0": 40.0, "db-0": 30.0}  # the counter stays a number and never goes back


def test_a_process_s_labels_are_made_once_while_what_they_say_stays():
    """A sink that writes Frame after Frame keeps each process's labels: the same dict while its facts,
    its container's names and the node stay; new ones when they change; forgotten once a Frame is
    written without the process."""
    made = catalogue.ProcessLabels(catalogue.Labels(containers=True, hostname="h1"))
    kept, other = frames.process(101, "app --x"), frames.process(102, "db")
    first = made(kept, None, "node-a")
    assert first == made.labels.extra(made.labels.process(kept, None, "node-a"))
    assert (first["pid"], first["cmdline"], first["hostname"]) == ("101", "app --x", "h1")
    made.turn()
    assert made(kept, None, "node-a") is first
    assert made(other, None, "node-a")["pid"] == "102"
    named = made(kept, Workload("web", "nginx:1"), "node-a")
    assert named is not first and named == made.labels.extra(
        made.labels.process(kept, Workload("web", "nginx:1"), "node-a")
    )
    assert made(kept, None, "node-b") is not named
    renamed = dataclasses.replace(kept, comm="app2")  # an equal pid, other facts: its own labels
    assert made(renamed, None, "node-b")["comm"] == "app2"
    for _ in range(2):  # two Frames without process 102
        made.turn()
    assert made._now == {} and made._before == {}
