"""`wattprobe.measure()`: a block of Python, or a function, measured in a process that is not the agent."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import wattprobe
from tests.support.measuring import measured
from tests.support.run import REPO, WATTS, vm_tree
from wattprobe.commandenergy.carbon import COUNTRIES
from wattprobe.sources.procfs import TICK_NS


@pytest.fixture
def vm(tmp_path):
    """A 40 W tree that `vm=True` reads, as `--vm` does. Its writer is a child of this process: the
    measured blocks run in processes of their own, where their children are only theirs."""
    with vm_tree(tmp_path / "vm-tree") as tree:
        yield tree


def test_a_block_that_burns_cpu(vm):
    m = measured(
        vm,
        """
        with wattprobe.measure(vm=True, step=0.25) as m:
            used = burn(1.5)
        figures(m, used=used)
        """,
    )
    assert m["sensor"] == "powercap_rapl" and m["estimated"] is False and m["error"] is None
    # The sampler thread's own work is left out: the figures are the block's.
    assert m["cpu_seconds"] == pytest.approx(m["used"], rel=0.05)
    assert m["energy_j"] == pytest.approx(m["used"] / m["n_cpus"] * WATTS, rel=0.05)
    assert m["host_energy_j"] == pytest.approx(WATTS * m["duration_s"], rel=0.03)
    assert m["duration_s"] >= m["used"] / m["n_cpus"]
    assert m["carbon_g"] == pytest.approx(m["energy_j"] / 3.6e6 * 481, rel=1e-9)
    assert m["host_carbon_g"] == pytest.approx(m["host_energy_j"] / 3.6e6 * 481, rel=1e-9)
    assert "J in" in m["repr"]


def test_children_of_the_block_count_and_the_measuring_does_not(vm):
    m = measured(
        vm,
        """
        child = "import time\\nend = time.process_time() + 0.6\\nwhile time.process_time() < end: pass"
        with wattprobe.measure(vm=True, step=0.1) as m:
            subprocess.run([sys.executable, "-S", "-c", child], check=True)
            time.sleep(0.5)  # the sampler works meanwhile; its time is not the block's
        figures(m)
        """,
    )
    # The child, and its start-up; what it used after it was last seen comes from its parent's
    # cutime, in clock ticks rounded down.
    assert 0.6 - 2 * TICK_NS / 1e9 <= m["cpu_seconds"] <= 0.6 + 0.15, m
    assert m["energy_j"] == pytest.approx(m["cpu_seconds"] / m["n_cpus"] * WATTS, rel=0.05)
    # What measuring costs: a tick per step. Ten ticks a second stay far below 5 % of a core.
    assert 0 < m["overhead_cpu_s"] < 0.05 * m["duration_s"], m


def test_a_sleeping_block_gets_none_of_the_samplers_time(vm):
    m = measured(
        vm,
        """
        with wattprobe.measure(vm=True, step=0.05) as m:
            time.sleep(1.5)
        figures(m)
        """,
    )
    # Thirty ticks of the sampler's thread ran in the process, and are left out: reported apart, and
    # far above what the sleeping block itself used (a bound on their cost alone, such as 30 ms, would
    # say how fast a tick is, not whether it was left out).
    assert m["overhead_cpu_s"] > 0.005, m
    assert m["cpu_seconds"] <= min(0.025, m["overhead_cpu_s"] / 2), m


def test_a_decorated_function_is_measured_at_each_call(vm):
    m = measured(
        vm,
        """
        @wattprobe.measure(vm=True, country="FR", step=0.25)
        def work(seconds):
            burn(seconds)
            return "done"

        assert work(0.3) == "done"
        first = work.measurement.energy_j, work.measurement.cpu_seconds
        assert work(0.9) == "done"
        last = work.measurement.energy_j, work.measurement.cpu_seconds

        @wattprobe.measure(vm=True)
        def fails():
            burn(0.2)
            raise KeyError("the caller's own error")

        try:
            fails()
        except KeyError:
            raised = True
        figures(work.measurement, first=first, last=last, label=work.measurement.result.command,
                raised=raised, failed_energy_j=fails.measurement.energy_j)
        """,
    )
    assert m["carbon_g"] == pytest.approx(m["last"][0] / 3.6e6 * COUNTRIES["FR"][2], rel=1e-9)
    # The object holds the last call's figures: its CPU time (its energy is a share of the host's,
    # which on a loaded machine is not proportional to it).
    assert m["last"][1] > 2 * m["first"][1] > 0 and m["first"][0] > 0 and m["last"][0] > 0
    assert m["label"] == ["work"]
    assert m["raised"] and m["failed_energy_j"] > 0  # the caller's error goes through, measured


def test_one_measurement_runs_one_block_at_a_time(vm, monkeypatch):
    monkeypatch.setenv("SCAPHANDRE_POWERCAP_PATH", str(vm.root))
    m = wattprobe.measure(vm=True)
    with m, pytest.raises(RuntimeError, match="already running"), m:
        pass
    with m:  # and again afterwards, anew
        time.sleep(0.1)
    assert m.energy_j is not None and m.host_energy_j > 0


def test_bad_arguments_raise_at_once():
    with pytest.raises(TypeError, match="unknown argument 'sesnor'"):
        wattprobe.measure(sesnor="estimate")
    with pytest.raises(ValueError, match="tdp: must be a finite number above 0"):
        wattprobe.measure(tdp=-5)
    with pytest.raises(ValueError, match="expected one of"):
        wattprobe.measure(sensor="rapl")
    with pytest.raises(ValueError, match="not both"):
        wattprobe.measure(country="FR", carbon_intensity=50)
    with pytest.raises(ValueError, match="no carbon intensity for country"):
        wattprobe.measure(country="Atlantis")
    with pytest.raises(ValueError, match="step"):
        wattprobe.measure(step=0)


SCRIPT = """
import wattprobe
for _ in range(3):
    with wattprobe.measure(sensor="powercap_rapl", powercap_root="/nonexistent/powercap") as m:
        ran = True
    assert ran and m.energy_j is None and m.carbon_g is None and m.estimated is None
print(m.error)
"""


def test_without_a_sensor_the_block_runs_and_one_line_says_why():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert "no powercap tree at /nonexistent/powercap" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no energy measured" in lines[0], result.stderr  # once, not per block


def test_import_wattprobe_stays_light():
    heavy = ("rich", "matplotlib", "numpy", "prometheus_client", "serial", "google")
    code = (
        "import sys, wattprobe\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r} or m.startswith('wattprobe.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
    code = "import sys, wattprobe\nwattprobe.measure\nprint(sorted(m for m in sys.modules if m.split('.')[0] in %r))"
    result = subprocess.run([sys.executable, "-c", code % (heavy,)], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr  # nor does the API


def test_counters_that_stand_still_give_no_energy_rather_than_zero(tmp_path):
    """A figure is right or absent: a tree written once and never again gives `energy_j` None and an
    `error` saying why (it gave 0.0 J, 0.0 s and no error), while the CPU time still comes from the
    kernel's count of the block."""
    from tests.support.powercap_tree import PowercapTree

    still = PowercapTree(tmp_path / "still", start_uj=10**9, max_uj=2**60)  # never advanced
    m = measured(
        still,
        """
        with wattprobe.measure(vm=True, step=0.1) as m:
            end = time.process_time() + 0.3
            while time.process_time() < end:
                pass
        figures(m)
        """,
    )
    assert m["energy_j"] is None and m["host_energy_j"] is None and m["carbon_g"] is None, m
    assert "gave no energy" in m["error"], m
    assert m["duration_s"] is not None and m["duration_s"] >= 0.3, m
    assert "no energy figure" in m["repr"], m
