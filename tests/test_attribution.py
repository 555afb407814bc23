"""Attribution with real busy processes on a synthetic powercap tree (the counters' guards: test_counters)."""

from __future__ import annotations

import dataclasses
import itertools
import time

import pytest

from tests.support.frames import frame_between, process, snapshot
from tests.support.workloads import BusyChildren
from wattprobe.core.attribution import Carry, consumer_keys, cpu_used
from wattprobe.core.sampler import Sampler
from wattprobe.sources.powercap import PowercapSensor
from wattprobe.sources.procfs import ProcfsReader

APP = "/system.slice/app.service"


def test_busy_processes_get_their_cpu_share_of_host_power(powercap):
    sampler = Sampler(PowercapSensor(str(powercap.root), clock=powercap.written_at), ProcfsReader())
    with powercap.running():
        sampler.tick()
        with BusyChildren([0.8, 0.3], seconds=1.5) as children:  # each burns a part of every 20 ms
            own_ns = children.finished()  # and then waits: the window ends with every child asleep
            frame = sampler.tick()
    assert frame is not None
    # Real time on a busy 2-core machine: exact power is tested with a deterministic clock elsewhere.
    assert frame.host_watts == pytest.approx(60.0, rel=0.03)
    assert frame.host_source == "psys" and not frame.estimated
    machine_ns = frame.n_cpus * frame.window_s * 1e9
    by_pid = {c.info.pid: c for c in frame.consumers}
    for pid, ns in zip(children.pids, own_ns, strict=True):
        consumer = by_pid[pid]
        assert consumer.cpu_share == pytest.approx(ns / machine_ns, rel=0.05)
        assert consumer.watts == pytest.approx(frame.host_watts * ns / machine_ns, rel=0.05)
    # Conservation: every watt is a consumer's or unattributed.
    total = sum(c.watts for c in frame.consumers) + frame.unattributed_watts
    assert total == pytest.approx(frame.host_watts, rel=1e-6)
    # Aggregates add up too: executables are sums of processes; cgroups have their own identity.
    assert sum(g.watts for g in frame.exes) == pytest.approx(
        frame.host_watts - frame.unattributed_watts, rel=1e-6
    )
    assert sum(g.watts for g in frame.cgroups) + frame.unattributed_cgroup_watts == pytest.approx(
        frame.host_watts, rel=1e-6
    )
    # Sockets and domains carry their own power.
    assert [s.id for s in frame.sockets] == [0, 1]
    for socket in frame.sockets:
        assert socket.watts == pytest.approx(20.0, rel=0.03)
        assert {d.name: round(d.watts) for d in socket.domains} == {"core": 12, "uncore": 3, "dram": 5}
    sampler.close()


def test_a_window_looks_at_the_processes_that_ran_and_finds_what_comparing_every_process_finds(powercap):
    """The reader gives a snapshot the processes whose time changed since its last one (with their
    time then), so that a tick neither copies nor compares the 1,000 that slept; on real processes
    the Frame is the one a comparison of every process's time gives."""
    sampler = powercap.sampler()
    with BusyChildren([0.5, 0.2], seconds=0.6):
        sampler.tick()
        prev, every_before = sampler._prev, dict(sampler.procfs._cpu)
        powercap.advance(0.5)
        frame = sampler.tick()
        now, every_now = sampler._prev, dict(sampler.procfs._cpu)
    assert frame is not None and prev is not None and now is not None and now.changed is not None
    assert now.seq == prev.seq + 1
    moved = {k for k, ns in every_now.items() if ns != every_before.get(k)}
    assert moved and len(moved) < len(every_now) / 2  # most processes slept
    assert set(now.tasks) == moved and {k: every_before.get(k, 0) for k in moved} == now.changed
    full_prev = dataclasses.replace(prev, tasks=every_before, changed=None)
    full_now = dataclasses.replace(now, tasks=every_now, changed=None)
    keys = consumer_keys(cpu_used(full_prev, full_now))
    assert sorted(consumer_keys(cpu_used(prev, now))) == sorted(keys) and keys
    infos = {key: found[0] for key in keys if (found := sampler.procfs.process(key)) is not None}
    mine, theirs = frame_between(prev, now, infos), frame_between(full_prev, full_now, infos)
    assert sorted(mine.consumers, key=str) == sorted(theirs.consumers, key=str)
    # The sampler hands attribute() what ran, worked out once for the consumers' keys: the same shares.
    assert {c.info.pid: (c.cpu_ns, c.cpu_share) for c in frame.consumers} == {
        c.info.pid: (c.cpu_ns, c.cpu_share) for c in mine.consumers
    }
    assert mine.unattributed_watts == pytest.approx(theirs.unattributed_watts, rel=1e-12)
    assert {g.key: g.watts for g in mine.cgroups} == pytest.approx({g.key: g.watts for g in theirs.cgroups})
    sampler.close()


def test_only_the_keys_a_following_snapshot_names_are_compared():
    a, b = process(1, "a"), process(2, "b")
    prev = dataclasses.replace(snapshot(0, {1: 0, 2: 0}), seq=4)
    ran = snapshot(1, {1: 10**8, 2: 10**8})
    following = dataclasses.replace(ran, tasks={1: 10**8}, seq=5, changed={1: 0})
    assert [c.info.pid for c in frame_between(prev, following, {1: a, 2: b}).consumers] == [1]
    # Not said what changed: every process is compared.
    assert {c.info.pid for c in frame_between(prev, ran, {1: a, 2: b}).consumers} == {1, 2}
    # What changed since another snapshot than the one it is compared with: no window can be told.
    with pytest.raises(ValueError, match="since snapshot 6, not 4"):
        frame_between(prev, dataclasses.replace(following, seq=7), {1: a, 2: b})


def test_energy_totals_never_decrease_across_wraps(powercap):
    sampler = powercap.sampler()
    sampler.tick()
    totals = []
    for _ in range(5):
        powercap.advance(0.4)
        frame = sampler.tick()
        totals.append((frame.host_energy_j, frame.sockets[0].energy_j))
    assert totals == sorted(totals)
    assert frame.host_watts == pytest.approx(60.0, rel=1e-6)
    assert totals[-1][0] == pytest.approx(60.0 * 2.0, rel=1e-6)
    assert totals[-1][1] == pytest.approx(20.0 * 2.0, rel=1e-6)
    sampler.close()


# -- the attribution itself, on snapshots made by hand (a psys counter growing by 50 W) --------------
S = 1_000_000_000


@pytest.mark.parametrize("said", [False, True], ids=["every process", "what changed, as a reader says"])
@pytest.mark.parametrize("second_ran", [True, False], ids=["both run again", "one does not"])
def test_a_share_scaled_down_to_fit_the_machine_is_given_back_next_window(said: bool, second_ran: bool):
    infos = {1: process(1, cgroup=APP), 2: process(2, cgroup=APP)}
    carry = Carry()
    s0 = snapshot(0, {1: 0, 2: 0})
    s1 = snapshot(1, {1: 7 * S // 10, 2: 5 * S // 10})  # 1.2 s of CPU in 1 s on one CPU: too much
    s2 = snapshot(2, {1: S, 2: 7 * S // 10 if second_ran else 5 * S // 10})
    if said:  # the second window as the reader gives it: the processes whose time changed, with it before
        s1 = dataclasses.replace(s1, seq=1)
        moved = {k: s1.tasks[k] for k in s2.tasks if s2.tasks[k] != s1.tasks[k]}
        s2 = dataclasses.replace(s2, tasks={k: s2.tasks[k] for k in moved}, seq=2, changed=moved)
    first = frame_between(s0, s1, infos, carry)
    assert sum(c.cpu_share for c in first.consumers) == pytest.approx(1.0)
    assert first.unattributed_watts == pytest.approx(0.0, abs=1e-9)
    second = frame_between(s1, s2, infos, carry)
    shares = {c.info.pid: 0.0 for c in first.consumers}
    for frame in (first, second):
        for c in frame.consumers:
            shares[c.info.pid] += c.cpu_share
        assert sum(c.watts for c in frame.consumers) + frame.unattributed_watts == pytest.approx(50.0)
    # Over both windows each process got exactly the time it used: none was lost to the scaling.
    assert shares == pytest.approx({1: 1.0, 2: 0.7 if second_ran else 0.5})
    assert carry.tasks == {}


def test_exited_descendants_are_a_part_of_a_consumers_figure():
    infos = {1: process(1, cgroup=APP)}
    s0 = snapshot(0, {1: 2 * S}, exited={1: S}, cpus=4)
    s1 = snapshot(1, {1: 3 * S}, exited={1: S + 3 * S // 4}, cpus=4)
    consumer = frame_between(s0, s1, infos, Carry()).consumers[0]
    assert consumer.cpu_ns == S and consumer.exited_cpu_ns == 3 * S // 4
    assert consumer.watts == pytest.approx(50.0 / 4)
    assert consumer.exited_watts == pytest.approx(50.0 / 4 * 0.75)


def test_cgroups_from_their_counters_add_up_to_host_power_with_their_unattributed_part():
    nested = f"{APP}/worker"
    infos = {1: process(1, cgroup=APP), 2: process(2, cgroup=nested), 3: process(3, cgroup="/user.slice")}
    infos[4] = process(4, cgroup="/")
    counters = {"/system.slice/app.service": 10 * S, nested: 5 * S}
    s0 = snapshot(0, {1: 0, 2: 0, 3: 0, 4: 0}, cgroups=counters, cpus=2)
    # The service's counter also has processes that exited (0.6 s of its 1.1 s); it includes its
    # child cgroup's (0.3 s), which keeps its own figure. /user.slice has no counter: its processes.
    later = {"/system.slice/app.service": 10 * S + 11 * S // 10, nested: 5 * S + 3 * S // 10}
    s1 = snapshot(1, {1: S // 5, 2: 3 * S // 10, 3: S // 10, 4: S // 20}, cgroups=later, cpus=2)
    frame = frame_between(s0, s1, infos, Carry())
    groups = {g.key: g for g in frame.cgroups}
    assert groups["/system.slice/app.service"].cpu_share == pytest.approx(0.8 / 2)
    assert groups["/system.slice/app.service"].source == "cgroup"
    assert groups[nested].cpu_share == pytest.approx(0.3 / 2) and groups[nested].source == "cgroup"
    assert groups["/user.slice"].cpu_share == pytest.approx(0.1 / 2)
    assert groups["/user.slice"].source == "processes" and groups["/"].source == "processes"
    assert sum(g.watts for g in frame.cgroups) + frame.unattributed_cgroup_watts == pytest.approx(50.0)
    assert frame.unattributed_cgroup_watts == pytest.approx(50.0 * (1 - 1.25 / 2))
    # The processes' own identity holds beside it.
    assert sum(c.watts for c in frame.consumers) + frame.unattributed_watts == pytest.approx(50.0)


def test_the_agent_s_own_cpu_time_is_counted_to_the_microsecond(powercap):
    """The agent's CPU seconds (and the percentage made of them) follow a tick of a few ms: counted in
    clock ticks (10 ms), most windows would show none and some a whole tick."""
    sampler = Sampler(PowercapSensor(str(powercap.root), clock=powercap.written_at), ProcfsReader())
    seconds = []
    with powercap.running():
        sampler.tick()
        for _ in range(6):
            end = time.thread_time() + 0.003  # 3 ms of CPU in this thread before each tick
            while time.thread_time() < end:
                pass
            frame = sampler.tick()
            assert frame is not None
            seconds.append(frame.agent.cpu_seconds)
    sampler.close()
    used = [b - a for a, b in itertools.pairwise(seconds)]
    assert all(0.003 <= u < 0.05 for u in used), used  # the busy loop's 3 ms and the tick's own
    assert any(abs(u * 100 - round(u * 100)) > 0.01 for u in used), used  # not whole clock ticks
