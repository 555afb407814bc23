"""Shared fixtures: synthetic powercap trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.powercap_tree import MAX_UJ, PowercapTree


@pytest.fixture
def powercap(tmp_path: Path) -> PowercapTree:
    """Two sockets (core, uncore, dram) and psys, counters 1 J below their wrap."""
    return PowercapTree(tmp_path / "powercap", start_uj=MAX_UJ - 1_000_000)


# Property-based tests (Hypothesis): under CI, the same examples every run and no example database, so a
# run does not depend on an earlier one; the tests' own time asserts replace Hypothesis's deadline.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
