"""Errors a user can fix: printed as one line, never as a traceback."""


class WattprobeError(Exception):
    """A fatal, user-fixable problem; the message says what is wrong and how to fix it."""

    exit_code = 1


class UsageError(WattprobeError):
    """A malformed option or argument."""

    exit_code = 2


class SensorUnavailable(WattprobeError):
    """A sensor that cannot work here: `reason` says why, `fix` what to do about it."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(f"{reason}; {fix}")
        self.reason = reason
        self.fix = fix


class SensorReadError(Exception):
    """A failure to read a sensor: the sample is skipped.

    `lasting`: waiting will not cure it (permissions), so start-up gives up at once.
    `said`: the sensor has already told the user, so the sample's skip goes to the debug log.
    """

    def __init__(self, message: str, *, lasting: bool = False, said: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting
        self.said = said
