"""What a network sink sends leaves the tick: a bounded queue, and one thread that delivers it.

The sink renders a Frame into items on the tick (cheap), `put()`s them, and returns. The thread hands
the oldest items, a batch at a time, to the sink's `send`; it retries a batch that fails with Retry
(waiting as `retry.Backoff` says, with one line when the far end goes away and one when it is back),
drops a batch refused with Rejected, and stops for good on Fatal, which the sink's next put() raises.
A full queue drops its oldest items, said once per outage. A queue of one keeps only the latest item:
right for a live stream (Riemann) or a value that replaces the last (a Pushgateway group).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from wattprobe.retry import Backoff, Outage
from wattprobe.sinks import Fatal, Retry, SinkError

T = TypeVar("T")
log = logging.getLogger(__name__)


class Rejected(SinkError):
    """The far end refused these items for good (a malformed point): they are dropped, the sink goes on."""


class Delivery(Generic[T]):
    def __init__(
        self,
        what: str,
        send: Callable[[list[T]], None],
        *,
        capacity: int,
        batch: int = 1,
        backoff: Backoff | None = None,
    ) -> None:
        self.what = what
        self._send = send
        self._batch = batch
        self._queue: deque[tuple[int, T]] = deque(maxlen=capacity)  # (sequence number, item)
        self._seq = 0
        self._backoff = backoff or Backoff()
        self._outage = Outage(log, what)
        self._wake = threading.Condition()
        self._closing = False
        self._flush_until = 0.0  # once closing: deliver until then, retries included
        self._fatal: Fatal | None = None
        self.dropped = 0  # items lost to a full queue
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name=f"deliver {what}", daemon=True)
        self._thread.start()

    def put(self, items: list[T]) -> None:
        """Queue `items`, never blocking; Fatal once the far end said it never will take anything."""
        if self._fatal is not None:
            raise self._fatal
        with self._wake:
            capacity = self._queue.maxlen or 0
            overflow = len(self._queue) + len(items) - capacity
            if overflow > 0 and capacity > 1:
                self.dropped += overflow
                self._outage.failed(f"queue full, the {overflow} oldest items dropped")
            for item in items:
                self._seq += 1
                self._queue.append((self._seq, item))
            self._wake.notify()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def close(self, flush_s: float = 2.0) -> None:
        """Deliver what is queued for up to `flush_s` seconds, then stop."""
        with self._wake:
            self._closing = True
            self._flush_until = time.monotonic() + flush_s
            self._wake.notify()
        self._thread.join(flush_s)
        with self._wake:  # whatever is left stays undelivered
            self._flush_until = 0.0
            self._queue.clear()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue or (self._closing and time.monotonic() >= self._flush_until):
                    return
                taken = [self._queue[i] for i in range(min(self._batch, len(self._queue)))]
            batch = [item for _, item in taken]
            try:
                self._send(batch)
            except Fatal as error:
                self._fatal = error
                log.error("%s: %s", self.what, error)
                return
            except Rejected as error:
                log.error("%s: %d items refused for good, dropped: %s", self.what, len(batch), error)
            except Exception as error:  # Retry, and anything unforeseen: the far end may take it later
                delay = self._backoff.failed()
                why = error if isinstance(error, Retry) else repr(error)
                self._outage.failed(why, retry_in=delay)
                with self._wake:
                    wait = delay if not self._closing else min(delay, self._flush_until - time.monotonic())
                    if wait > 0:
                        self._wake.wait(wait)
                continue
            else:
                self._backoff.succeeded()
                self._outage.recovered()
                self.sent += len(batch)
            with self._wake:  # the batch left (or was refused); what overflow dropped meanwhile is gone
                last = taken[-1][0]
                while self._queue and self._queue[0][0] <= last:
                    self._queue.popleft()
