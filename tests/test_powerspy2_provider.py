"""`wattprobe powerspy2`, the Green Metrics Tool provider, run as a real process against the emulator.

Runs that do not depend on each other go in parallel to keep the suite short.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.support import agents
from tests.support.paths import REPO
from tests.support.powerspy2 import emulator, gmt_rows, wattprobe
from tests.support.waiting import wait_for
from wattprobe.sources.powerspy2.emulator import PowerSpy2Emulator

WATTS = 171.14
PERIOD_S = {100: 0.1, 250: 0.24, 1000: 1.0}  # real packet spacing at 50 Hz for the asked interval
MATRIX = [(unit, interval) for unit in ("mW", "uJ") for interval in (100, 250, 1000)]
DROPIN = ("uJ (GMT drop-in)", 250)  # as GMT starts it: metric-provider.py -i 250 -u uJ


class Run:
    """A provider process and its emulator; stdout and stderr are collected as they come."""

    def __init__(self, meter: PowerSpy2Emulator, process: subprocess.Popen[str]) -> None:
        self.meter, self.process = meter, process
        self.arrived: list[tuple[float, str]] = []  # (Unix time read, line) from stdout
        self.err_lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self.err_lines.extend, args=(process.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.arrived.append((time.time(), line))

    @property
    def lines(self) -> list[str]:
        return [line for _, line in list(self.arrived)]

    @property
    def out(self) -> str:
        return "".join(self.lines)

    @property
    def err(self) -> str:
        return "".join(self.err_lines)

    def wait_for(self, count: int, after: float = 0.0, timeout: float = 20.0) -> None:
        """Wait until `count` readings stamped after `after` (Unix s) are out."""
        wait_for(
            lambda: sum(_stamp(line) > after for line in self.lines) >= count,
            timeout,
            lambda: f"{count} readings: {self.out!r} {self.err!r}",
            alive=self.process,
        )

    def wait_for_stderr(self, text: str, timeout: float = 20.0) -> None:
        wait_for(
            lambda: text in self.err, timeout, lambda: f"{text!r} on stderr: {self.err!r}", alive=self.process
        )

    def stop(self, signum: int = signal.SIGTERM) -> float:
        """Signal the provider; return how long it took to exit."""
        started = time.monotonic()
        self.process.send_signal(signum)
        self.process.wait(timeout=10)
        elapsed = time.monotonic() - started
        for reader in self._readers:
            reader.join(timeout=5)
        self.meter.stop()
        return elapsed


def _stamp(line: str) -> float:
    """A line's timestamp in Unix s, 0 for a line that is not a reading."""
    head = line.split(" ", 1)[0]
    return int(head) / 1e6 if head.isdigit() else 0.0


STARTED: list[Run] = []


def provider(meter: PowerSpy2Emulator, *args: str) -> Run:
    run = Run(meter, wattprobe("powerspy2", "--device", meter.link, *args))
    STARTED.append(run)
    return run


@pytest.fixture(autouse=True)
def reap():
    """Whatever a failed test left running is killed."""
    yield
    while STARTED:
        run = STARTED.pop()
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()
        run.meter.stop()


def no_traceback(run: Run) -> None:
    assert "Traceback" not in run.err, run.err


@pytest.fixture(scope="module")
def matrix_runs(tmp_path_factory) -> dict[tuple[str, int], Run]:
    """Every unit × interval at once, plus the GMT drop-in as GMT starts it, until each has a few readings."""
    tmp = tmp_path_factory.mktemp("matrix")
    runs = {
        (unit, interval): provider(
            emulator(tmp, f"{unit}{interval}", watts=WATTS), "-i", str(interval), "-u", unit
        )
        for unit, interval in MATRIX
    }
    meter = emulator(tmp, "gmt", watts=WATTS)
    dropin = [sys.executable, str(REPO / "contrib/gmt/metric-provider.py"), "-i", "250", "-u", "uJ"]
    runs[DROPIN] = dropin_run = Run(
        meter,
        agents.start(
            [*dropin, "--device", meter.link],
            env={**os.environ, "WATTPROBE": f"{sys.executable} -m wattprobe", "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
    )
    STARTED.append(dropin_run)
    for (_, interval), run in runs.items():
        run.wait_for({100: 20, 250: 10, 1000: 4}[interval])
    for run in runs.values():
        assert run.stop() < 2.0
    return runs


@pytest.mark.parametrize(("name", "interval"), [*MATRIX, DROPIN])
def test_output_is_what_gmt_accepts(matrix_runs, name, interval):
    run = matrix_runs[(name, interval)]
    unit = name.split()[0]
    assert run.process.returncode == 0, run.err
    assert run.err == ""
    rows = gmt_rows(run.out, interval, unit)
    period = PERIOD_S[interval]
    expected = {"mW": WATTS * 1e3, "uJ": WATTS * period * 1e6}[unit]
    # the real, not the asked, period; P_raw steps are 2.2e-5 W
    assert all(value == pytest.approx(expected, rel=1e-6, abs=1) for _, value in rows)
    assert abs(rows[-1][0] / 1e6 - time.time()) < 10
    assert run.meter.received[-1] == "Q"


def test_no_load_reads_zero(tmp_path):
    run = provider(emulator(tmp_path, watts=0.0), "-i", "100", "-u", "uJ")
    run.wait_for(5)
    run.stop()
    assert run.process.returncode == 0, run.err
    assert {value for _, value in gmt_rows(run.out, 100, "uJ", no_load=True)} == {0}


LOSSY = {"silent", "truncate", "garble", "drop"}  # faults that destroy packets, hence leave gaps
FAULTS = {  # mode: (options, seconds it lasts)
    "silent": ({}, 2.5),
    "burst": ({"burst_s": 0.5}, 2.0),
    "truncate": ({"every": 3}, 2.0),
    "garble": ({"every": 3}, 2.0),
    "drop": ({"down_s": 1.0}, 1.0),
}


def test_faults_are_survived(tmp_path):
    """Mid-run faults, a meter that answers <Z> at first, and one that keeps streaming after <Q>.

    In µJ the reading after lost packets carries their energy too, so the sum stays right; in mW a
    lost packet is only a missing sample.
    """
    runs = {mode: provider(emulator(tmp_path, mode), "-i", "100", "-u", "uJ") for mode in FAULTS}
    runs["silent-mW"] = provider(emulator(tmp_path, "silent-mW"), "-i", "100", "-u", "mW")
    stubborn = emulator(tmp_path, "ignore-stop", streaming=True, periods=2)
    stubborn.set_fault("ignore-stop")
    runs["ignore-stop"] = provider(stubborn, "-i", "100", "-u", "uJ")
    naysayer = emulator(tmp_path, "nak")
    naysayer.set_fault("nak", count=3)
    runs["nak"] = provider(naysayer, "-i", "100", "-u", "uJ")
    for run in runs.values():
        run.wait_for(5)
    for mode, (options, _) in FAULTS.items():
        runs[mode].meter.set_fault(mode, **options)
    runs["silent-mW"].meter.set_fault("silent")
    cleared_at = {}
    started = time.monotonic()
    for mode, (_, lasts) in sorted(FAULTS.items(), key=lambda item: item[1][1]):
        time.sleep(max(0.0, started + lasts - time.monotonic()))
        if mode != "drop":  # a dropped link comes back by itself
            runs[mode].meter.set_fault(None)
        if mode == "silent":
            runs["silent-mW"].meter.set_fault(None)
            cleared_at["silent-mW"] = time.time()
        cleared_at[mode] = time.time()
    for mode, run in runs.items():
        run.wait_for(5, after=cleared_at.get(mode, 0.0) + 0.2)  # the stream resumed
    for run in runs.values():
        run.stop()
    for mode, run in runs.items():
        assert run.process.returncode == 0, (mode, run.err)
        no_traceback(run)
        unit = "mW" if mode.endswith("mW") else "uJ"
        rows = gmt_rows(run.out, 100, unit, lossy=mode.split("-")[0] in LOSSY)
        if unit == "mW":
            assert all(value == pytest.approx(WATTS * 1e3, abs=1) for _, value in rows), mode
            assert "power is not filled" in run.err, run.err
            continue
        # each reading is the energy since the previous one: its period's, and any lost ones'
        for (before, _), (stamp, value) in itertools.pairwise(rows):
            since = max((stamp - before) / 1e6, 0.1)
            assert value == pytest.approx(WATTS * since * 1e6, rel=0.01), (mode, stamp, value)
        elapsed = (rows[-1][0] - rows[0][0]) / 1e6
        assert sum(value for _, value in rows[1:]) == pytest.approx(WATTS * elapsed * 1e6, rel=0.05), mode
        assert elapsed == pytest.approx(run.arrived[-1][0] - run.arrived[0][0], abs=0.5)  # real time
        filled = [line for line in run.err.splitlines() if "also carries" in line]
        assert bool(filled) == (mode in LOSSY), (mode, run.err)
    assert runs["nak"].meter.received.count("?") >= 2  # the first handshake was refused, then retried


def test_sigterm_and_sigint_with_a_silent_meter_exit_0_quickly(tmp_path):
    just_silent = provider(emulator(tmp_path, "a"), "-i", "250", "-u", "mJ")
    reconnecting = provider(emulator(tmp_path, "b"), "-i", "250", "-u", "mJ", "--debug")
    just_silent.wait_for(3)
    reconnecting.wait_for(3)
    reconnecting.meter.set_fault("silent")
    reconnecting.wait_for_stderr("reconnecting")  # past the silence bound, backing off
    just_silent.meter.set_fault("silent")
    time.sleep(0.5)
    assert just_silent.stop(signal.SIGTERM) < 2.0
    assert reconnecting.stop(signal.SIGINT) < 2.0
    for run in (just_silent, reconnecting):
        assert run.process.returncode == 0, run.err
        no_traceback(run)
        gmt_rows(run.out, 250, "mJ")
        assert run.meter.received[-1] == "Q"
    assert "reconnecting" in reconnecting.err
    assert "> <J000C>" in reconnecting.err and "< <K>" in reconnecting.err  # --debug traffic on stderr


def test_missing_or_mute_meter_is_one_clear_line(tmp_path):
    missing = wattprobe("powerspy2", "--device", str(tmp_path / "rfcomm0"))
    mute_meter = emulator(tmp_path, "mute")
    mute_meter.set_fault("silent")
    mute = wattprobe("powerspy2", "--device", mute_meter.link)
    try:
        for process, what in ((missing, "does not exist"), (mute, "does not work")):
            out, err = process.communicate(timeout=15)
            assert process.returncode != 0
            assert out == ""
            assert len(err.strip().splitlines()) == 1, err
            assert what in err and "rfcomm connect" in err and "paired" in err
    finally:
        mute_meter.stop()
