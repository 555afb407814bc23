"""Two snapshots -> one Frame: power from the energy deltas (judged in `wattprobe.core.counters`), and its split.

Attribution: a process's power = host power x its CPU time / machine CPU time (all CPUs) over the
same window. What no process explains (idle CPUs, processes that exited inside the window, work
the kernel does not charge to a process) is reported as unattributed power, so that
sum(consumers) + unattributed = host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from wattprobe.core.counters import CounterKey, host_energy
from wattprobe.core.model import (
    Consumer,
    DomainPower,
    Frame,
    Group,
    ProcessInfo,
    Snapshot,
    SocketPower,
)

ProcessLookup = Callable[[int], tuple[ProcessInfo, int, int] | None]


@dataclass
class EnergyTotals:
    """Energy since the agent started, in joules, per counter and for the host: never decreasing."""

    counters: dict[CounterKey, float] = field(default_factory=dict)
    host: float = 0.0

    def add(self, deltas: dict[CounterKey, int], host_uj: int) -> None:
        for key, delta in deltas.items():
            self.counters[key] = self.counters.get(key, 0.0) + delta / 1e6
        self.host += host_uj / 1e6


def attribute(
    prev: Snapshot,
    now: Snapshot,
    deltas: dict[CounterKey, int],
    totals: EnergyTotals,
    lookup: ProcessLookup,
    *,
    sensor: str,
    estimated: bool,
) -> Frame:
    """The Frame of the window between two snapshots; `totals` already include this window."""
    window_s = (now.energy.t_ns - prev.energy.t_ns) / 1e9
    host_uj, host_source = host_energy(deltas)
    host_watts = host_uj / 1e6 / window_s if window_s > 0 else 0.0

    busy = now.machine.busy - prev.machine.busy
    idle = now.machine.idle - prev.machine.idle
    machine_ns = now.machine.n_cpus * (now.t_ns - prev.t_ns)
    before = prev.tasks
    used = [(key, ns) for key, cpu in now.tasks.items() if (ns := cpu - before.get(key, 0)) > 0]
    # Scan timing can make the processes' sum exceed the machine's time by a hair: never give out more.
    scale = 1.0 / max(machine_ns, sum(ns for _, ns in used), 1)
    consumers = []
    for key, ns in used:
        found = lookup(key)
        if found is None:
            continue
        info, rss, vsize = found
        share = ns * scale
        consumers.append(Consumer(info, ns, share, host_watts * share, rss, vsize))
    consumers.sort(key=lambda c: c.watts, reverse=True)
    attributed = sum(c.watts for c in consumers)

    return Frame(
        timestamp=now.wall,
        window_s=window_s,
        sensor=sensor,
        estimated=estimated,
        host_source=host_source,
        host_watts=host_watts,
        host_energy_j=totals.host,
        sockets=_sockets(deltas, totals, window_s),
        unattributed_watts=max(host_watts - attributed, 0.0),
        cpu_load=busy / (busy + idle) if busy + idle > 0 else 0.0,
        n_cpus=now.machine.n_cpus,
        consumers=tuple(consumers),
        cgroups=_groups(consumers, lambda c: c.info.cgroup, with_container=True),
        containers=_groups(
            [c for c in consumers if c.info.container is not None],
            lambda c: c.info.container.id,  # type: ignore[union-attr]
            with_container=True,
        ),
        exes=_groups(consumers, lambda c: c.info.exe or f"[{c.info.comm}]"),
    )


def _sockets(deltas: dict[CounterKey, int], totals: EnergyTotals, window_s: float) -> tuple[SocketPower, ...]:
    def watts(key: CounterKey) -> float:
        return deltas[key] / 1e6 / window_s if window_s > 0 else 0.0

    sockets = []
    for socket in sorted({s for s, _ in deltas if s is not None}):
        domains = tuple(
            DomainPower(domain, watts((s, domain)), totals.counters[(s, domain)])
            for s, domain in sorted(deltas, key=lambda k: k[1])
            if s == socket and domain != "package"
        )
        package = (socket, "package")
        sockets.append(
            SocketPower(
                socket,
                watts(package) if package in deltas else 0.0,
                totals.counters.get(package, 0.0),
                domains,
            )
        )
    return tuple(sockets)


def _groups(
    consumers: Iterable[Consumer], key: Callable[[Consumer], str], *, with_container: bool = False
) -> tuple[Group, ...]:
    """Consumers summed per key, most power first."""
    groups: dict[str, list] = {}
    for consumer in consumers:
        container = consumer.info.container if with_container else None
        entry = groups.setdefault(key(consumer), [0.0, 0.0, 0, container])
        entry[0] += consumer.watts
        entry[1] += consumer.cpu_share
        entry[2] += 1
    ordered = sorted(groups.items(), key=lambda item: item[1][0], reverse=True)
    return tuple(Group(k, watts, share, n, container) for k, (watts, share, n, container) in ordered)
