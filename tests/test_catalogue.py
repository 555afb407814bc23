"""One catalogue: one Frame through every exporter gives the catalogue's names, labels and units."""

from __future__ import annotations

import json

import pytest

from tests.support import frames
from tests.support.prometheus import all_samples, registry
from wattprobe.core.model import Disk, DiskIo, DomainPower, Frame, HostFacts, MachineCpu, SocketPower
from wattprobe.sinks.json import Settings as JsonSettings
from wattprobe.sinks.json import document
from wattprobe.sinks.kit import catalogue
from wattprobe.sinks.kit.points import frame_points
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
