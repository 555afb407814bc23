"""PowerAPI report encoding, checked by PowerAPI 2.10 itself (HWPCReport/PowerReport.from_json)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from powerapi.report import HWPCReport, PowerReport

from tests.support.powerapi import TreeSampler, json_roundtrip, make_frame, naive_utc, utc
from tests.support.powercap_tree import PowercapTree
from wattprobe.sinks.powerapi.reports import hwpc_reports, iso_utc, power_reports, rapl_joules
from wattprobe.sources.topology import first_cpus

EVENT_DOMAINS = {
    "RAPL_ENERGY_PKG": "package",
    "RAPL_ENERGY_CORES": "core",
    "RAPL_ENERGY_GPU": "uncore",
    "RAPL_ENERGY_DRAM": "dram",
}


@pytest.fixture
def sampled(powercap):
    sampler = TreeSampler(powercap)
    yield sampler
    sampler.close()


def test_hwpc_rapl_deltas_are_the_trees_energy(sampled):
    """Counters start 1 J below their wrap: the first window crosses it."""
    cpus = {0: 0, 1: 8}
    for seconds in (1.0, 0.5, 2.0):
        frame, gained = sampled.frame(seconds)
        (report,) = hwpc_reports(frame, "host-a", cpus)
        assert report["target"] == "all" and report["sensor"] == "host-a"
        rapl = report["groups"]["rapl"]
        assert sorted(rapl) == ["0", "1"]
        for socket, cpu in cpus.items():
            events = rapl[str(socket)][str(cpu)]
            assert events["time_enabled"] == events["time_running"] == round(seconds * 1e9)
            for event, domain in EVENT_DOMAINS.items():
                assert rapl_joules(events[event]) == pytest.approx(gained[(socket, domain)], rel=1e-3)
            # The platform counter, the same under each socket.
            assert rapl_joules(events["RAPL_ENERGY_PSYS"]) == pytest.approx(gained[(None, "psys")], rel=1e-3)
            assert all(isinstance(v, int) and v >= 0 for v in events.values())
    # The last window, in the report: socket 0's package drew 20 W for 2 s.
    assert rapl_joules(rapl["0"]["0"]["RAPL_ENERGY_PKG"]) == pytest.approx(2.0 * 20.0, rel=1e-3)


def test_hwpc_leaves_out_absent_domains(tmp_path):
    tree = PowercapTree(tmp_path / "pc", {(0, "package"): 15.0})
    sampler = TreeSampler(tree)
    frame, _ = sampler.frame(1.0)
    sampler.close()
    (report,) = hwpc_reports(frame, "s", {})
    assert report["groups"]["rapl"] == {
        "0": {"0": {"RAPL_ENERGY_PKG": round(15.0 * 2**32), "time_enabled": 10**9, "time_running": 10**9}}
    }


def test_every_report_round_trips_through_powerapi(sampled):
    reports = []
    for _ in range(2):
        frame, _ = sampled.frame(1.0)
        reports += hwpc_reports(frame, "host-a", {0: 0, 1: 1}) + power_reports(frame, "host-a", processes=3)
    assert any("groups" in r for r in reports) and any(r["target"] not in ("all",) for r in reports)
    with utc():
        for report in reports:
            for form in (report, report | {"timestamp": iso_utc(report["timestamp"])}):
                _assert_powerapi_reads(json_roundtrip(form), report)


def test_power_reports_of_a_frame():
    frame = make_frame()
    reports = power_reports(frame, "host-a", processes=1)
    by_target: dict[str, list[dict]] = {}
    for r in reports:
        by_target.setdefault(r["target"], []).append(r)
        assert r["timestamp"] == 1_700_000_000_123
        assert r["metadata"]["estimated"] is False

    host, *per_socket = by_target.pop("all")
    assert host["power"] == 60.0 and host["metadata"] == {
        "scope": "host",
        "source": "psys",
        "estimated": False,
    }
    assert [(r["metadata"]["socket"], r["metadata"]["scope"], r["power"]) for r in per_socket] == [
        ("0", "cpu", 20.0),
        ("0", "dram", 5.0),
        ("1", "cpu", 21.0),
        ("1", "dram", 5.0),
    ]
    web_cgroup = f"/system.slice/docker-{'ab' * 32}.scope"
    assert by_target.pop(web_cgroup)[0]["metadata"] == {
        "scope": "host",
        "formula": "cpu-time-share",
        "ratio": 0.3,
        "container": "ab" * 32,
        "estimated": False,
    }
    (db,) = by_target.pop("/system.slice/postgresql.service")
    assert db["power"] == 12.0 and db["metadata"]["ratio"] == 0.2 and "container" not in db["metadata"]
    (process,) = by_target.pop("pid:101")  # only the top process
    assert process["power"] == 18.0
    assert process["metadata"] == {
        "scope": "host",
        "formula": "cpu-time-share",
        "ratio": 0.3,
        "pid": 101,
        "name": "nginx",
        "exe": "/usr/sbin/nginx",
        "cgroup": web_cgroup,
        "estimated": False,
    }
    assert not by_target


def test_ratio_stays_within_0_and_1():
    """A cgroup's share is a float sum: 1.0000000000000002 must not reach a consumer checking ratio <= 1."""
    frame = make_frame()
    whole = replace(frame.cgroups[0], cpu_share=1.0000000000000002)
    assert whole.cpu_share > 1
    (report,) = [r for r in power_reports(replace(frame, cgroups=(whole,)), "s") if r["target"] == whole.key]
    assert report["metadata"]["ratio"] == 1.0


def test_estimated_figures_say_so():
    frame = make_frame(estimated=True, host_source="package+dram")
    (hwpc,) = hwpc_reports(frame, "s", {})
    assert hwpc["metadata"] == {"estimated": True}
    assert "RAPL_ENERGY_PSYS" not in hwpc["groups"]["rapl"]["0"]["0"]
    reports = power_reports(frame, "s", processes=5)
    assert reports and all(r["metadata"]["estimated"] is True for r in reports)


def test_no_hwpc_report_without_rapl():
    frame = replace(make_frame(host_source="wall"), sockets=())
    assert hwpc_reports(frame, "s", {}) == []
    assert [r["power"] for r in power_reports(frame, "s") if r["target"] == "all"] == [60.0]


def test_timestamps_are_utc_in_both_forms():
    assert iso_utc(1_700_000_000_123) == "2023-11-14T22:13:20.123000"
    assert iso_utc(0) == "1970-01-01T00:00:00.000000"


def test_first_cpu_of_each_package(tmp_path):
    root = tmp_path / "cpu"
    for cpu, package in [(0, 0), (1, 1), (2, 0), (3, 1), (10, 1), (11, 0)]:
        (root / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (root / f"cpu{cpu}" / "topology" / "physical_package_id").write_text(f"{package}\n")
    (root / "cpu4").mkdir()  # offline: no topology
    (root / "cpufreq").mkdir()
    (root / "online").write_text("0-3,10-11\n")
    assert first_cpus(str(root)) == {0: 0, 1: 1}
    assert first_cpus(str(tmp_path / "absent")) == {}


def test_without_topology_each_socket_names_cpu_0(sampled):
    frame, _ = sampled.frame(1.0)
    (report,) = hwpc_reports(frame, "s", first_cpus("/nonexistent"))
    assert {s: list(cpus) for s, cpus in report["groups"]["rapl"].items()} == {"0": ["0"], "1": ["0"]}


def _assert_powerapi_reads(document: dict, report: dict) -> None:
    when = naive_utc(report["timestamp"])
    if "groups" in report:
        expected = HWPCReport(when, report["sensor"], report["target"], report["groups"], report["metadata"])
        assert HWPCReport.from_json(document) == expected
    else:
        expected = PowerReport(when, report["sensor"], report["target"], report["power"], report["metadata"])
        parsed = PowerReport.from_json(document)
        assert parsed == expected and parsed.metadata == report["metadata"]
