"""argparse types: each turns a malformed value into a one-line error that says what was expected."""

from __future__ import annotations

import argparse
import math
import re


def seconds(text: str) -> float:
    """A finite number of seconds (negative allowed, e.g. a timeout that means 'forever')."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    return value


def non_negative(text: str) -> float:
    """A finite number >= 0."""
    value = seconds(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def positive(text: str) -> float:
    """A finite number > 0."""
    value = seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
    return value


def positive_or_forever(text: str) -> float:
    """A finite number > 0, or a negative one, which means 'until stopped' (Scaphandre's stdout -t)."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be above 0 (or negative: run until stopped), got {text!r}")
    return value


def count(text: str) -> int:
    """A whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def regex(text: str) -> re.Pattern[str]:
    """A regular expression that compiles."""
    try:
        return re.compile(text)
    except re.error as error:
        raise argparse.ArgumentTypeError(f"bad regular expression {text!r}: {error}") from None


def port(text: str) -> int:
    """A TCP port number."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0-65535): {text!r}")
    return int(text)
