"""What the command of `wattprobe run` gets from wattprobe: every signal sent to wattprobe (none kills
wattprobe, which still reports), a stop that stops both, and the limit on open files wattprobe was given,
not the one it raised for itself."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys

import pytest

from tests.support import agents
from tests.support.processes import children, pending, stat_fields
from tests.support.run import vm_tree
from tests.support.waiting import wait_for

# Traps the signals numbered in argv[1:], says "ready", and once it got them all (or after 20 s) prints
# their numbers, sorted, and exits 5.
TRAPS = r"""
import signal, sys, time
wanted = {int(n) for n in sys.argv[1:]}
got = set()
for n in wanted:
    signal.signal(n, lambda n, f: got.add(n))
print("ready", flush=True)
end = time.monotonic() + 20
while got != wanted and time.monotonic() < end:
    time.sleep(0.01)
print("got:", *sorted(got), flush=True)
sys.exit(5)
"""


@pytest.fixture
def tree(tmp_path):
    with vm_tree(tmp_path / "vm-tree") as tree:
        yield tree


def start_traps(tree, out, signums) -> subprocess.Popen[str]:
    process = agents.start(
        agents.command(
            "--vm", "run", "-s", "0.2", "-o", str(out), "--", sys.executable, "-c", TRAPS, *map(str, signums)
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SCAPHANDRE_POWERCAP_PATH": str(tree.root)},
    )
    assert process.stdout.readline() == "ready\n"
    return process


def test_signals_that_killed_wattprobe_reach_the_command_and_the_report_is_written(tree, tmp_path):
    signums = sorted(
        [signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGWINCH, signal.SIGPIPE, signal.SIGRTMIN + 1]
    )
    out = tmp_path / "run.json"
    process = start_traps(tree, out, signums)
    try:
        for signum in signums:
            process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert stdout == "got: " + " ".join(map(str, signums)) + "\n", stderr
    assert process.returncode == 5, stderr
    assert "exit status" in stderr and "Traceback" not in stderr  # the summary
    assert json.loads(out.read_text())["exit_code"] == 5


def test_a_stop_sent_to_wattprobe_stops_it_and_reaches_the_command_and_so_does_the_continue(tree, tmp_path):
    out = tmp_path / "run.json"
    process = start_traps(tree, out, [signal.SIGTSTP, signal.SIGCONT])
    try:
        (command,) = children(process.pid)
        process.send_signal(signal.SIGTSTP)
        wait_for(
            lambda: stat_fields(process.pid)[0] == "T", 10, "wattprobe stopped as its command was asked to"
        )
        # The kernel discards a stop still pending when a SIGCONT comes: on a busy machine the command
        # may not have run since wattprobe sent it the stop.
        wait_for(lambda: not pending(command, signal.SIGTSTP), 10, "the command to take the stop")
        process.send_signal(signal.SIGCONT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert stdout == f"got: {int(signal.SIGCONT)} {int(signal.SIGTSTP)}\n", stderr
    assert process.returncode == 5, stderr
    assert json.loads(out.read_text())["exit_code"] == 5


def test_the_command_gets_the_limit_on_open_files_wattprobe_was_given(tree):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip("the hard limit on open files leaves wattprobe nothing to raise")
    result = agents.run(
        agents.command("--vm", "run", "-s", "0.2", "--", "sh", "-c", "ulimit -Sn"),
        env={**os.environ, "SCAPHANDRE_POWERCAP_PATH": str(tree.root)},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard)),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1024\n"


def test_a_command_ended_by_a_real_time_signal_is_named_by_its_offset(tree, tmp_path):
    out, signum = tmp_path / "run.json", signal.SIGRTMIN + 2
    kill = f"import os; os.kill(os.getpid(), {signum})"
    result = agents.run(
        agents.command("--vm", "run", "-s", "0.2", "-o", str(out), "--", sys.executable, "-c", kill),
        env={**os.environ, "SCAPHANDRE_POWERCAP_PATH": str(tree.root)},
    )
    assert result.returncode == 128 + signum and "Traceback" not in result.stderr, result.stderr
    assert json.loads(out.read_text())["signal"] == "SIGRTMIN+2"
