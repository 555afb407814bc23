"""One retry policy for everything that talks to something that can be away: a growing wait, and
one log line when it goes away and one when it is back."""

from __future__ import annotations

import logging
import threading


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
    """Says once that `what` is down (later failures go to the debug log), and once that it is back.
    Safe to share between threads (two may talk to the same far end)."""

    def __init__(self, log: logging.Logger, what: str, *, back: str = "works again") -> None:
        self.log = log
        self.what = what
        self.back = back  # what the line says when it is back
        self.down = False
        self._lock = threading.Lock()

    def failed(self, why: object, retry_in: float | None = None, *, meanwhile: str | None = None) -> None:
        """`why` it failed; `retry_in` seconds until the next try, or `meanwhile`: what happens until then."""
        then = f"; retrying in {retry_in:.3g} s" if retry_in is not None else ""
        then += f"; {meanwhile}" if meanwhile else ""
        with self._lock:
            level = logging.DEBUG if self.down else logging.WARNING
            self.down = True
        self.log.log(level, "%s: %s%s", self.what, why, then)

    def recovered(self) -> None:
        with self._lock:
            was_down, self.down = self.down, False
        if was_down:
            self.log.warning("%s: %s", self.what, self.back)
