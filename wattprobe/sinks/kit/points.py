"""A Frame as a flat list of named, labelled numbers: what the Riemann and Warp 10 sinks send.

The catalogue's samples in Scaphandre's naming (`sinks.kit.catalogue`), so that existing queries keep
working: µW and µJ, energy and counts as integers, power as floats; every process that used CPU in
the window gets its series. A family Scaphandre lacks keeps its native name and unit (host power no
process explains is `wattprobe_host_unattributed_power_watts`, in W). A sink that passes its ledger
gets the workloads' energy counters (containers, pods, namespaces) too.
"""

from __future__ import annotations

from dataclasses import dataclass

from wattprobe.core.model import Frame
from wattprobe.sinks.kit import catalogue
from wattprobe.sinks.kit.catalogue import Labels
from wattprobe.sinks.kit.workloads import Ledger


def host_facts(settings: object) -> bool:
    """Whether the points hold the host's facts (Scaphandre's host load, memory and disks): the same
    for every sink that sends them, whatever its settings."""
    return catalogue.uses_host_facts("scaphandre")


@dataclass(frozen=True, slots=True)
class Point:
    name: str
    value: int | float
    labels: tuple[tuple[str, str], ...]
    description: str


def frame_points(frame: Frame, *, qemu: bool = False, ledger: Ledger | None = None) -> list[Point]:
    """Every sample of the Frame; with `qemu`, QEMU guests' processes get a `vmname` label. The Frame is
    added to `ledger` (the sink's own, kept from Frame to Frame), which gives the energy counters."""
    labels = Labels("scaphandre", qemu=qemu)
    if ledger is not None:
        ledger.add(frame)
    return [
        Point(
            s.family.sample_name("scaphandre"),
            s.family.value_in("scaphandre", s.value),
            tuple(s.labels.items()),
            s.family.help,
        )
        for s in catalogue.samples(frame, frame.consumers, labels, ledger)
    ]
