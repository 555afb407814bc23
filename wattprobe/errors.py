"""Errors a user can fix: printed as one line, never as a traceback."""


class WattprobeError(Exception):
    """A fatal, user-fixable problem; the message says what is wrong and how to fix it."""

    exit_code = 1


class UsageError(WattprobeError):
    """A malformed option or argument."""

    exit_code = 2


class SensorReadError(Exception):
    """A transient failure to read a sensor (torn or garbled value): the tick is skipped."""
