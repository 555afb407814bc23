"""Delivery off the tick for every remote sink: a bounded queue, and one thread that sends from it.

The pipeline wraps each sink that declares a `Remote` (`sinks.remote`) in a `Delivered` sink: its
write() renders the Frame on the tick (the sink's cheap `render`), queues the items and returns. The
thread hands the oldest items, a batch at a time, to the sink's `send`; it retries a batch that fails
with Retry (waiting as `retry.Backoff` says, with one line when the far end goes away and one when it
is back), drops a batch refused with Rejected, and stops for good on Fatal, which the next write()
raises, so the runner stops that sink alone. A full queue drops its oldest items, said once per outage;
a queue of one keeps only the latest item: right for a live stream (Riemann) or a value that replaces
the last (a Pushgateway group). Closing sends what waits for at most `FLUSH_S` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from wattprobe.core.model import Frame
from wattprobe.retry import Backoff, Outage
from wattprobe.sinks import Fatal, Rejected, Remote, RemoteSink, Retry, Sink, remote

T = TypeVar("T")
log = logging.getLogger(__name__)

FLUSH_S = 2.0  # what closing waits for the queue to drain: an agent stopped by a signal stops soon


def delivered(sink: Sink, *, backoff: Backoff | None = None, flush_s: float = FLUSH_S) -> Sink:
    """`sink` itself when it is local; a remote sink wrapped so that its sending leaves the tick."""
    policy = remote(sink)
    if policy is None:
        return sink
    return Delivered(cast("RemoteSink[object]", sink), policy, backoff=backoff, flush_s=flush_s)


class Delivered(Generic[T]):
    """A remote sink as the runner sees it (a `Sink`): render on the tick, send from a queue off it."""

    def __init__(
        self,
        sink: RemoteSink[T],
        policy: Remote,
        *,
        backoff: Backoff | None = None,
        flush_s: float = FLUSH_S,
    ) -> None:
        self.sink = sink
        self.name = sink.name
        self.flush_s = flush_s
        self.delivery = Delivery(
            policy.to, sink.send, capacity=policy.capacity, batch=policy.batch, backoff=backoff
        )

    def write(self, frame: Frame) -> None:
        self.delivery.put(self.sink.render(frame))

    def close(self) -> None:
        try:
            self.delivery.close(self.flush_s)
        finally:
            self.sink.close()


class Delivery(Generic[T]):
    """A bounded queue of items and the thread that hands them to `send`, as the module says."""

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
        self._dropping = False  # the drops of this outage were said
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
                level = logging.DEBUG if self._dropping else logging.WARNING
                log.log(
                    level, "%s: queue full (%d items), the %d oldest dropped", self.what, capacity, overflow
                )
                self._dropping = True
            for item in items:
                self._seq += 1
                self._queue.append((self._seq, item))
            self._wake.notify()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def close(self, flush_s: float = FLUSH_S) -> None:
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

    def _over(self) -> bool:
        return self._closing and time.monotonic() >= self._flush_until

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue or self._over():
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
                if self._over():  # closed meanwhile (the sink too, maybe): nothing more to say
                    return
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
                self._dropping = False
                last = taken[-1][0]
                while self._queue and self._queue[0][0] <= last:
                    self._queue.popleft()
