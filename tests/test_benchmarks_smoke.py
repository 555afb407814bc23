"""A small run of every benchmark: they work and report what they claim. Timing is for benchmarks/run.py."""

from __future__ import annotations

import math
import os

from benchmarks import accuracy, agent, host, idle, names, peers, run, scrape, tick
from benchmarks.swarm import MAX_ARG, Swarm, long_argument
from tests.support.processes import schedstat_ns, stat_fields
from tests.support.waiting import wait_for


def assert_reported(result, *numbers: str) -> None:
    for name in numbers:
        assert name in result.numbers, sorted(result.numbers)
        assert result.numbers[name] >= 0 and not math.isnan(result.numbers[name]), name
    text = result.markdown()
    assert text.startswith(f"### {result.title}")
    for budget in result.budgets:
        assert budget.name in text


def test_swarm_processes_exist_and_go():
    with Swarm(20) as swarm:
        assert len(swarm.pids) == 20
        wait_for(lambda: all(_state(pid) == "S" for pid in swarm.pids), 10, "every child asleep")
    # closed: every child read EOF and was reaped by the helper
    assert not any(_alive(pid) for pid in swarm.pids)


def _state(pid: int) -> str:
    try:
        return stat_fields(pid)[0]
    except FileNotFoundError:
        return ""


def _alive(pid: int) -> bool:
    return _state(pid) not in ("", "Z")


def test_tick_against_the_floor_and_psutil():
    result = tick.bench(sizes=(30,), repeats=2, psutil_repeats=1, own_cgroup_size=20, long_arguments=None)
    assert_reported(result, "tick_30", "floor_30", "stat_floor_30", "pread_floor_30", "psutil_30")
    assert result.numbers["processes_30"] >= 30
    assert result.numbers["frames_30"] == 2  # every timed tick made a Frame
    if "tick_20_cgroup" in result.numbers:  # where a cgroup can be made (root)
        assert_reported(result, "tick_20_cgroup", "stat_floor_20_cgroup")
        assert result.numbers["frames_20_cgroup"] == 2
    else:
        assert "No cgroup could be made" in result.markdown()


def test_tick_with_long_arguments():
    result = tick.bench(
        sizes=(10,),
        repeats=1,
        psutil_repeats=1,
        own_cgroup_size=None,
        long_arguments=(20, 4096, MAX_ARG),
        long_repeats=1,
    )
    for kind in ("long_args", "short_args"):
        assert_reported(
            result, *(f"{kind}_{n}" for n in ("first", "next", "facts", "facts_big", "redaction"))
        )
        assert result.numbers[f"{kind}_frames"] == 2  # the first Frame and the next, each timed
    assert "redacting a 131,071 B argument" in result.markdown()


def test_swarm_processes_carry_a_long_argument_and_wake():
    with Swarm(3, arg_bytes=MAX_ARG, wake_s=0.05) as swarm:
        for pid in swarm.pids:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert f.read().split(b"\0")[-2] == long_argument(MAX_ARG).encode()
        before = [schedstat_ns(pid) for pid in swarm.pids]
        wait_for(
            lambda: all(schedstat_ns(p) > b for p, b in zip(swarm.pids, before, strict=True)), 5, "wakes"
        )


def test_host_sampling_rate():
    result = host.bench(seconds=0.1)
    assert_reported(result, "ticks_per_s")
    assert result.numbers["counters"] == 9
    if any(os.path.exists(p) for p in host.SYSFS_NUMBERS):  # the reads of counters on sysfs, both ways
        assert result.numbers["sysfs_kept_s"] > 0 and result.numbers["sysfs_anew_s"] > 0


def test_accuracy_with_cpu_clocks_and_stat_ticks_threads_and_short_lived_processes():
    result = accuracy.bench(
        window_s=0.05,
        windows=6,
        duties=(0.5,),
        thread_windows=6,
        loop_s=1,
        make_files=10,
        make_times=1,
        json_step_s=0.5,
    )
    assert_reported(result, "CPU_clock_median", "CPU_clock_p95", "stat_ticks_median", "stat_ticks_p95")
    assert_reported(result, "short_loop_share", "short_loop_cpu_s")
    if accuracy.compiler() is not None:
        assert_reported(result, "threads_mixed_0_CPU_clock_p95", "threads_saturated_1_stat_ticks_ratio")
        assert_reported(result, "short_make_share")


def test_steady_state_overhead():
    result = agent.bench_steady(seconds=2.5, big_seconds=1, sizes=(10, 20), warmup_s=0.5, own_cgroup_size=15)
    assert_reported(result, "cpu_percent_10", "cpu_per_scrape_10", "stat_floor_10", "rss_mean_10", "hwm_20")
    assert result.numbers["processes_20"] >= 20
    assert 5e6 < result.numbers["hwm_20"] < 500e6
    # once a second, past the default minimum interval: every scrape is a fresh measurement
    assert result.numbers["scrapes_10"] >= 2 and result.numbers["fresh_10"] == result.numbers["scrapes_10"]
    assert "cpu_per_scrape_15_cgroup" in result.numbers or "No cgroup could be made" in result.markdown()


def test_churn_soak():
    result = agent.bench_soak(seconds=3, extra=10, churn_per_s=20, churn_alive=10)
    assert_reported(result, "rss_start", "rss_end", "growth", "fds_max")
    assert result.numbers["born"] >= 20 and result.numbers["killed"] > 0


def test_scrape():
    result = scrape.bench(sizes=(20,), target_series=None, rounds=1, min_interval_s=0.3)
    if not scrape.has_prometheus():
        assert "Not measured" in result.markdown()
        return
    assert_reported(result, "native_20_fresh", "native_20_bytes", "scaphandre_20_shared")
    assert_reported(result, "native_20_reference", "native_20_render", "scaphandre_20_tick")
    assert result.numbers["native_20_consumers"] == 20
    assert result.numbers["native_20_process_series"] == 60  # power, CPU and memory of each
    assert len(result.budgets) == 4  # per naming: shared against the reference, fresh against it + tick


def test_peers():
    result = peers.bench(sizes=(10,), seconds=1, warmup_s=0)
    why_not = peers.setup()
    if why_not is not None:
        assert result.notes and "not measured" in result.markdown().lower()
        return
    names = [row[0] for row in result.tables[0][1:]]
    assert names[0] == "wattprobe" and len(names) == len(set(names)) == 5
    for name, value in result.numbers.items():
        if name.endswith("_series"):
            assert value > 0, name  # every exporter answered with series


def test_idle_host_next_to_node_exporter():
    result = idle.bench(processes=20, groups=2, rounds=1, seconds=1, warmup_s=0)
    if peers.setup() is not None or not result.tables:
        assert "not measured" in result.markdown().lower()
        return
    assert_reported(result, "groups_wattprobe", "groups_node_exporter", "groups_versus_node")
    assert_reported(result, "slice_wattprobe", "slice_node_exporter", "slice_versus_node")
    assert_reported(result, "forks_wattprobe", "forks_node_exporter", "forks_versus_node")
    assert_reported(result, "one_wattprobe", "one_stat_floor", "one_versus_floor", "one_latency")
    layouts = [row[0] for row in result.tables[0][1:]]
    assert layouts == [
        "in 2 cgroups of 10",
        "in 2 services of 10 in one slice, the exporters' too",
        "in 2 cgroups of 10, one starting 2 processes a second",
        "in one cgroup with the agent",
    ]
    assert result.numbers["groups_wattprobe"] > 0 and result.numbers["one_node_exporter"] > 0
    # Where a scrape goes: HTTP alone, then with the exposition of a kept Frame, then a fresh one.
    assert_reported(result, "groups_http", "groups_kept_frame")
    parts = [row[0] for row in result.tables[1][1:]]
    assert [part.split(" (")[0].split(",")[0] for part in parts] == ["the index page", "/metrics", "/metrics"]
    assert 0 < result.numbers["groups_http"] < result.numbers["groups_kept_frame"]
    assert len(result.budgets) == 3


def test_run_replaces_only_the_sections_it_ran(tmp_path):
    out = tmp_path / "performance.md"
    out.write_text(
        "# Performance\n\nWritten by hand.\n\n<!-- results:host -->\nold\n<!-- /results:host -->\n\n"
        "<!-- results:tick -->\nkept\n<!-- /results:tick -->\n"
    )
    assert run.main(["--only", "host", "--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Performance\n\nWritten by hand.")
    assert "old" not in text and "Host-only sampling rate" in text and "quick mode" in text
    assert "<!-- results:tick -->\nkept\n<!-- /results:tick -->" in text
    assert "<!-- results:machine -->" in text


def test_names_on_the_tick():
    result = names.bench(containers=4, per_container=3, rounds=2)
    if not result.tables:  # where no cgroup can be made (not root)
        assert "No cgroup could be made" in result.markdown()
        return
    assert_reported(result, "on", "off", "ratio", "names_call")
    # every container of the Frame named: two by the engine, two by the Kubernetes API
    assert result.numbers["containers"] == result.numbers["named"] == 4
    assert result.numbers["consumers"] >= 12 and result.numbers["frames"] == 2
    assert len(result.budgets) == 2
