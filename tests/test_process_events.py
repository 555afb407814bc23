"""The kernel's process events (proc connector) on this machine: forks told, threads not, losses said."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from wattprobe.sources.process_events import ForkEvents, open_fork_events


@pytest.fixture
def events():
    found = open_fork_events()
    if found is None:
        pytest.skip(
            "the kernel gives no process events to this test (not root, or not in the initial namespaces)"
        )
    yield found
    found.close()


def test_a_fork_is_told_with_its_parent_and_a_thread_is_not(events: ForkEvents):
    tid: list[int] = []
    thread = threading.Thread(target=lambda: tid.append(threading.get_native_id()))
    with subprocess.Popen(["sleep", "30"]) as child:
        try:
            thread.start()
            thread.join()
            born = events.born()
        finally:
            child.kill()
    assert born is not None
    assert born.get(child.pid) == os.getpid()
    assert tid[0] not in born
    assert child.pid not in (events.born() or {})  # told once


def test_events_lost_are_said_and_the_next_ones_told():
    events = open_fork_events(buffer_bytes=16384)  # room for tens of events, not for hundreds
    if events is None:
        pytest.skip("the kernel gives no process events to this test")
    try:
        for _ in range(50):
            subprocess.run(["true"], check=True)
        assert events.born() is None  # some forks were not told: say so, do not guess
        with subprocess.Popen(["true"]) as child:
            child.wait()
        born = events.born()
        assert born is not None and born.get(child.pid) == os.getpid()  # other processes may fork too
    finally:
        events.close()
    assert events.closed
