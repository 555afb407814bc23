"""Multi-threaded processes with real threads: each process's CPU clock, and no bias from fitting the machine."""

from __future__ import annotations

import statistics

import pytest

from tests.support.attributed import thread_errors
from tests.support.workloads import build_threaded, compiler

ONE = ("CPU clock",)  # the agent's own reader only: the benchmark compares it with stat ticks
pytestmark = pytest.mark.skipif(compiler() is None, reason="no C compiler on this machine")


@pytest.fixture(scope="module")
def threaded(tmp_path_factory):
    return build_threaded(tmp_path_factory.mktemp("threaded"))


def test_a_threaded_process_next_to_a_single_threaded_one_at_100_ms(threaded):
    # 4 threads at 25 % of every 20 ms, and one thread at 50 %, for 40 windows of 100 ms.
    measured = thread_errors(0.1, 40, threaded, [(4, 0.25, 20, 0), (1, 0.5, 20, 0)], only=ONE)["CPU clock"]
    for load in (0, 1):
        errors = measured[f"load {load}"]
        own, attributed = measured[f"totals {load}"]
        p95 = statistics.quantiles(errors, n=100, method="inclusive")[94]
        assert p95 <= 2.0, (load, sorted(errors)[-5:])  # points of the machine
        assert attributed / own == pytest.approx(1.0, abs=0.005), load


def test_a_saturated_machine_does_not_bias_shares_low(threaded):
    # Every thread busy, more threads than CPUs, every process of the machine read: the processes'
    # sum meets the machine's time, and windows where it exceeds it are scaled down, then given back.
    measured = thread_errors(0.1, 60, threaded, [(4, 1.0, 20, 0), (1, 1.0, 20, 0)], True, ONE)["CPU clock"]
    for load in (0, 1):
        own, attributed = measured[f"totals {load}"]
        assert attributed / own == pytest.approx(1.0, abs=0.005), load


def test_threads_that_live_30_ms_are_counted_whole(threaded):
    measured = thread_errors(0.1, 40, threaded, [(2, 0.5, 20, 30)], only=ONE)["CPU clock"]
    own, attributed = measured["totals 0"]
    # The process's clock keeps the time of its ended threads: no more lost to stat's ticks (before,
    # they came from stat's remainder, rounded down: up to 2 % below the truth).
    assert attributed / own == pytest.approx(1.0, abs=0.005)
