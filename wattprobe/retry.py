"""One retry policy for everything that talks to something that can be away: a growing wait, and
one log line when it goes away and one when it is back."""

from __future__ import annotations

import logging


class Backoff:
    """Waits that double after each failure, from `first` up to `longest`, and start over on success."""

    def __init__(self, first: float = 1.0, longest: float = 60.0) -> None:
        self.first = first
        self.longest = longest
        self.delay = 0.0  # the last wait handed out; 0 while things work

    def failed(self) -> float:
        """The wait before the next attempt."""
        self.delay = min(max(self.delay * 2, self.first), self.longest)
        return self.delay

    def succeeded(self) -> None:
        self.delay = 0.0


class Outage:
    """Says once that `what` is down (later failures go to the debug log), and once that it is back."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what
        self.down = False

    def failed(self, why: object, retry_in: float | None = None) -> None:
        then = f"; retrying in {retry_in:.3g} s" if retry_in is not None else ""
        self.log.log(logging.DEBUG if self.down else logging.WARNING, "%s: %s%s", self.what, why, then)
        self.down = True

    def recovered(self) -> None:
        if self.down:
            self.log.warning("%s: works again", self.what)
            self.down = False
