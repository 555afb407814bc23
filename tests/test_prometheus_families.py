"""Frames collected as Prometheus families: names, units, labels and values in both namings.

Each Frame goes through the exporters' collector into a prometheus_client CollectorRegistry, and every
value is read back from it with get_sample_value (the series' full label set).
"""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import frames
from tests.support.prometheus import AGENT_STATS, family_names, registry, sample_names, samples
from wattprobe.core.model import Consumer, Container, DomainPower, Frame, Group, ProcessInfo, SocketPower
from wattprobe.sinks.kit.catalogue import cmdline_label
from wattprobe.sinks.prometheus.families import FrameCollector, selected_consumers
from wattprobe.sinks.prometheus.series import SeriesSettings
from wattprobe.sources.identity.vms import with_guest

POD = "0a1b2c3d-0000-1111-2222-333344445555"
CONTAINER = Container("c" * 64, "containerd", "kubernetes", POD)
CONTAINER_LABELS = {
    "container_id": CONTAINER.id,
    "container_runtime": "containerd",
    "container_scheduler": "kubernetes",
    "kubernetes_pod_uid": POD,
}
QEMU_CMDLINE = "/usr/bin/qemu-system-x86_64 -name guest=web01,debug-threads=on -m 2048"


def consumer(pid: int, watts: float, cmdline: str, *, exe: str = "/usr/bin/app", container=None) -> Consumer:
    """A process of /system.slice/x drawing `watts` of 100 W; its memory grows with its pid."""
    info = frames.process(pid, cmdline, exe=exe, cgroup="/system.slice/x", container=container)
    return frames.consumer(info, watts, cpu_ns=int(watts * 1e7), rss_bytes=pid * 4096, vsize_bytes=pid * 8192)


def frame(consumers: list[Consumer] | None = None, *, estimated: bool = False) -> Frame:
    consumers = consumers or [
        consumer(101, 30.0, "/usr/bin/app --serve", container=CONTAINER),
        consumer(102, 10.0, QEMU_CMDLINE, exe="/usr/bin/qemu-system-x86_64"),
        consumer(103, 5.0, "/usr/bin/app --batch"),
    ]
    domains = (DomainPower("core", 12.0, 120.0, 0), DomainPower("dram", 5.0, 50.0, 1))
    return frames.frame(
        consumers,
        estimated=estimated,
        host_watts=60.0,
        host_energy_j=600.0,
        sockets=(SocketPower(0, 20.0, 200.0, domains), SocketPower(1, 20.0, 210.0, domains)),
        unattributed_watts=15.0,
        cpu_load=0.45,
        cgroups=(Group("/system.slice/x", 45.0, 0.45, 3),),
        containers=(Group(CONTAINER.id, 30.0, 0.3, 1, CONTAINER),),
        exes=(Group("/usr/bin/app", 35.0, 0.35, 2), Group("/usr/bin/qemu-system-x86_64", 10.0, 0.1, 1)),
        agent=AGENT_STATS,
    )


def value(collected, name: str, **labels: str) -> float | None:
    """The value of the series `name` whose labels are exactly `labels` (None: no such series)."""
    return collected.get_sample_value(name, labels)


APP_SERVE = {"pid": "101", "exe": "/usr/bin/app", "comm": "app", "cmdline": "/usr/bin/app --serve"}
QEMU = {
    "pid": "102",
    "exe": "/usr/bin/qemu-system-x86_64",
    "comm": "qemu-system-x86",
    "cmdline": QEMU_CMDLINE,
}
APP_BATCH = {"pid": "103", "exe": "/usr/bin/app", "comm": "app", "cmdline": "/usr/bin/app --batch"}


def test_native_values_in_base_units():
    collected = registry(frame(), SeriesSettings())
    assert value(collected, "wattprobe_host_power_watts") == 60.0
    assert value(collected, "wattprobe_host_energy_joules_total") == 600.0
    assert value(collected, "wattprobe_host_unattributed_power_watts") == 15.0
    assert value(collected, "wattprobe_socket_power_watts", socket="1") == 20.0
    assert value(collected, "wattprobe_socket_energy_joules_total", socket="1") == 210.0
    assert value(collected, "wattprobe_domain_power_watts", socket="0", domain="dram") == 5.0
    assert value(collected, "wattprobe_domain_energy_joules_total", socket="0", domain="core") == 120.0
    assert value(collected, "wattprobe_process_power_watts", **APP_SERVE) == 30.0
    assert value(collected, "wattprobe_process_cpu_usage_ratio", **APP_BATCH) == pytest.approx(0.05)
    assert value(collected, "wattprobe_process_memory_bytes", **QEMU) == 102 * 4096
    assert value(collected, "wattprobe_exe_power_watts", exe="/usr/bin/app") == 35.0
    assert value(collected, "wattprobe_cgroup_power_watts", cgroup="/system.slice/x") == 45.0
    assert value(collected, "wattprobe_container_power_watts", **CONTAINER_LABELS) == 30.0
    info = {"sensor": "powercap_rapl", "source": "psys", "estimated": "false"}
    assert value(collected, "wattprobe_sensor_info", **info) == 1
    assert value(collected, "wattprobe_self_cpu_seconds_total") == 1.5
    assert value(collected, "wattprobe_self_tick_seconds") == 0.002
    assert value(collected, "wattprobe_self_processes_tracked") == 7
    assert value(collected, "wattprobe_self_peak_rss_bytes") == 40_000_000
    assert value(collected, "wattprobe_self_memory_bytes") == 30_000_000
    # Without --qemu and --containers, process series carry neither label.
    processes = samples(collected, "wattprobe_process_power_watts")
    assert len(processes) == 3
    assert all("vmname" not in lab and "container_id" not in lab for lab, _ in processes)
    assert not any(name.startswith("scaph_") for name in sample_names(collected))


def test_estimated_figures_are_marked():
    collected = registry(frame(estimated=True), SeriesSettings())
    info = {"sensor": "powercap_rapl", "source": "psys"}
    assert value(collected, "wattprobe_sensor_info", **info, estimated="true") == 1
    assert value(collected, "wattprobe_sensor_info", **info, estimated="false") is None


def test_scaphandre_names_units_and_labels():
    opts = SeriesSettings(naming="scaphandre", qemu=True, containers=True)
    collected = registry(frame(), opts)
    assert value(collected, "scaph_host_power_microwatts", value_source="powercap_rapl_psys") == 60e6
    assert value(collected, "scaph_host_energy_microjoules", value_source="powercap_rapl_psys") == 600e6
    assert value(collected, "scaph_socket_power_microwatts", socket_id="0") == 20e6
    assert value(collected, "scaph_socket_energy_microjoules", socket_id="1") == 210e6
    core = {"socket_id": "1", "domain_name": "core", "domain_id": "0"}
    assert value(collected, "scaph_domain_power_microwatts", **core) == 12e6
    dram = {"socket_id": "1", "domain_name": "dram", "domain_id": "1"}
    assert value(collected, "scaph_domain_energy_microjoules", **dram) == 50e6
    power = "scaph_process_power_consumption_microwatts"
    serve = {"pid": "101", "exe": "app", "cmdline": "/usr/bin/app --serve", **CONTAINER_LABELS}
    vm = {"pid": "102", "exe": "qemu-system-x86", "cmdline": QEMU_CMDLINE, "vmname": "web01"}
    batch = {"pid": "103", "exe": "app", "cmdline": "/usr/bin/app --batch"}
    assert value(collected, power, **serve) == 30e6
    assert value(collected, power, **vm) == 10e6
    assert value(collected, "scaph_process_cpu_usage_percentage", **batch) == pytest.approx(5.0)
    assert value(collected, "scaph_process_memory_bytes", **serve) == 101 * 4096
    assert value(collected, "scaph_process_memory_virtual_bytes", **serve) == 101 * 8192
    assert value(collected, "scaph_self_version") == pytest.approx(0.1)
    assert value(collected, "scaph_self_cpu_usage_percent") == 2.0
    assert value(collected, "scaph_self_memory_bytes") == 30_000_000  # resident now, as Scaphandre's
    assert value(collected, "scaph_self_memory_virtual_bytes") == 90_000_000
    assert value(collected, "scaph_self_topo_procs_nb") == 7
    labels = {lab["pid"]: lab for lab, _ in samples(collected, power)}
    assert set(labels["101"]) == {
        "pid",
        "exe",
        "cmdline",
        "container_id",
        "container_runtime",
        "container_scheduler",
        "kubernetes_pod_uid",
    }
    assert set(labels["103"]) == {"pid", "exe", "cmdline"}
    # What Scaphandre lacks keeps its native name, in base units.
    assert value(collected, "wattprobe_host_unattributed_power_watts") == 15.0
    assert value(collected, "wattprobe_container_power_watts", **CONTAINER_LABELS) == 30.0
    assert not any(name.startswith("wattprobe_process_") for name in sample_names(collected))


def test_scaphandre_energy_is_a_counter_under_its_own_name_whatever_the_scraper_asks():
    """Scaphandre serves text 0.0.4 with `# TYPE scaph_host_energy_microjoules counter` and samples of
    that very name; OpenMetrics would need a _total suffix, so this naming never negotiates it.
    (Before: typed unknown, to keep the name.)"""
    openmetrics = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    scaph = FrameCollector(lambda: frame(), SeriesSettings(naming="scaphandre"))
    body, content_type = scaph.exposition(openmetrics)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    assert "# TYPE scaph_host_energy_microjoules counter\n" in text
    assert "# TYPE scaph_context_switches_total counter\n" in text  # (not ..._total_total)
    assert '\nscaph_host_energy_microjoules{value_source="powercap_rapl_psys"} 6e+08\n' in text
    families = {f.name: f for f in text_string_to_metric_families(text)}  # a parser that accepts it
    assert families["scaph_host_energy_microjoules"].type == "counter"
    assert families["scaph_host_power_microwatts"].type == "gauge"
    native_body, native_type = FrameCollector(lambda: frame(), SeriesSettings()).exposition(openmetrics)
    assert native_type.startswith("application/openmetrics-text") and b"# EOF" in native_body


def test_every_family_is_there_without_a_frame():
    """Before the first measurement the families exist, empty: names stay stable for dashboards."""
    with_frame = family_names(registry(frame(), SeriesSettings()))
    without = registry(None, SeriesSettings())
    assert family_names(without) == with_frame
    assert not [
        m
        for m in without.collect()
        if m.samples and not m.name.startswith(("wattprobe_self", "wattprobe_build"))
    ]


def test_top_n_regex_and_off():
    consumers = [consumer(200 + i, 10.0 - i, f"/usr/bin/worker --id {i}") for i in range(8)]
    f = frame(consumers)
    assert [c.info.pid for c in selected_consumers(f, SeriesSettings(max_top_consumers=3))] == [200, 201, 202]
    assert [
        c.info.pid
        for c in selected_consumers(
            f, SeriesSettings(max_top_consumers=3, process_regex=re.compile(r"--id [67]"))
        )
    ] == [206, 207]
    collected = registry(f, SeriesSettings(max_top_consumers=0))
    assert "wattprobe_process_power_watts" not in sample_names(collected)
    # Aggregates still cover every process when per-process series are off.
    assert samples(collected, "wattprobe_cgroup_power_watts")
    assert samples(collected, "wattprobe_exe_power_watts")


def test_qemu_processes_always_get_series_with_qemu():
    vm = consumer(
        300, 0.1, "qemu-system-x86_64 -name vm-small -enable-kvm", exe="/usr/bin/qemu-system-x86_64"
    )
    f = frame([consumer(301, 50.0, "/usr/bin/big"), vm])
    assert [c.info.pid for c in selected_consumers(f, SeriesSettings(max_top_consumers=1))] == [301]
    assert [c.info.pid for c in selected_consumers(f, SeriesSettings(max_top_consumers=1, qemu=True))] == [
        301,
        300,
    ]
    collected = registry(f, SeriesSettings(max_top_consumers=1, qemu=True))
    labels = {"exe": "/usr/bin/qemu-system-x86_64", "comm": "qemu-system-x86", "cmdline": vm.info.cmdline}
    assert value(collected, "wattprobe_process_power_watts", pid="300", **labels, vmname="vm-small") == 0.1


@pytest.mark.parametrize(
    ("cmdline", "name"),
    [
        ("/usr/bin/qemu-system-x86_64 -name guest=web01,debug-threads=on -S", "web01"),
        ("qemu-system-aarch64 -machine virt -name db,process=qemu-db", "db"),
        ("/usr/libexec/qemu-kvm -name guest=a,,b,debug-threads=on", "a,b"),
        ("qemu-system-x86_64 --name plain", "plain"),
        ("qemu-system-x86_64 -m 512", "pid-77"),
        ("/usr/bin/python -name guest=notavm", None),
    ],
)
def test_vm_name(cmdline, name):
    assert with_guest(ProcessInfo(77, "qemu", "", cmdline, "/", None)).vm == name


def test_long_cmdline_is_truncated_and_escaped():
    nasty = 'run --arg "quoted" back\\slash\nnewline ' + "x" * 4000
    f = frame([consumer(400, 1.0, nasty)])
    ((labels, watts),) = samples(
        registry(f, SeriesSettings(cmdline_max_length=100)), "wattprobe_process_power_watts"
    )
    assert labels["cmdline"] == nasty[:100].replace("\n", " ") + "..."
    assert labels["cmdline"].startswith('run --arg "quoted" back\\slash newline')
    assert watts == 1.0
    assert cmdline_label("short\tone", 100) == "short one"


def test_processes_with_the_same_labels_stay_distinct_series():
    """Two processes with one command line differ by pid: no duplicate series."""
    f = frame([consumer(500, 2.0, "/usr/bin/app"), consumer(501, 1.0, "/usr/bin/app")])
    processes = samples(registry(f, SeriesSettings()), "wattprobe_process_power_watts")
    assert sorted(lab["pid"] for lab, _ in processes) == ["500", "501"]
