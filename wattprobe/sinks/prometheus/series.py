"""The options the Prometheus sinks (pull and push) share, kept light: the command line imports this."""

from __future__ import annotations

import re
from dataclasses import dataclass

from wattprobe.config.settings import option
from wattprobe.config.values import count
from wattprobe.sinks.kit import options
from wattprobe.sinks.kit.catalogue import NAMINGS, uses_host_facts

DEFAULT_TOP = 20
DEFAULT_CMDLINE_MAX = 256


@dataclass(frozen=True)
class SeriesSettings:
    """What to emit and how to label it."""

    naming: str = option(
        "native",
        choices=NAMINGS,
        help="metric names: native (wattprobe_*, base units), scaphandre (scaph_*, µW and µJ) "
        "or kepler (kepler_*, Kepler's families and labels)",
    )
    qemu: bool = options.qemu("label qemu processes with their VM name (vmname); every VM gets series")
    containers: bool = options.containers("label per-process series with their container")
    max_top_consumers: int = options.top(DEFAULT_TOP, what="per-process series (0: none)")
    process_regex: re.Pattern[str] | None = options.process_regex()
    cmdline_max_length: int = option(
        DEFAULT_CMDLINE_MAX,
        parse=count,
        metavar="CHARS",
        help=f"truncate the cmdline label to this many characters (default {DEFAULT_CMDLINE_MAX})",
    )


def series_host_facts(settings: SeriesSettings) -> bool:
    """Whether the series include the host's facts (Scaphandre's and Kepler's names have some)."""
    return uses_host_facts(settings.naming)
