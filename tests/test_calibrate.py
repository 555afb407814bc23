"""The calibrated model and the published ones: the fit, the model file, the choice of model without
one, estimated figures named in every output, and the one-line errors of `calibrate` and `--model`.
The calibration against a measured tree is in test_calibrate_accuracy.py (slow)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import pytest

from tests.support import agents, frames
from tests.support.powercap_tree import FakeClock
from tests.support.procfs import write_stat
from tests.support.prometheus import registry, samples
from wattprobe.commands.calibrate import Point, document
from wattprobe.core.counters import energy_deltas, host_energy
from wattprobe.sinks import json as json_sink
from wattprobe.sinks.prometheus.series import SeriesSettings
from wattprobe.sinks.stdout import Settings as StdoutSettings
from wattprobe.sinks.stdout import render_text
from wattprobe.sources import SourceSettings
from wattprobe.sources.cpuinfo import read_cpu_identity
from wattprobe.sources.estimate import (
    CPU_PROFILES,
    Boavizta,
    Curve,
    EstimateSensor,
    LinearPerVcpu,
    best_known,
    choose_model,
    isotonic,
    load_model,
)

GOLD = "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"
# A calibration: package and dram at five measured loads, one point below the one before it.
POINTS = [
    Point(0, 0.02, 24.0, {"package": 21.0, "dram": 3.0}, 4),
    Point(25, 0.27, 50.0, {"package": 47.0, "dram": 3.0}, 4),
    Point(50, 0.5, 65.0, {"package": 62.0, "dram": 3.0}, 4),
    Point(75, 0.74, 64.0, {"package": 61.0, "dram": 3.0}, 4),  # noise: below the 50 % point
    Point(100, 1.0, 83.0, {"package": 80.0, "dram": 3.0}, 4),
]


def write_cpuinfo(root: Path, model: str, *, sockets: int = 1, cpus: int = 2, virtual: bool = False) -> None:
    flags = "fpu sse2 hypervisor" if virtual else "fpu sse2"
    blocks = [
        f"processor\t: {i}\nmodel name\t: {model}\nphysical id\t: {i % sockets}\nflags\t\t: {flags}\n"
        for i in range(cpus)
    ]
    (root / "cpuinfo").write_text("\n".join(blocks))


def model_file(tmp_path: Path, cpu_model: str | None = GOLD, n_cpus: int = 2) -> Path:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(document(POINTS, cpu_model, n_cpus, "powercap_rapl", "package+dram")))
    return path


def power(sensor: EstimateSensor, clock: FakeClock, root: Path, busy: int, idle: int) -> tuple[float, str]:
    """Host power and its source over a 1 s window in which the CPUs moved by busy and idle ticks."""
    write_stat(root, 1000, 1000, cpus=2)
    before = sensor.read()
    clock.ns += 10**9
    write_stat(root, 1000 + busy, 1000 + idle, cpus=2)
    host_uj, source = host_energy(energy_deltas(before, sensor.read()))
    return host_uj / 1e6, source


# -- the fit ------------------------------------------------------------------------------------------------
def test_isotonic_pools_the_points_that_fall():
    assert isotonic([1, 3, 2, 4]) == [1, 2.5, 2.5, 4]
    assert isotonic([5, 4, 3]) == [4, 4, 4]
    assert isotonic([1, 2, 3]) == [1, 2, 3]
    assert isotonic([3, 1], [3, 1]) == [2.5, 2.5]


def test_the_curve_is_monotone_and_extends_its_ends():
    curve = Curve.fit([(0.1, 30.0), (0.5, 62.0), (0.6, 60.0), (0.9, 77.0)])
    assert [y for _, y in curve.points] == [30.0, 61.0, 61.0, 77.0]
    assert curve(0.3) == pytest.approx(45.5)
    assert curve(0.0) == pytest.approx(22.25)  # the first segment extended to an idle machine
    assert curve(1.0) == pytest.approx(77 + 16 / 0.3 * 0.1)
    assert curve(2.0) == curve(1.0) and curve(-1) == curve(0)
    loads = [i / 100 for i in range(101)]
    assert all(curve(a) <= curve(b) for a, b in itertools.pairwise(loads))


def test_the_model_file_holds_points_fit_and_errors(tmp_path):
    made = json.loads(model_file(tmp_path).read_text())
    assert made["schema_version"] == 1 and made["cpu_model"] == GOLD and made["n_cpus"] == 2
    assert made["fit"]["domains"]["package"][2:4] == [[0.5, 61.5], [0.74, 61.5]]  # pooled
    fifty, seventy_five = made["points"][2:4]
    assert fifty["fit_watts"] == pytest.approx(64.5) and fifty["fit_error_percent"] == pytest.approx(-0.77)
    assert seventy_five["fit_error_percent"] == pytest.approx(0.78)
    assert made["points"][0]["fit_error_percent"] == 0  # unpooled points are fitted exactly
    assert made["fit"]["host"][-1] == [1.0, 83.0]


def test_the_estimate_follows_the_calibrated_curves(tmp_path):
    clock = FakeClock()
    sensor = EstimateSensor(str(tmp_path), power_model=load_model(str(model_file(tmp_path))), clock=clock)
    assert power(sensor, clock, tmp_path, busy=135, idle=365) == (
        pytest.approx(50.0, rel=1e-3),
        "package+dram",
    )
    assert power(sensor, clock, tmp_path, busy=500, idle=0)[0] == pytest.approx(83.0, rel=1e-3)
    assert sensor.model == f"calibrated model.json (powercap_rapl, {GOLD}, 2 CPUs)"


# -- the model chosen -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "virtual", "expected"),
    [
        (GOLD, False, Boavizta("Xeon Gold", 2)),
        (GOLD, True, LinearPerVcpu(*CPU_PROFILES["cascadelake"], family="cascadelake")),
        ("Intel(R) Xeon(R) Platinum 8175M CPU @ 2.50GHz", True, LinearPerVcpu(0.65, 4.26, "skylake")),
        ("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz", False, LinearPerVcpu(0.71, 3.69, "broadwell")),
        ("Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", False, LinearPerVcpu(2.17, 8.58, "sandybridge")),
        ("AMD EPYC 7R32", True, LinearPerVcpu(0.47, 1.69, "epyc2")),
        ("AMD EPYC 7763 64-Core Processor", True, LinearPerVcpu(0.45, 2.02, "epyc3")),
        ("Intel(R) Xeon(R) Processor", True, LinearPerVcpu(0.74, 3.5)),
    ],
)
def test_without_a_model_the_best_published_one_for_this_cpu(tmp_path, model, virtual, expected):
    write_cpuinfo(tmp_path, model, sockets=2, cpus=4, virtual=virtual)
    assert best_known(read_cpu_identity(str(tmp_path))) == expected


def test_boavizta_curve_per_socket():
    watts = Boavizta("Xeon Gold", 2).watts(0.5, 64)
    per_socket = 35.5688 * math.log(0.2438 * (50 + 9.6694)) - 0.6087
    assert watts == {(0, "package"): pytest.approx(per_socket), (1, "package"): pytest.approx(per_socket)}
    assert per_socket == pytest.approx(94.62, abs=0.01)


def test_given_coefficients_win_over_the_cpu_name(tmp_path):
    write_cpuinfo(tmp_path, GOLD)
    assert choose_model(SourceSettings(name="estimate", procfs_root=str(tmp_path))) == Boavizta(
        "Xeon Gold", 1
    )
    chosen = choose_model(SourceSettings(name="estimate", procfs_root=str(tmp_path), cpu_profile="epyc2"))
    assert chosen == LinearPerVcpu(0.47, 1.69, "epyc2")


# -- marked everywhere --------------------------------------------------------------------------------------
def test_every_output_names_the_model_of_estimated_figures():
    named = "calibrated model.json (powercap_rapl, Xeon, 2 CPUs)"
    frame = dataclasses.replace(
        frames.frame(sensor="estimate", estimated=True, host_source="package"), model=named
    )
    host = json_sink.document(frame, json_sink.Settings())["host"]
    assert host["estimated"] is True and host["model"] == named
    info = samples(registry(frame, SeriesSettings()), "wattprobe_sensor_info")
    assert info == [({"sensor": "estimate", "source": "package", "estimated": "true", "model": named}, 1.0)]
    assert f"estimated by the {named}" in render_text(frame, StdoutSettings()).splitlines()[0]
    measured = frames.frame()  # measured figures: no model, nothing added
    assert json_sink.document(measured, json_sink.Settings())["host"]["model"] is None
    assert "model" not in samples(registry(measured, SeriesSettings()), "wattprobe_sensor_info")[0][0]


# -- one line each ----------------------------------------------------------------------------------------
def one_line(result, code: int) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_calibrate_refuses_the_estimate(tmp_path):
    out = tmp_path / "model.json"
    line = one_line(agents.run(agents.command("-s", "estimate", "calibrate", "-o", str(out))), 2)
    assert "calibrate needs measured power" in line and "-s powerspy2" in line
    line = one_line(
        agents.run(agents.command("--powercap-root", str(tmp_path), "calibrate", "-o", str(out))), 1
    )
    assert "calibrate needs measured power, and no RAPL zones" in line and "-s estimate" not in line
    assert not out.exists()


def test_a_missing_model_is_one_line(tmp_path):
    result = agents.run(
        agents.command("-s", "estimate", "--model", str(tmp_path / "none.json"), "json", "-t", "1")
    )
    line = one_line(result, 1)
    assert "cannot read the model" in line and "No such file" in line and "wattprobe calibrate -o" in line


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "is not JSON"),
        ('{"schema_version": 9}', "schema_version 9"),
        ('{"schema_version": 1, "n_cpus": 2, "sensor": "x", "fit": {"domains": {"package": [[0, 50], [1, 20]]}}}',
         "must rise with load"),
        ('{"schema_version": 1, "sensor": "x", "fit": {"domains": {"package": [[0, 20]]}}}', "n_cpus"),
        ('{"schema_version": 1, "n_cpus": 2, "sensor": "x", "fit": {"domains": {"package": [[2, 20]]}}}',
         "0..1"),
        ("[1, 2]", "not an object"),
    ],
)  # fmt: skip
def test_a_malformed_model_is_one_line(tmp_path, content, why):
    path = tmp_path / "bad.json"
    path.write_text(content)
    line = one_line(agents.run(agents.command("-s", "estimate", "--model", str(path), "json", "-t", "1")), 2)
    assert why in line and "wattprobe calibrate -o" in line


def test_another_hosts_model_is_said_once_and_used(tmp_path):
    procfs = tmp_path / "proc"
    procfs.mkdir()
    write_stat(procfs, cpus=2)
    write_cpuinfo(procfs, "AMD EPYC 7R32")
    model = model_file(tmp_path)
    result = agents.run(
        agents.command("-s", "estimate", "--procfs-root", str(procfs), "--model", str(model), "json", "-s", "0.2",
                       "-t", "0.5")
    )  # fmt: skip
    line = one_line(result, 0)
    assert f"made on a {GOLD}, this host has a AMD EPYC 7R32" in line
    docs = json.loads(result.stdout)
    assert docs and all(d["host"]["model"].startswith("calibrated model.json") for d in docs)


def test_a_commands_estimated_figures_name_their_model(tmp_path: Path) -> None:
    """`run`'s JSON, its summary and its HTML report say which model made estimated figures, as every
    output of the agent does."""
    out, page = tmp_path / "run.json", tmp_path / "run.html"
    result = agents.run(
        agents.command(
            "-s",
            "estimate",
            "--tdp",
            "65",
            "run",
            "-s",
            "0.2",
            "-o",
            str(out),
            "--report",
            str(page),
            "--",
            "sleep",
            "0.5",
        ),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    model = json.loads(out.read_text())["model"]
    assert json.loads(out.read_text())["estimated"] is True and "65" in model, model
    assert f"estimate ({model})" in result.stderr, result.stderr
    assert f"({model})" in page.read_text()
