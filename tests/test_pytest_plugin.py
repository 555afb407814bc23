"""The pytest plugin: `pytest --wattprobe` measures each test; without it, it does nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.paths import REPO

SUITE = '''
import os, sys, time
import pytest

def burn(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass

def test_light_one():
    assert sum(range(100)) == 4950

def test_heavy():
    burn(0.5)

def test_light_two():
    time.sleep(0.01)

def test_fails():
    assert False

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass

def test_no_helper_unless_asked():
    """What the plugin started in this process: a helper (a child running it), the measuring code."""
    me = str(os.getpid())
    children = 0
    for pid in (p for p in os.listdir("/proc") if p.isdigit() and p != me):
        try:
            with open(f"/proc/{pid}/stat") as f:
                children += f.read().rpartition(")")[2].split()[1] == me
        except OSError:  # ended meanwhile
            pass
    with open(os.environ["STARTED"], "w") as f:
        f.write(f"{children} {'wattprobe.api' in sys.modules}")
'''


def run_suite(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest on SUITE in `tmp_path`, with this plugin only (none installed elsewhere autoloaded)."""
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "STARTED": str(tmp_path / "started"),
    }
    command = [sys.executable, "-m", "pytest", "-p", "wattprobe.pytest_plugin", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, "-q", "test_suite.py", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )


def test_each_test_is_measured_and_the_heavy_one_comes_first(tmp_path):
    result = run_suite(tmp_path, "--wattprobe", "--wattprobe-json", "energy.json")
    assert result.returncode == 1, result.stdout + result.stderr  # test_fails failed
    summary = result.stdout.partition("wattprobe: the costliest tests")[2]
    lines = [line for line in summary.splitlines() if "test_suite.py::" in line]
    assert lines and lines[0].endswith("test_suite.py::test_heavy"), summary
    assert "(estimated)" in lines[0] or "J  " in lines[0]
    assert "energy.json" in summary

    document = json.loads((tmp_path / "energy.json").read_text())
    assert document["schema_version"] == 1
    tests = {test["nodeid"].rpartition("::")[2]: test for test in document["tests"]}
    assert set(tests) == {
        "test_light_one",
        "test_heavy",
        "test_light_two",
        "test_fails",
        "test_skipped",
        "test_no_helper_unless_asked",
    }
    heavy = tests["test_heavy"]
    assert heavy["outcome"] == "passed" and heavy["error"] is None
    assert heavy["cpu_seconds"] >= 0.4 and heavy["duration_s"] >= 0.4 and heavy["energy_j"] > 0
    assert all(
        heavy["energy_j"] > t["energy_j"]
        for n, t in tests.items()
        if t["energy_j"] is not None and n != "test_heavy"
    )
    assert isinstance(heavy["estimated"], bool)
    light = tests["test_light_two"]
    assert light["cpu_seconds"] < 0.1 and light["duration_s"] >= 0.01
    assert tests["test_fails"]["outcome"] == "failed" and tests["test_fails"]["cpu_seconds"] is not None
    assert tests["test_skipped"]["outcome"] == "skipped" and tests["test_skipped"]["energy_j"] is None
    # When measured, the helper is this process's child, and the measuring code is loaded.
    assert (tmp_path / "started").read_text() == "1 True"


def test_without_the_option_the_plugin_does_nothing(tmp_path):
    result = run_suite(tmp_path)
    assert result.returncode == 1 and (tmp_path / "started").exists(), result.stdout + result.stderr
    assert "wattprobe" not in result.stdout
    assert (tmp_path / "started").read_text() == "0 False"  # no helper, no measuring code


def test_the_package_registers_the_plugin():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {"wattprobe": "wattprobe.pytest_plugin"}
