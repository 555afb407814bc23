"""Shared fixtures: synthetic powercap trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.powercap_tree import MAX_UJ, PowercapTree


@pytest.fixture
def powercap(tmp_path: Path) -> PowercapTree:
    """Two sockets (core, uncore, dram) and psys, counters 1 J below their wrap."""
    return PowercapTree(tmp_path / "powercap", start_uj=MAX_UJ - 1_000_000)
