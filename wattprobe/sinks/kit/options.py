"""Options several sinks share, declared once, and the cadence (step, timeout) of a sink's command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wattprobe.config.settings import option
from wattprobe.config.values import count, positive, regex, seconds
from wattprobe.errors import UsageError


def step(default: float, *flags: str, what: str = "measurements") -> Any:
    return option(
        default,
        *(flags or ("-s", "--step")),
        parse=seconds,
        metavar="SECONDS",
        help=f"seconds between {what} (default {default:g})",
    )


def timeout(default: float | None = None, *flags: str) -> Any:
    said = "never" if default is None else f"{default:g}; negative: run until stopped"
    return option(
        default,
        *(flags or ("-t", "--timeout")),
        parse=seconds,
        metavar="SECONDS",
        help=f"stop after this many seconds (default {said})",
    )


def qemu(what: str = "label QEMU/KVM guest processes with their VM name (vmname)") -> Any:
    return option(False, "-q", "--qemu", help=what)


def containers(what: str = "label each consumer with its container") -> Any:
    return option(False, "--containers", help=what)


def top(default: int, *flags: str, what: str = "consumers listed") -> Any:
    return option(
        default,
        *(flags or ("-m", "--max-top-consumers")),
        parse=count,
        metavar="N",
        help=f"{what}: of the processes that ran in the window, the N that drew the most; an idle "
        f"process is never listed, however large N (default {default})",
    )


def process_regex(*flags: str) -> Any:
    return option(
        None,
        *(flags or ("--process-regex",)),
        parse=regex,
        metavar="REGEX",
        help="instead of the top N: every process that ran in the window and whose exe or cmdline "
        "matches; an idle process is never listed, even by '.*'",
    )


def positive_seconds(default: float, *flags: str, what: str) -> Any:
    return option(default, *flags, parse=positive, metavar="SECONDS", help=f"{what} (default {default:g})")


@dataclass(frozen=True)
class Cadence:
    """How often a sink's command measures, and for how long: `step` and `timeout` seconds.

    A sink's module subclasses it to give its command Scaphandre's flags and defaults.
    """

    step: float | None = step(2.0)  # None: no step (a pull sink)
    timeout: float | None = None  # no option: its command runs until stopped

    def __post_init__(self) -> None:
        if self.step_s is not None and self.step_s <= 0:
            raise UsageError(f"the step must be above 0 seconds, got {self.step_s:g}")

    @property
    def step_s(self) -> float | None:
        return self.step

    @property
    def timeout_s(self) -> float | None:
        """None: run until stopped (a negative timeout says so too)."""
        return None if self.timeout is None or self.timeout < 0 else self.timeout
