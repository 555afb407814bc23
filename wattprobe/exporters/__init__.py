"""Exporters render Frames; they never read /proc or /sys themselves."""

from __future__ import annotations

import argparse
import re

from wattprobe.model import Consumer, Frame


def regex(text: str) -> re.Pattern[str]:
    """argparse type: a regular expression, with a one-line error when it does not compile."""
    try:
        return re.compile(text)
    except re.error as error:
        raise argparse.ArgumentTypeError(f"bad regular expression {text!r}: {error}") from None


def seconds(text: str) -> float:
    """argparse type: a number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def count(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def select_consumers(
    frame: Frame,
    top: int,
    pattern: re.Pattern[str] | None = None,
    container_pattern: re.Pattern[str] | None = None,
) -> tuple[Consumer, ...]:
    """The top `top` consumers, or every consumer whose exe or cmdline matches `pattern`."""
    consumers = frame.consumers
    if container_pattern is not None:
        consumers = tuple(
            c
            for c in consumers
            if c.info.container is not None and container_pattern.search(c.info.container.id)
        )
    if pattern is not None:
        return tuple(c for c in consumers if pattern.search(c.info.exe) or pattern.search(c.info.cmdline))
    return consumers[:top]
