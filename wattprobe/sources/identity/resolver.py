"""Names of containers by id, never on the tick: the sampler asks `names()` (dict lookups), and what
is not known yet is looked up by a thread of the resolver, from the container engine and Kubernetes,
and known from a later Frame on.

The engine is asked once per new id (a batch a request); an id it does not know is not asked again.
While it does not answer, the ids wait and are asked again with a growing delay. Pods come from a
PodWatcher (listed, then watched); a pod uid it does not know yet makes it list again, at most every
few seconds and a few times per uid. Each source that fails says so in one line, once per outage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping

from wattprobe.core.model import Container, Workload
from wattprobe.sources.identity.engine import EngineApi
from wattprobe.sources.identity.kubernetes import PodWatcher
from wattprobe.sources.identity.webapi import ApiError, outage

MAX_IDS = 10_000  # containers remembered; beyond, the oldest are forgotten (and asked again if seen)
RETRY_S = (2.0, 5.0, 15.0, 30.0, 60.0)  # between attempts while the engine does not answer
RELIST_S = 5.0  # at least this between two lists for an unknown pod uid
RELISTS = 3  # lists at most for one unknown pod uid
ENGINE_LATER = "containers are shown by their short ids until it answers"


class Resolver:
    """A NameResolver (core.model) over a container engine and/or the Kubernetes API."""

    def __init__(
        self,
        engine: EngineApi | None,
        pods: Callable[[Callable[[], None]], PodWatcher] | None = None,
        *,
        node_name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_s: tuple[float, ...] = RETRY_S,
        relist_s: float = RELIST_S,
    ) -> None:
        """`pods` makes the PodWatcher, given what it calls after each change."""
        self.engine = engine
        self.node_name = node_name
        self._clock = clock
        self._retry_s = retry_s
        self._relist_s = relist_s
        self._engine_outage = outage(engine.source) if engine is not None else None
        self._names: dict[str, Workload] = {}  # published: replaced whole, read without a lock
        self._asked: set[str] = set()  # ids handed to the thread (the tick's alone)
        self._queue: list[Container] = []
        self._wake = threading.Condition()
        self._closed = False
        # The thread's (and the watcher's, under _lock):
        self._lock = threading.Lock()
        self._seen: dict[str, Container] = {}
        self._engine_names: dict[str, Workload | None] = {}  # None: the engine does not know it
        self._engine_waiting: dict[str, Container] = {}
        self._engine_failures = 0
        self._engine_retry_at = 0.0
        self._unknown_pods: dict[str, int] = {}  # pod uid -> lists made for it
        self._relist_at = 0.0
        self._started = False
        self._thread = threading.Thread(target=self._run, name="wattprobe-names", daemon=True)
        self.watcher = pods(self._pods_changed) if pods is not None else None

    def names(self, containers: Iterable[Container]) -> Mapping[str, Workload]:
        """The names known now of `containers`, by id; the others are looked up in the background."""
        known = self._names
        found: dict[str, Workload] = {}
        new: list[Container] = []
        for container in containers:
            workload = known.get(container.id)
            if workload is not None:
                found[container.id] = workload
            elif container.id not in self._asked:
                new.append(container)
        if new:
            if len(self._asked) > MAX_IDS:
                self._asked.clear()
            self._asked.update(c.id for c in new)
            with self._wake:
                self._queue.extend(new)
                self._wake.notify()
            if not self._started:
                self._start()
        return found

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self.watcher is not None:
            self.watcher.close()
        if self._started:
            self._thread.join(timeout=2.0)

    def _start(self) -> None:
        """The threads start with the first container: a host without any pays nothing."""
        self._started = True
        self._thread.start()
        if self.watcher is not None:
            self.watcher.start()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self._queue and not self._due():
                    self._wake.wait(self._next_due())
                if self._closed:
                    return
                batch, self._queue = self._queue, []
            self._resolve(batch)

    def _due(self) -> bool:
        now = self._clock()
        return bool(self._engine_waiting and now >= self._engine_retry_at) or bool(
            self._unknown_pods and now >= self._relist_at
        )

    def _next_due(self) -> float | None:
        times = [
            t
            for t, waiting in (
                (self._engine_retry_at, self._engine_waiting),
                (self._relist_at, self._unknown_pods),
            )
            if waiting
        ]
        return max(0.05, min(times) - self._clock()) if times else None

    def _resolve(self, batch: list[Container]) -> None:
        with self._lock:
            for container in batch:
                self._seen[container.id] = container
            self._forget_oldest()
        if self.engine is not None:
            for container in batch:
                if container.id not in self._engine_names:
                    self._engine_waiting[container.id] = container
            if self._engine_waiting and self._clock() >= self._engine_retry_at:
                self._ask_engine()
        if self.watcher is not None:
            self._ask_pods(batch)
        self._publish(batch)

    def _ask_engine(self) -> None:
        assert self.engine is not None and self._engine_outage is not None
        waiting = dict(self._engine_waiting)
        try:
            found = self.engine.names(waiting)
        except ApiError as error:
            self._engine_outage.failed(str(error), meanwhile=ENGINE_LATER)
            self._engine_retry_at = (
                self._clock() + self._retry_s[min(self._engine_failures, len(self._retry_s) - 1)]
            )
            self._engine_failures += 1
            return
        self._engine_outage.recovered()
        self._engine_failures = 0
        with self._lock:
            for container_id in waiting:
                self._engine_names[container_id] = found.get(container_id)
                self._engine_waiting.pop(container_id, None)
        self._publish(waiting.values())

    def _ask_pods(self, batch: list[Container]) -> None:
        assert self.watcher is not None
        index = self.watcher.index
        for container in batch:
            if container.pod_uid and not index.knows(container.pod_uid):
                self._unknown_pods.setdefault(container.pod_uid, 0)
        if not self._unknown_pods or self._clock() < self._relist_at:
            return
        self._relist_at = self._clock() + self._relist_s
        if self.watcher.relist():
            for uid in list(self._unknown_pods):
                self._unknown_pods[uid] += 1
                if index.knows(uid) or self._unknown_pods[uid] >= RELISTS:
                    del self._unknown_pods[uid]

    def _pods_changed(self) -> None:
        with self._lock:
            seen = list(self._seen.values())
        self._publish(seen)

    def _publish(self, containers: Iterable[Container]) -> None:
        """Name `containers` again from what the sources know now, and publish the names."""
        index = self.watcher.index if self.watcher is not None else None
        with self._lock:
            names = dict(self._names)
            for container in containers:
                engine = self._engine_names.get(container.id)
                pod, name, image = (
                    index.pod(container.pod_uid, container.id) if index is not None else (None, None, None)
                )
                if engine is None and pod is None:
                    continue
                names[container.id] = Workload(
                    name=name or (engine.name if engine else None),
                    image=(engine.image if engine else None) or image,
                    labels=engine.labels if engine else (),
                    pod_name=pod.name if pod else None,
                    pod_namespace=pod.namespace if pod else None,
                    pod_uid=pod.uid if pod else None,
                )
            self._names = names

    def _forget_oldest(self) -> None:
        if len(self._seen) <= MAX_IDS:
            return
        for container_id in list(self._seen)[: len(self._seen) - MAX_IDS // 2]:
            del self._seen[container_id]
            self._engine_names.pop(container_id, None)
        self._names = {k: v for k, v in self._names.items() if k in self._seen}
