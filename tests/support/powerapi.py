"""Helpers for the PowerAPI tests: a deterministic sampler on a synthetic tree, UTC, a hand-made frame."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from tests.support import frames
from tests.support.powercap_tree import Key, PowercapTree
from wattprobe.core.model import Container, DomainPower, Frame, Group, SocketPower


class TreeSampler:
    """A real Sampler on a synthetic tree whose counters and clock advance together, exactly."""

    def __init__(self, tree: PowercapTree) -> None:
        self.tree = tree
        self.sampler = tree.sampler()
        assert self.sampler.tick() is None  # the baseline

    def frame(self, seconds: float = 1.0) -> tuple[Frame, dict[Key, float]]:
        """Advance by `seconds`; the Frame and the joules each counter gained, as the tree wrote them."""
        before = {key: int(uj) for key, uj in self.tree.energy.items()}
        self.tree.advance(seconds)  # the counters and the sensor's clock, together
        _burn_cpu(0.01)  # so that this process has a CPU share to report
        frame = self.sampler.tick()
        assert frame is not None
        gained = {key: (int(uj) - before[key]) / 1e6 for key, uj in self.tree.energy.items()}
        return frame, gained

    def close(self) -> None:
        self.sampler.close()


def _burn_cpu(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@contextmanager
def utc() -> Iterator[None]:
    """Local time = UTC for the block: PowerAPI reads naive timestamps as local time."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def naive_utc(ms: int) -> datetime:
    """What PowerAPI makes of an integer-ms timestamp when TZ=UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


def json_roundtrip(report: dict[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(json.dumps(report)))


def make_frame(*, estimated: bool = False, host_source: str = "psys") -> Frame:
    """A frame of 60 W with two sockets, a container cgroup, a plain cgroup and two processes."""
    container = Container("ab" * 32, "docker", "docker")
    web = frames.process(
        101,
        "nginx -g daemon off;",
        exe="/usr/sbin/nginx",
        cgroup=f"/system.slice/docker-{'ab' * 32}.scope",
        container=container,
    )
    db = frames.process(202, "postgres", exe="/usr/bin/postgres", cgroup="/system.slice/postgresql.service")
    sockets = tuple(
        SocketPower(s, 20.0 + s, 100.0, (DomainPower("core", 12.0, 60.0), DomainPower("dram", 5.0, 25.0)))
        for s in (0, 1)
    )
    return frames.frame(
        (
            frames.consumer(web, 18.0, host_watts=60.0, cpu_ns=10**9, rss_bytes=1, vsize_bytes=2),
            frames.consumer(db, 12.0, host_watts=60.0, cpu_ns=4 * 10**8, rss_bytes=1, vsize_bytes=2),
        ),
        timestamp=1_700_000_000.123456,
        window_s=2.0,
        sensor="estimate" if estimated else "powercap_rapl",
        estimated=estimated,
        host_source=host_source,
        host_watts=60.0,
        host_energy_j=600.0,
        sockets=sockets,
        cgroups=(Group(web.cgroup, 18.0, 0.3, 1, container), Group(db.cgroup, 12.0, 0.2, 1)),
        containers=(Group(container.id, 18.0, 0.3, 1, container),),
    )
