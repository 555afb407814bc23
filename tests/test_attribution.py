"""Attribution with real busy processes on a synthetic powercap tree (the counters' guards: test_counters)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wattprobe.core.sampler import Sampler
from wattprobe.sources.powercap import PowercapSensor
from wattprobe.sources.procfs import ProcfsReader


def duty_cycle_child(duty: float, seconds: float) -> subprocess.Popen:
    """Burns CPU `duty` of each 20 ms for `seconds`, prints its own CPU time (ns), waits for stdin to close."""
    code = (
        "import sys, time\n"
        f"end = time.monotonic() + {seconds}\n"
        "while (now := time.monotonic()) < end:\n"
        f"    busy_until = now + 0.02 * {duty}\n"
        "    while time.monotonic() < busy_until: pass\n"
        f"    time.sleep(0.02 * {1 - duty})\n"
        "print(time.process_time_ns(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_busy_processes_get_their_cpu_share_of_host_power(powercap):
    sampler = Sampler(PowercapSensor(str(powercap.root), clock=powercap.written_at), ProcfsReader())
    with powercap.running():
        sampler.tick()
        children = [duty_cycle_child(0.8, 1.5), duty_cycle_child(0.3, 1.5)]
        try:
            own_ns = [int(child.stdout.readline()) for child in children]
            frame = sampler.tick()
        finally:
            for child in children:
                child.stdin.close()
                child.wait()
    assert frame is not None
    # Real time on a busy 2-core machine: exact power is tested with a deterministic clock elsewhere.
    assert frame.host_watts == pytest.approx(60.0, rel=0.03)
    assert frame.host_source == "psys" and not frame.estimated
    machine_ns = frame.n_cpus * frame.window_s * 1e9
    by_pid = {c.info.pid: c for c in frame.consumers}
    for child, ns in zip(children, own_ns, strict=True):
        consumer = by_pid[child.pid]
        assert consumer.cpu_share == pytest.approx(ns / machine_ns, rel=0.05)
        assert consumer.watts == pytest.approx(frame.host_watts * ns / machine_ns, rel=0.05)
    # Conservation: every watt is a consumer's or unattributed.
    total = sum(c.watts for c in frame.consumers) + frame.unattributed_watts
    assert total == pytest.approx(frame.host_watts, rel=1e-6)
    # Aggregates add up too.
    assert sum(g.watts for g in frame.cgroups) == pytest.approx(
        frame.host_watts - frame.unattributed_watts, rel=1e-6
    )
    assert sum(g.watts for g in frame.exes) == pytest.approx(
        frame.host_watts - frame.unattributed_watts, rel=1e-6
    )
    # Sockets and domains carry their own power.
    assert [s.id for s in frame.sockets] == [0, 1]
    for socket in frame.sockets:
        assert socket.watts == pytest.approx(20.0, rel=0.03)
        assert {d.name: round(d.watts) for d in socket.domains} == {"core": 12, "uncore": 3, "dram": 5}
    sampler.close()


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
