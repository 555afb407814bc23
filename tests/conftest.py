"""Shared fixtures: synthetic powercap trees."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import settings

from tests.support.powercap_tree import MAX_UJ, PowercapTree
from tests.support.riemann import compile_pb2


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Test files in memory (tmpfs, as sysfs keeps the counters the synthetic trees stand for) where the
    machine has it: on a disk, replacing a file can wait on the journal (under fsync load, 141 ms at
    worst here against 16 ms on tmpfs), and a tree written in real time then lags the time it says."""
    shm = Path("/dev/shm")
    if config.option.basetemp is None and shm.is_dir() and os.access(shm, os.W_OK):
        base = tempfile.mkdtemp(prefix="wattprobe-tests-", dir=shm)
        config.option.basetemp = base
        config.add_cleanup(lambda: shutil.rmtree(base, ignore_errors=True))


@pytest.fixture
def powercap(tmp_path: Path) -> PowercapTree:
    """Two sockets (core, uncore, dram) and psys, counters 1 J below their wrap."""
    return PowercapTree(tmp_path / "powercap", start_uj=MAX_UJ - 1_000_000)


# Property-based tests (Hypothesis): under CI, the same examples every run and no example database, so a
# run does not depend on an earlier one; the tests' own time asserts replace Hypothesis's deadline.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def pb2(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """riemann.proto compiled by protoc: a Riemann server's decoder, independent of wattprobe's."""
    return compile_pb2(tmp_path_factory.mktemp("pb2"))
