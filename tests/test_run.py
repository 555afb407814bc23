"""`wattprobe run -- COMMAND`: the energy of one command, end to end, on a synthetic 40 W tree (`--vm`).

The commands are real processes that report their own CPU time (RUSAGE_SELF + RUSAGE_CHILDREN, the
kernel's sums): the truth the figures are judged against.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.run import REPO, WATTS, can_make_cgroups, vm_tree, wattprobe_run
from wattprobe.commandenergy.carbon import COUNTRIES, WORLD_G_PER_KWH

# Burns `own` s of CPU itself and `child` s in each of `children` short-lived children, prints a line,
# writes its and its children's CPU time (s) to argv[1], and exits 3.
WORKLOAD = r"""
import resource, subprocess, sys, time
own, child, children = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
burn = "import time\nend = time.process_time() + %s\nwhile time.process_time() < end: pass" % child
end = time.process_time() + own
while time.process_time() < end:
    pass
for _ in range(children):
    subprocess.run([sys.executable, "-S", "-c", burn], check=True)
print("the command's own output", flush=True)
s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    f.write(str(s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime))
sys.exit(3)
"""


@pytest.fixture
def tree(tmp_path):
    with vm_tree(tmp_path / "vm-tree") as tree:
        yield tree


@pytest.mark.parametrize("by", ["cgroup", "process tree"])
def test_a_command_and_its_short_lived_children_are_counted_and_its_status_passed_on(tree, tmp_path, by):
    if by == "cgroup" and not can_make_cgroups():
        pytest.skip("this user may not make a cgroup")
    script, truth, out = tmp_path / "workload.py", tmp_path / "truth", tmp_path / "run.json"
    script.write_text(WORKLOAD)
    # Without a cgroup filesystem, the process tree: the ppid chain and exited children's time.
    global_args = ("--cgroupfs-root", str(tmp_path / "no-cgroupfs")) if by == "process tree" else ()
    result = wattprobe_run(
        tree.root,
        "-o",
        str(out),
        "-s",
        "0.5",
        "--",
        sys.executable,
        str(script),
        str(truth),
        "2.0",
        "0.05",
        "30",
        global_args=global_args,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == "the command's own output\n"  # nothing of wattprobe's in the command's stdout
    assert "Traceback" not in result.stderr and "energy" in result.stderr  # the summary, on stderr
    doc = json.loads(out.read_text())
    cpu_s = float(truth.read_text())
    assert 3.0 <= cpu_s <= 5.0, cpu_s  # 2 s itself, 30 x 50 ms in children, and their start-up
    assert doc["measured_by"] == by and doc["exit_code"] == 3 and doc["signal"] is None
    assert doc["sensor"] == "powercap_rapl" and doc["estimated"] is False
    assert doc["cpu_seconds"] == pytest.approx(cpu_s, rel=0.05)
    assert doc["energy_j"] == pytest.approx(cpu_s / doc["n_cpus"] * WATTS, rel=0.05)
    assert doc["host_energy_j"] == pytest.approx(WATTS * doc["duration_s"], rel=0.03)
    assert doc["duration_s"] >= cpu_s / doc["n_cpus"]
    assert doc["share"] == pytest.approx(doc["energy_j"] / doc["host_energy_j"], rel=1e-4)
    assert doc["carbon_intensity_g_per_kwh"] == WORLD_G_PER_KWH
    assert doc["carbon_g"] == pytest.approx(doc["energy_j"] / 3.6e6 * WORLD_G_PER_KWH, rel=1e-4)
    assert doc["host_carbon_g"] == pytest.approx(doc["host_energy_j"] / 3.6e6 * WORLD_G_PER_KWH, rel=1e-4)
    # The timeline adds up to the totals, and no step of the command is above the host.
    timeline = doc["timeline"]
    assert len(timeline) >= 3
    assert sum(s["command_w"] * s["window_s"] for s in timeline) == pytest.approx(doc["energy_j"], rel=1e-4)
    assert sum(s["window_s"] for s in timeline) == pytest.approx(doc["duration_s"], rel=0.02)
    assert all(0 <= s["command_w"] <= s["host_w"] * 1.001 for s in timeline)
    assert doc["average_power_w"] <= doc["peak_power_w"] <= doc["host_peak_power_w"] * 1.001
    # The workload itself is the top process: its own 2 s (its children's time reaped into it is an
    # entry apart; a child caught running by a scan is counted in itself up to then).
    top = doc["top_processes"]
    assert str(script) in top[0]["cmdline"] and 2.0 <= top[0]["cpu_seconds"] <= cpu_s
    assert top[0]["energy_j"] == pytest.approx(top[0]["cpu_seconds"] / doc["n_cpus"] * WATTS, rel=0.05)
    if by == "process tree":
        assert "no cgroup of its own for the command" in result.stderr
    assert not doc["still_running"]


def test_an_orphan_comes_back_to_wattprobe_and_is_counted(tree, tmp_path):
    """A process whose parent ended first is reparented to wattprobe (its subreaper), found in the
    tree, and its time counted when wattprobe reaps it: even without a cgroup."""
    truth, out = tmp_path / "orphan-cpu", tmp_path / "run.json"
    burn = (
        "import resource, sys, time\nend = time.process_time() + 1.0\nwhile time.process_time() < end: pass\n"
        "u = resource.getrusage(resource.RUSAGE_SELF)\nopen(sys.argv[1], 'w').write(str(u.ru_utime + u.ru_stime))"
    )
    # The subshell exits at once; the command waits for the orphan's figure (however slow a loaded
    # machine makes it), then a little more for its end.
    command = (
        f'({sys.executable} -S -c "$0" {truth} &); while [ ! -s {truth} ]; do sleep 0.05; done; sleep 0.3'
    )
    result = wattprobe_run(
        tree.root,
        "-o",
        str(out),
        "-s",
        "0.5",
        "--",
        "sh",
        "-c",
        command,
        burn,
        global_args=("--cgroupfs-root", str(tmp_path / "no-cgroupfs")),
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    orphan_s = float(truth.read_text())
    # The orphan (its time after the last scan that saw it comes from wattprobe's reaped-children
    # time, rounded down to a 10 ms tick), plus a shell and a subshell that start processes and sleep.
    assert orphan_s - 0.02 <= doc["cpu_seconds"] <= orphan_s + 0.2, (orphan_s, doc["cpu_seconds"])
    assert doc["energy_j"] == pytest.approx(doc["cpu_seconds"] / doc["n_cpus"] * WATTS, rel=0.05)


def test_wattprobe_ends_with_the_command_and_says_what_it_left_running(tree, tmp_path):
    out, pid_file = tmp_path / "run.json", tmp_path / "pid"
    started = time.monotonic()
    result = wattprobe_run(
        tree.root, "-o", str(out), "--", "sh", "-c", f"sleep 30 >/dev/null 2>&1 & echo $! > {pid_file}"
    )
    try:
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 20  # it did not wait for the sleep
        doc = json.loads(out.read_text())
        left = int(pid_file.read_text())
        assert doc["still_running"] == [left]
        assert f"still run (pid {left})" in result.stderr
        # The cgroup, if one was made, is gone: what still ran was moved out first.
        assert "wattprobe-run-" not in Path(f"/proc/{left}/cgroup").read_text()
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_command_killed_by_a_signal_exits_128_plus_n(tree, tmp_path):
    out = tmp_path / "run.json"
    result = wattprobe_run(tree.root, "-o", str(out), "--", "sh", "-c", "kill -TERM $$")
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    doc = json.loads(out.read_text())
    assert doc["exit_code"] == 143 and doc["signal"] == "SIGTERM"


# Says "ready", then counts the SIGINTs and SIGTERMs it gets; prints them 1 s after the first, exits 7.
COUNTER = r"""
import signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda n, f: got.append("INT"))
signal.signal(signal.SIGTERM, lambda n, f: got.append("TERM"))
print("ready", flush=True)
while not got:
    time.sleep(0.01)
time.sleep(1.0)
print("got: " + " ".join(got), flush=True)
sys.exit(7)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_sent_to_wattprobe_reaches_the_command_once(tree, tmp_path, signum):
    process = subprocess.Popen(
        [sys.executable, "-m", "wattprobe", "--vm", "run", "--", sys.executable, "-c", COUNTER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "SCAPHANDRE_POWERCAP_PATH": str(tree.root)},
    )
    try:
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert out == f"got: {signum.name[3:]}\n", err
    assert process.returncode == 7, err


def test_ctrl_c_at_a_terminal_reaches_the_command_once(tree):
    """The terminal sends SIGINT to its whole foreground process group, the command included: wattprobe
    does not send it a second one."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: wattprobe on the pty, as in a terminal
        os.chdir(REPO)
        os.environ["SCAPHANDRE_POWERCAP_PATH"] = str(tree.root)
        os.execv(
            sys.executable,
            [sys.executable, "-m", "wattprobe", "--vm", "run", "--", sys.executable, "-c", COUNTER],
        )
    output = b""
    try:
        deadline = time.monotonic() + 30
        while b"ready" not in output and time.monotonic() < deadline:
            output += os.read(fd, 4096)
        os.write(fd, b"\x03")  # Ctrl-C
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    text = output.decode(errors="replace")
    assert "got: INT\r\n" in text, text
    assert os.waitstatus_to_exitcode(status) == 7, text


def test_carbon_from_a_country_or_a_figure(tree, tmp_path):
    for args, grams in ((("--country", "fr"), COUNTRIES["FR"][2]), (("--carbon-intensity", "100"), 100.0)):
        out = tmp_path / "run.json"
        result = wattprobe_run(tree.root, "-o", str(out), *args, "--", "sh", "-c", "exit 0")
        assert result.returncode == 0, result.stderr
        doc = json.loads(out.read_text())
        assert doc["carbon_intensity_g_per_kwh"] == grams
        assert doc["carbon_g"] == pytest.approx(doc["energy_j"] / 3.6e6 * grams, rel=1e-4, abs=1e-9)
        assert doc["host_carbon_g"] == pytest.approx(doc["host_energy_j"] / 3.6e6 * grams, rel=1e-4)
        assert doc["host_energy_j"] > 0


def one_line(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        ((), 2, "no command to run"),
        (("--",), 2, "no command to run"),
        (("--country", "XX", "--", "true"), 2, "no carbon intensity for country 'XX'"),
        (("--country", "FR", "--carbon-intensity", "5", "--", "true"), 2, "not both"),
        (("--carbon-intensity", "-1", "--", "true"), 2, "must be a finite number >= 0"),
        (("-s", "0", "--", "true"), 2, "above 0"),
        (("--", "no-such-command-here"), 127, "command not found"),
        (("--", __file__), 126, "permission denied"),  # not executable
        (("-o", "/no/such/dir/run.json", "--", "true"), 1, "no directory"),
    ],
)
def test_bad_input_is_one_line(tree, args, code, needle):
    result = wattprobe_run(tree.root, *args)
    if code in (126, 127):  # as a shell says it; after the notice of a missing cgroup, if any
        assert result.returncode == code and "Traceback" not in result.stderr, result.stderr
        assert needle in result.stderr.strip().splitlines()[-1]
    else:
        assert needle in one_line(result, code)


def test_an_unwritable_output_stops_before_the_command_runs(tree, tmp_path):
    ran = tmp_path / "ran"
    target = tmp_path / "ro" / "x.json"
    target.parent.mkdir()
    os.chmod(target.parent, 0o500)
    if os.geteuid() == 0:  # root writes anywhere: a directory given as the file instead
        target = tmp_path
    result = wattprobe_run(tree.root, "--report", str(target), "--", "touch", str(ran))
    assert "cannot write" in one_line(result, 1)
    assert not ran.exists()


def test_the_summary_shows_command_lines_as_they_are(tree):
    """Brackets in a command line are text, not terminal markup: in the title, and in the top
    processes (a child whose command line is gone by the time it is read shows as [comm])."""
    burn = "import time\nwhile time.process_time() < .3: 0"
    result = wattprobe_run(tree.root, "-s", "0.1", "--", "python3", "-c", burn, "[bold]x[/bold]")
    assert result.returncode == 0, result.stderr
    title, top = result.stderr.split("top processes")
    assert "[bold]x[/bold]" in title and "[bold]x[/bold]" in top
