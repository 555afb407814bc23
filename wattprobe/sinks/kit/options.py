"""Options several sinks share, declared once, and the cadence (step, timeout) of a sink's command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wattprobe.config.settings import option
from wattprobe.config.values import count, positive, positive_or_forever, regex, seconds
from wattprobe.errors import UsageError

MAX_STEP_S = 86_400.0  # a day: no measurement cadence is longer, and a sleep cannot wait for any length


def check_step(step_s: float) -> None:
    """UsageError unless `step_s` seconds can be a step: the one rule, wherever a step is given."""
    if not 0 < step_s <= MAX_STEP_S:
        raise UsageError(
            f"the step must be above 0 seconds and at most {MAX_STEP_S:g} (a day), got {step_s:g}"
        )


def step(
    default: float, *flags: str, what: str = "measurements", whole: bool = False, shown: bool = True
) -> Any:
    """The step, declared here only: every sink's command's, `wattprobe run`'s and the agent's, each
    with its default; the settings that hold it check it with `check_step` in `__post_init__`.

    `whole`: the value is the whole step, so one that is not above 0 is refused as it is read (a
    sink's `Cadence` checks its `step_s` instead, which may add parts: json's `--step-nano`).
    `shown`: the default is said in the help (a TOML key's reference shows it apart).
    """
    return option(
        default,
        *(flags or ("-s", "--step")),
        parse=positive if whole else seconds,
        metavar="SECONDS",
        help=f"seconds between {what}" + (f" (default {default:g})" if shown else ""),
    )


def timeout(default: float | None = None, *flags: str) -> Any:
    """The timeout of a command, or of the agent. Where the default stops the command (stdout's 10 s), a
    negative one runs it until stopped, as in Scaphandre; where the default is already "never", a timeout
    is above 0: 0 or less would only write an empty output and exit, or run forever."""
    said = "never" if default is None else f"{default:g}; negative: run until stopped"
    return option(
        default,
        *(flags or ("-t", "--timeout")),
        parse=positive if default is None else positive_or_forever,
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
        if self.step_s is not None:
            check_step(self.step_s)

    @property
    def step_s(self) -> float | None:
        return self.step

    @property
    def timeout_s(self) -> float | None:
        """None: run until stopped (a negative timeout says so too)."""
        return None if self.timeout is None or self.timeout < 0 else self.timeout
