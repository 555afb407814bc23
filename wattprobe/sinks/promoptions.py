"""Options of the Prometheus exporters (pull and push), kept light: the command line imports this at start."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from wattprobe.options import count, regex

NAMINGS = ("native", "scaphandre")
DEFAULT_TOP = 20
DEFAULT_CMDLINE_MAX = 256


@dataclass(frozen=True, slots=True)
class SeriesOptions:
    """What to emit and how to label it."""

    naming: str = "native"
    top: int = DEFAULT_TOP  # per-process series for the top N consumers; 0: none
    process_regex: re.Pattern[str] | None = None  # instead of the top N: every matching process
    cmdline_max: int = DEFAULT_CMDLINE_MAX  # characters kept in the cmdline label
    qemu: bool = False  # vmname label, and every qemu process gets series
    containers: bool = False  # container labels on per-process series


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by the pull and push exporters."""
    parser.add_argument(
        "--naming",
        choices=NAMINGS,
        default="native",
        help="metric names: native (wattprobe_*, base units) or scaphandre (scaph_*, µW and µJ)",
    )
    parser.add_argument(
        "-q", "--qemu", action="store_true", help="label qemu processes with their VM name (vmname)"
    )
    parser.add_argument(
        "--containers", action="store_true", help="label per-process series with their container"
    )
    parser.add_argument(
        "-m",
        "--max-top-consumers",
        type=count,
        default=DEFAULT_TOP,
        metavar="N",
        help=f"per-process series for the N biggest consumers (default {DEFAULT_TOP}; 0: none)",
    )
    parser.add_argument(
        "--process-regex",
        type=regex,
        metavar="REGEX",
        help="per-process series for every process whose exe or cmdline matches, instead of the top N",
    )
    parser.add_argument(
        "--cmdline-max-length",
        type=count,
        default=DEFAULT_CMDLINE_MAX,
        metavar="CHARS",
        help=f"truncate the cmdline label to this many characters (default {DEFAULT_CMDLINE_MAX})",
    )


def options_from(args: argparse.Namespace) -> SeriesOptions:
    return SeriesOptions(
        naming=args.naming,
        top=args.max_top_consumers,
        process_regex=args.process_regex,
        cmdline_max=args.cmdline_max_length,
        qemu=args.qemu,
        containers=args.containers,
    )
