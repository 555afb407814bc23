"""Frames rendered as Prometheus families: names, units, labels and values in both namings."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from wattprobe.core.model import (
    AgentStats,
    Consumer,
    Container,
    DomainPower,
    Frame,
    Group,
    ProcessInfo,
    SocketPower,
)
from wattprobe.core.vms import with_guest
from wattprobe.sinks.catalogue import cmdline_label
from wattprobe.sinks.promfamilies import FrameCollector, render, selected_consumers
from wattprobe.sinks.promoptions import SeriesSettings

POD = "0a1b2c3d-0000-1111-2222-333344445555"
CONTAINER = Container("c" * 64, "containerd", "kubernetes", POD)
STATS = AgentStats(
    cpu_seconds=1.5,
    cpu_percent=2.0,
    peak_rss_bytes=40_000_000,
    rss_bytes=30_000_000,
    vsize_bytes=90_000_000,
    tick_seconds=0.002,
    processes_tracked=7,
)


def consumer(pid: int, watts: float, cmdline: str, *, exe: str = "/usr/bin/app", container=None) -> Consumer:
    info = with_guest(
        ProcessInfo(pid, exe.rsplit("/", 1)[-1][:15] or "kthread", exe, cmdline, "/system.slice/x", container)
    )
    return Consumer(
        info,
        cpu_ns=int(watts * 1e7),
        cpu_share=watts / 100,
        watts=watts,
        rss_bytes=pid * 4096,
        vsize_bytes=pid * 8192,
    )


def frame(consumers: list[Consumer] | None = None, *, estimated: bool = False) -> Frame:
    consumers = consumers or [
        consumer(101, 30.0, "/usr/bin/app --serve", container=CONTAINER),
        consumer(
            102,
            10.0,
            "/usr/bin/qemu-system-x86_64 -name guest=web01,debug-threads=on -m 2048",
            exe="/usr/bin/qemu-system-x86_64",
        ),
        consumer(103, 5.0, "/usr/bin/app --batch"),
    ]
    domains = (DomainPower("core", 12.0, 120.0, 0), DomainPower("dram", 5.0, 50.0, 1))
    return Frame(
        timestamp=1_700_000_000.0,
        window_s=1.0,
        sensor="powercap_rapl",
        estimated=estimated,
        host_source="psys",
        host_watts=60.0,
        host_energy_j=600.0,
        sockets=(SocketPower(0, 20.0, 200.0, domains), SocketPower(1, 20.0, 210.0, domains)),
        unattributed_watts=15.0,
        cpu_load=0.45,
        n_cpus=4,
        consumers=tuple(consumers),
        cgroups=(Group("/system.slice/x", 45.0, 0.45, 3),),
        containers=(Group(CONTAINER.id, 30.0, 0.3, 1, CONTAINER),),
        exes=(Group("/usr/bin/app", 35.0, 0.35, 2), Group("/usr/bin/qemu-system-x86_64", 10.0, 0.1, 1)),
        agent=STATS,
    )


def registry(f: Frame | None, opts: SeriesSettings) -> CollectorRegistry:
    """A prometheus_client registry that collects the Frame as the exporter does."""
    found = CollectorRegistry()
    found.register(FrameCollector(lambda: f, opts))
    return found


def samples(f: Frame | None, opts: SeriesSettings) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample a registry holding the collector has, by sample name (what the exposition writes)."""
    out: dict[str, list] = {}
    for family in registry(f, opts).collect():
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(found, name: str, **labels: str) -> float:
    matches = [v for lab, v in found[name] if all(lab.get(k) == want for k, want in labels.items())]
    assert len(matches) == 1, (name, labels, found.get(name))
    return matches[0]


def test_native_values_in_base_units():
    found = samples(frame(), SeriesSettings())
    assert value(found, "wattprobe_host_power_watts") == 60.0
    assert value(found, "wattprobe_host_energy_joules_total") == 600.0
    assert value(found, "wattprobe_host_unattributed_power_watts") == 15.0
    assert value(found, "wattprobe_socket_power_watts", socket="1") == 20.0
    assert value(found, "wattprobe_socket_energy_joules_total", socket="1") == 210.0
    assert value(found, "wattprobe_domain_power_watts", socket="0", domain="dram") == 5.0
    assert value(found, "wattprobe_domain_energy_joules_total", socket="0", domain="core") == 120.0
    assert (
        value(
            found,
            "wattprobe_process_power_watts",
            pid="101",
            exe="/usr/bin/app",
            cmdline="/usr/bin/app --serve",
        )
        == 30.0
    )
    assert value(found, "wattprobe_process_cpu_usage_ratio", pid="103") == pytest.approx(0.05)
    assert value(found, "wattprobe_process_memory_bytes", pid="102") == 102 * 4096
    assert value(found, "wattprobe_exe_power_watts", exe="/usr/bin/app") == 35.0
    assert value(found, "wattprobe_cgroup_power_watts", cgroup="/system.slice/x") == 45.0
    assert (
        value(
            found,
            "wattprobe_container_power_watts",
            container_id=CONTAINER.id,
            container_runtime="containerd",
            container_scheduler="kubernetes",
            kubernetes_pod_uid=POD,
        )
        == 30.0
    )
    assert (
        value(found, "wattprobe_sensor_info", sensor="powercap_rapl", source="psys", estimated="false") == 1
    )
    assert value(found, "wattprobe_self_cpu_seconds_total") == 1.5
    assert value(found, "wattprobe_self_tick_seconds") == 0.002
    assert value(found, "wattprobe_self_processes_tracked") == 7
    assert value(found, "wattprobe_self_peak_rss_bytes") == 40_000_000
    assert value(found, "wattprobe_self_memory_bytes") == 30_000_000
    # The same values through prometheus_client's own registry.
    native = registry(frame(), SeriesSettings())
    assert native.get_sample_value("wattprobe_host_power_watts") == 60.0
    assert native.get_sample_value("wattprobe_socket_energy_joules_total", {"socket": "1"}) == 210.0
    # Without --qemu and --containers, process series carry neither label.
    assert all(
        "vmname" not in lab and "container_id" not in lab for lab, _ in found["wattprobe_process_power_watts"]
    )
    assert not any(name.startswith("scaph_") for name in found)


def test_estimated_figures_are_marked():
    found = samples(frame(estimated=True), SeriesSettings())
    assert value(found, "wattprobe_sensor_info", estimated="true") == 1


def test_scaphandre_names_units_and_labels():
    opts = SeriesSettings(naming="scaphandre", qemu=True, containers=True)
    found = samples(frame(), opts)
    assert value(found, "scaph_host_power_microwatts", value_source="powercap_rapl_psys") == 60e6
    assert value(found, "scaph_host_energy_microjoules") == 600e6
    assert value(found, "scaph_socket_power_microwatts", socket_id="0") == 20e6
    assert value(found, "scaph_socket_energy_microjoules", socket_id="1") == 210e6
    assert (
        value(found, "scaph_domain_power_microwatts", socket_id="1", domain_name="core", domain_id="0")
        == 12e6
    )
    assert (
        value(found, "scaph_domain_energy_microjoules", socket_id="1", domain_name="dram", domain_id="1")
        == 50e6
    )
    power = "scaph_process_power_consumption_microwatts"
    assert (
        value(found, power, pid="101", exe="app", cmdline="/usr/bin/app --serve", container_id=CONTAINER.id)
        == 30e6
    )
    assert value(found, power, pid="102", vmname="web01") == 10e6
    assert value(found, "scaph_process_cpu_usage_percentage", pid="103") == pytest.approx(5.0)
    assert value(found, "scaph_process_memory_bytes", pid="101") == 101 * 4096
    assert value(found, "scaph_process_memory_virtual_bytes", pid="101") == 101 * 8192
    assert value(found, "scaph_self_version") == pytest.approx(0.1)
    assert value(found, "scaph_self_cpu_usage_percent") == 2.0
    assert value(found, "scaph_self_memory_bytes") == 30_000_000  # resident now, as Scaphandre's
    assert value(found, "scaph_self_memory_virtual_bytes") == 90_000_000
    assert value(found, "scaph_self_topo_procs_nb") == 7
    labels = {lab["pid"]: lab for lab, _ in found[power]}
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
    assert value(found, "wattprobe_host_unattributed_power_watts") == 15.0
    assert value(found, "wattprobe_container_power_watts", container_id=CONTAINER.id) == 30.0
    assert not any(name.startswith("wattprobe_process_") for name in found)


def test_scaphandre_energy_is_a_counter_under_its_own_name_whatever_the_scraper_asks():
    """Scaphandre serves text 0.0.4 with `# TYPE scaph_host_energy_microjoules counter` and samples of
    that very name; OpenMetrics would need a _total suffix, so this naming never negotiates it."""
    openmetrics = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    body, content_type = FrameCollector(lambda: frame(), SeriesSettings(naming="scaphandre")).exposition(
        openmetrics
    )
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
    with_frame = {m.name for m in render(frame(), SeriesSettings())}
    without = render(None, SeriesSettings())
    assert {m.name for m in without} == with_frame
    assert not [
        m for m in without if m.samples and not m.name.startswith(("wattprobe_self", "wattprobe_build"))
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
    found = samples(f, SeriesSettings(max_top_consumers=0))
    assert "wattprobe_process_power_watts" not in found
    # Aggregates still cover every process when per-process series are off.
    assert found["wattprobe_cgroup_power_watts"]
    assert found["wattprobe_exe_power_watts"]


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
    found = samples(f, SeriesSettings(max_top_consumers=1, qemu=True))
    assert value(found, "wattprobe_process_power_watts", pid="300", vmname="vm-small") == 0.1


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
    found = samples(f, SeriesSettings(cmdline_max_length=100))
    ((labels, watts),) = found["wattprobe_process_power_watts"]
    assert labels["cmdline"] == nasty[:100].replace("\n", " ") + "..."
    assert labels["cmdline"].startswith('run --arg "quoted" back\\slash newline')
    assert watts == 1.0
    assert cmdline_label("short\tone", 100) == "short one"


def test_processes_with_the_same_labels_stay_distinct_series():
    """Two processes with one command line differ by pid: no duplicate series."""
    f = frame([consumer(500, 2.0, "/usr/bin/app"), consumer(501, 1.0, "/usr/bin/app")])
    found = samples(f, SeriesSettings())
    assert sorted(lab["pid"] for lab, _ in found["wattprobe_process_power_watts"]) == ["500", "501"]
