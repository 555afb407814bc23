"""The command line end to end: real subprocesses, synthetic powercap trees, bad input."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import statistics
import subprocess

import pytest

from tests.support import agents
from tests.support.powercap_tree import PowercapTree
from tests.support.waiting import wait_for
from wattprobe import __version__

# The agent runs as a subprocess against a tree another process advances in real time: on a busy
# 2-core machine that writer can lag a few tens of ms, so single short windows get a loose bound.
# Exact power is tested in-process with a deterministic clock (test_powercap, test_attribution).
REAL_TIME = 0.1


def wattprobe(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()):
    """`wattprobe ARGS` run to its end, with `env` over this environment."""
    return agents.run([*prefix, *agents.command(*args)], env={**os.environ, **(env or {})})


def one_error_line(result, code: int) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_version():
    result = wattprobe("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"wattprobe {__version__}"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("stdout", "-s", "abc"), "not a number"),
        (("stdout", "-s", "0"), "the step must be above 0"),
        (("stdout", "-p", "-3"), "must be >= 0"),
        (("stdout", "-r", "(unclosed"), "bad regular expression"),
        (("json", "-s", "0", "-n", "0"), "step"),
        (("json", "-s", "1e300"), "the step must be above 0 seconds and at most 86400 (a day)"),
        (("json", "-t", "-5"), "--timeout: must be a finite number above 0, got '-5'"),
        (("json", "-t", "0"), "--timeout: must be a finite number above 0, got '0'"),
        (("powerapi", "-t", "-1"), "--timeout: must be a finite number above 0"),
        (("stdout", "-t", "0"), "--timeout: must be above 0 (or negative: run until stopped)"),
        (("-s", "bogus", "stdout"), "invalid choice"),
        (("--tdp", "-5", "stdout"), "must be a finite number above 0"),
        (("--vcpu-min-watts", "nan", "stdout"), "not a number"),
        (
            ("-s", "estimate", "--vcpu-min-watts", "5", "--vcpu-max-watts", "1", "stdout"),
            "below --vcpu-min-watts",
        ),
        (("nosuchexporter",), "invalid choice"),
        ((), "required"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args, needle):
    assert needle in one_error_line(wattprobe(*args), 2)


def test_missing_powercap_names_every_fix(tmp_path):
    line = one_error_line(
        wattprobe("-s", "powercap_rapl", "--powercap-root", str(tmp_path / "no"), "stdout"), 1
    )
    assert "modprobe intel_rapl_common" in line and "--vm" in line and "-s estimate" in line


def test_vm_without_an_exported_tree_says_where_it_looked(tmp_path):
    missing = tmp_path / "scaphandre"
    line = one_error_line(
        wattprobe("-s", "powercap_rapl", "--vm", "stdout", env={"SCAPHANDRE_POWERCAP_PATH": str(missing)}), 1
    )
    assert str(missing) in line and "exported by the host" in line


@pytest.mark.skipif(
    not shutil.which("setpriv"), reason="needs setpriv to drop root's file-permission override"
)
def test_root_only_energy_uj_gives_the_permission_fix(powercap):
    for path in powercap.paths.values():
        path.chmod(0o000)
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that let it
        prefix = ("setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search")
    result = wattprobe("-s", "powercap_rapl", "--powercap-root", str(powercap.root), "stdout", prefix=prefix)
    line = one_error_line(result, 1)
    assert "permission denied" in line and "chgrp powercap" in line and "Linux 5.10" in line


def test_auto_falls_back_to_estimate_and_says_why_once(tmp_path):
    result = wattprobe("--powercap-root", str(tmp_path / "none"), "stdout", "-t", "1", "-s", "0.5")
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.splitlines()  # one line: why, what instead, how to measure
    assert "no usable powercap tree" in line and "modprobe intel_rapl_common" in line
    assert "estimating power from CPU load" in line
    assert "-s estimate" not in line  # the estimate is already what it does
    hosts = [line for line in result.stdout.splitlines() if line.startswith("Host:")]
    assert len(hosts) == 2 and all("(estimated)" in line for line in hosts)


def test_stdout_on_a_synthetic_tree(powercap):
    with powercap.running():
        result = wattprobe("--powercap-root", str(powercap.root), "stdout", "-t", "1", "-s", "0.5", "-p", "3")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    host = [line for line in lines if line.startswith("Host:")]
    assert len(host) == 2
    watts = float(host[-1].split("\t")[1].split()[0])
    assert watts == pytest.approx(60.0, rel=REAL_TIME)
    assert "from psys" in host[-1] and "estimated" not in host[-1]
    assert any(line.startswith("Socket0\t") for line in lines) and any(
        line.startswith("Socket1\t") for line in lines
    )
    assert "Top 3 consumers:" in lines


def test_vm_reads_the_tree_named_by_the_environment(powercap):
    with powercap.running():
        result = wattprobe(
            "--vm", "json", "-t", "1", "-s", "0.5", env={"SCAPHANDRE_POWERCAP_PATH": str(powercap.root)}
        )
    assert result.returncode == 0, result.stderr
    documents = json.loads(result.stdout)
    assert len(documents) == 2
    assert documents[-1]["host"]["consumption"] == pytest.approx(60e6, rel=REAL_TIME)


def test_json_is_valid_after_sigterm_and_has_every_socket(powercap, tmp_path):
    out = tmp_path / "out.json"
    command = agents.command("--powercap-root", str(powercap.root), "json", "-s", "0", "-n", "300000000")
    with powercap.running():
        process = agents.start(
            [*command, "-m", "50", "--resources", "-f", str(out)], stderr=subprocess.PIPE, text=True
        )
        wait_for(lambda: out.read_text().count('"host"') >= 3, 20, "three documents", alive=process)
        stderr = agents.stop(process, timeout_s=5)
        assert process.returncode == 0, stderr
    documents = json.loads(out.read_text())
    assert len(documents) >= 3
    last = documents[-1]
    # 0.3 s windows: one late write of the tree moves power between two of them; their median stays.
    assert statistics.median(d["host"]["consumption"] for d in documents) == pytest.approx(
        60e6, rel=REAL_TIME
    )
    assert last["host"]["estimated"] is False and last["host"]["source"] == "psys"
    assert [s["id"] for s in last["sockets"]] == [0, 1]
    assert sorted(d["name"] for d in last["sockets"][1]["domains"]) == ["core", "dram", "uncore"]
    assert 0 < len(last["consumers"]) <= 50
    assert all(
        {"exe", "cmdline", "pid", "consumption", "timestamp", "container", "resources_usage"} <= c.keys()
        for c in last["consumers"]
    )
    # The agent itself works every step: it is among the consumers, with its memory.
    agent = [c for d in documents for c in d["consumers"] if c["pid"] == process.pid]
    assert agent and all(c["resources_usage"]["memory_usage"] > 1_000_000 for c in agent)
    total = sum(c["consumption"] for c in last["consumers"])
    assert total <= last["host"]["consumption"] - last["host"]["unattributed_consumption"] + 1e-3


def test_json_stopped_before_the_first_step_is_still_valid(tmp_path):
    out = tmp_path / "out.json"
    # SIGINT as a terminal sends it: a process started with it ignored keeps it ignored, as Python does
    # (a shell without job control starts its background commands so: CI run with `&` did).
    process = agents.start(
        agents.command("-s", "estimate", "json", "-s", "30", "-f", str(out)),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(out.exists, 10, "the agent to open its file", alive=process)  # it handles signals by then
    agents.stop(process, signum=signal.SIGINT, timeout_s=5)
    assert process.returncode == 0
    assert json.loads(out.read_text()) == []


def test_json_unwritable_file_is_one_line(tmp_path):
    line = one_error_line(wattprobe("-s", "estimate", "json", "-f", str(tmp_path / "no" / "out.json")), 1)
    assert "cannot write" in line


@pytest.mark.parametrize(
    ("path", "reason"), [("/dev/full", "No space left on device"), ("/proc/version", "")]
)
def test_json_write_errors_are_one_line(path, reason):
    line = one_error_line(wattprobe("-s", "estimate", "json", "-s", "0.1", "-t", "1", "-f", path), 1)
    assert line.startswith(f"wattprobe: error: cannot write {path}: {reason}")


def test_json_on_a_full_disk_stops_with_a_valid_array(tmp_path):
    out = tmp_path / "out.json"
    limit = 20_000  # bytes: the file size limit stands for a disk that fills up

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = agents.run(
        agents.command("-s", "estimate", "json", "-s", "0.05", "-m", "1000", "-t", "20", "-f", str(out)),
        preexec_fn=small_files,
    )
    assert "File too large" in one_error_line(result, 1)
    documents = json.loads(out.read_text())  # what was written before the error is a complete array
    assert len(documents) >= 1 and out.stat().st_size <= limit


def test_json_stdout_closed_by_its_reader_is_one_line():
    command = agents.command("-s", "estimate", "json", "-s", "0.05", "-t", "20")
    agent = agents.start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    agent.stdout.read(10)
    agent.stdout.close()  # the reader goes away, as `| head -c 10` does
    assert agent.wait(timeout=20) == 1
    stderr = agent.stderr.read()
    assert stderr.strip() == "wattprobe: error: cannot write standard output: its reader closed it"


def test_a_failed_start_leaves_an_existing_report_alone(tmp_path):
    out = tmp_path / "report.json"
    out.write_text("[]\n")
    result = wattprobe(
        "-s", "powercap_rapl", "--powercap-root", str(tmp_path / "none"), "json", "-f", str(out)
    )
    one_error_line(result, 1)
    assert out.read_text() == "[]\n"


@pytest.mark.parametrize("content", ["", "garbage\n", "-5\n"])
def test_an_unreadable_counter_at_start_is_one_line(powercap, content):
    powercap.paths[(0, "dram")].write_text(content)
    line = one_error_line(
        wattprobe("-s", "powercap_rapl", "--powercap-root", str(powercap.root), "stdout"), 1
    )
    assert "energy counter" in line and str(powercap.paths[(0, "dram")]) in line


@pytest.mark.parametrize("sensor", ["auto", "powercap_rapl"])
@pytest.mark.parametrize("tree", ["missing", "empty", "garbled"])
def test_vm_without_a_usable_tree_is_an_error_whatever_the_sensor(tmp_path, sensor, tree):
    root = tmp_path / "scaphandre"
    if tree != "missing":
        root.mkdir()
    if tree == "garbled":
        PowercapTree(root, {(0, "package"): 30.0}).paths[(0, "package")].write_text("12a\n")
    result = wattprobe("-s", sensor, "--vm", "json", "-t", "1", env={"SCAPHANDRE_POWERCAP_PATH": str(root)})
    line = one_error_line(result, 1)
    assert str(root) in line
    assert "mount the host's export at /var/scaphandre" in line and "SCAPHANDRE_POWERCAP_PATH" in line
    assert "estimat" not in line
    assert result.stdout == ""


@pytest.mark.parametrize("sensor", ["estimate", "powerspy2"])
def test_vm_with_a_sensor_of_its_own_is_a_usage_error(sensor):
    assert "--vm reads the powercap tree the host exports" in one_error_line(
        wattprobe("-s", sensor, "--vm", "stdout"), 2
    )


def qemu_agent(tmp_path, root: str):
    """An agent that runs the qemu output on `root` for one second."""
    config = tmp_path / "agent.toml"
    config.write_text(f"timeout = 1\n[outputs.qemu]\noutput_root = '{root}'\n")
    return wattprobe("-s", "estimate", "agent", "-c", str(config))


def test_a_qemu_root_that_is_a_file_says_so(tmp_path):
    """It said "run as root", to root too."""
    root = tmp_path / "passwd"
    root.write_text("root:x:0:0::/root:/bin/sh\n")
    line = one_error_line(qemu_agent(tmp_path, str(root)), 1)
    assert line == f"wattprobe: error: {root} is not a directory: choose another --output-root"
    assert root.read_text() == "root:x:0:0::/root:/bin/sh\n"


def test_a_qemu_root_is_made_but_never_its_parents(tmp_path):
    """A missing parent (a typo, a host without libvirt) used to be made silently, with its parents."""
    root = tmp_path / "none" / "scaphandre"
    line = one_error_line(qemu_agent(tmp_path, str(root)), 1)
    assert line == (
        f"wattprobe: error: cannot create {root}: {tmp_path / 'none'} does not exist; create it, or choose "
        "another --output-root"
    )
    assert not (tmp_path / "none").exists()
    result = qemu_agent(tmp_path, str(tmp_path / "scaphandre"))  # its parent exists: made
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "scaphandre").is_dir()
