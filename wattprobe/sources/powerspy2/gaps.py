"""Lost packets in a PowerSpy2 stream: how long they cover and the energy that fills them.

Packets are stamped on the meter's schedule (see clock.py), so lost packets show as two consecutive
packets further apart than one period: a damaged packet that was skipped, a silence the clock resynced
over, a reconnection. Nothing was measured in between, but the machine drew power all along. The lost
stretch is filled on a straight line between the power of the packet before it and of the packet after
it, i.e. at the mean of the two: at a steady load that is exact, and a change of load that happened
somewhere in the gap is split half-way instead of being put all on one side of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from wattprobe.sources.powerspy2.device import Packet

BRIDGE_AFTER = 1.5  # packets further apart than this many periods have lost ones between them


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch no packet covers, ending where the packet after it starts averaging."""

    lost_s: float
    watts: float  # what it is filled at
    before_w: float
    after_w: float

    @property
    def joules(self) -> float:
        return self.lost_s * self.watts

    def describe(self) -> str:
        return (
            f"{self.lost_s:.2f} s of lost packets filled at {self.watts:.1f} W "
            f"(between {self.before_w:.1f} W before and {self.after_w:.1f} W after)"
        )


def gap(before: Packet, after: Packet) -> Gap | None:
    """The lost stretch between two consecutive packets, None when they are adjacent."""
    if after.mono - before.mono <= BRIDGE_AFTER * after.period_s:
        return None
    lost_s = after.mono - after.period_s - before.mono
    return Gap(lost_s, (before.watts + after.watts) / 2, before.watts, after.watts)
