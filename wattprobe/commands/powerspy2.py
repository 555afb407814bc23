"""The Green Metrics Tool's PowerSpy2 metric provider: one `TIMESTAMP READING` line per packet.

TIMESTAMP is Unix time in µs on the meter's schedule, READING an integer in the chosen unit; energy
units use the real packet period (whole mains periods), not the asked interval. Nothing else is
written to stdout. SIGTERM or SIGINT stops the stream (`<Q>`) and exits 0.

The Green Metrics Tool sums energy readings, each one being the energy since the previous one, so a
lost packet would take its period's energy out of the sum. In energy units the reading after lost
packets therefore also carries their energy, filled between the power before and after them (see
gaps.py), and says so on stderr; power readings are not filled (a missing sample of power is just
missing).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from wattprobe.config.values import positive
from wattprobe.sources.powerspy2.gaps import Gap, gap

log = logging.getLogger(__name__)

NAME = "powerspy2"
HELP = "stream PowerSpy2 wall power as 'TIMESTAMP READING' lines (Green Metrics Tool provider)"

# unit -> (scale from W or J, is energy)
UNITS = {"mW": (1e3, False), "W": (1.0, False), "mJ": (1e3, True), "uJ": (1e6, True), "J": (1.0, True)}
_BY_LOWER = {unit.lower(): unit for unit in UNITS} | {"µj": "uJ"}


def unit(text: str) -> str:
    """The canonical spelling of a unit given in any case."""
    try:
        return _BY_LOWER[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"unknown unit {text!r}: one of {', '.join(UNITS)}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="/dev/rfcomm0", help="RFCOMM tty of the meter (default /dev/rfcomm0)"
    )
    parser.add_argument(
        "-i",
        "--interval",
        type=positive,
        default=1000,
        metavar="MS",
        help="one reading every MS ms, rounded to whole mains periods (default 1000)",
    )
    parser.add_argument(
        "-u",
        "--unit",
        type=unit,
        default="mW",
        help=f"unit of the readings, any case: {', '.join(UNITS)} (default mW)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="device traffic on stderr ('> sent', '< received')"
    )


def reading(watts: float, period_s: float, unit: str, lost: Gap | None = None) -> int:
    """A packet's reading: power, or energy over its real period and the `lost` stretch before it."""
    scale, energy = UNITS[unit]
    if not energy:
        return round(watts * scale)
    return round((watts * period_s + (lost.joules if lost else 0.0)) * scale)


def _trace(direction: str, frame: str) -> None:
    print(f"{direction} {frame}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from wattprobe.sources.powerspy2.device import PowerSpy2

    device = PowerSpy2(args.device, trace=_trace if args.debug else None)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: device.stop())
    out, last_us, previous = sys.stdout, 0, None
    try:
        for packet in device.packets(args.interval / 1000):
            timestamp = max(round(packet.time * 1e6), last_us + 1)
            lost = gap(previous, packet) if previous is not None else None
            if lost is not None:
                _report(lost, timestamp, args.unit)
            out.write(f"{timestamp} {reading(packet.watts, packet.period_s, args.unit, lost)}\n")
            out.flush()
            last_us, previous = timestamp, packet
    finally:
        device.close()
    return 0


def _report(lost: Gap, timestamp: int, unit: str) -> None:
    if UNITS[unit][1]:
        log.warning("the %s reading at %d also carries %s", unit, timestamp, lost.describe())
    else:
        log.warning(
            "%.2f s of lost packets before the reading at %d (power is not filled)", lost.lost_s, timestamp
        )
