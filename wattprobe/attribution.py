"""Two snapshots -> one Frame: energy deltas (wrap handled here, once), power, and its split.

Attribution: a process's power = host power x its CPU time / machine CPU time (all CPUs) over the
same window. Its CPU time includes that of its descendants that exited in the window (reaped into
its cutime; the reader counts it once), reported apart as `exited_*`. What no process explains
(idle CPUs, work the kernel does not charge to a process) is unattributed power, so that
sum(consumers) + unattributed = host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from wattprobe.model import (
    HOST_DOMAINS,
    Consumer,
    Counter,
    DomainPower,
    EnergyReading,
    Frame,
    Group,
    ProcessInfo,
    Snapshot,
    SocketPower,
)

CounterKey = tuple[int | None, str]
ProcessLookup = Callable[[int], tuple[ProcessInfo, int, int] | None]
K = TypeVar("K", int, str)


def counter_delta(prev: Counter, now: Counter) -> int | None:
    """µJ spent between two reads of one counter, across a wrap; None when the pair is implausible.

    A counter goes down only when it wraps at max_uj. Between two reads a few seconds apart it
    cannot legitimately advance by half its range (that takes minutes to hours at full power), so
    such a delta, or a decrease on a counter with no known range, is a torn or reset value.
    """
    delta = now.uj - prev.uj
    if delta < 0 and prev.max_uj > 0:
        delta += prev.max_uj
    if delta < 0 or (prev.max_uj > 0 and delta > prev.max_uj // 2):
        return None
    return delta


def energy_deltas(prev: EnergyReading, now: EnergyReading) -> dict[CounterKey, int] | None:
    """Per-counter µJ over the window; None if any counter present in both reads is implausible."""
    before = {c.key: c for c in prev.counters}
    deltas = {}
    for counter in now.counters:
        old = before.get(counter.key)
        if old is None:
            continue
        delta = counter_delta(old, counter)
        if delta is None:
            return None
        deltas[counter.key] = delta
    return deltas


def host_energy(deltas: dict[CounterKey, int]) -> tuple[int, str]:
    """Host µJ and where it comes from: a host-wide counter (psys, wall) if any, else packages + dram."""
    for domain in HOST_DOMAINS:
        if (None, domain) in deltas:
            return deltas[(None, domain)], domain
    packages = sum(d for (_, domain), d in deltas.items() if domain == "package")
    dram = [d for (_, domain), d in deltas.items() if domain == "dram"]
    return packages + sum(dram), "package+dram" if dram else "package"


@dataclass
class EnergyTotals:
    """Energy since the agent started, in joules, per counter and for the host: never decreasing."""

    counters: dict[CounterKey, float] = field(default_factory=dict)
    host: float = 0.0

    def add(self, deltas: dict[CounterKey, int], host_uj: int) -> None:
        for key, delta in deltas.items():
            self.counters[key] = self.counters.get(key, 0.0) + delta / 1e6
        self.host += host_uj / 1e6


@dataclass
class Carry:
    """CPU time (ns) withheld from consumers in a window where their sum exceeded the machine's time.

    Scan timing and the schedstat lag of running threads can make the processes' (or cgroups')
    sum exceed the machine's time by a little in one window and fall short in the next. Scaling
    shares down is needed to keep sum + unattributed = host, but only scaling down would bias every
    share low on a busy machine: what is withheld is given back in the next windows instead.
    """

    tasks: dict[int, float] = field(default_factory=dict)


def _fit(wanted: dict[K, float], machine_ns: int, carried: dict[K, float]) -> dict[K, float]:
    """Shares of the machine's time: each wanted ns plus what was withheld from it before, scaled
    down together if they exceed the machine's time; what is withheld now is carried (`carried`
    is updated in place; keys missing from `wanted` are gone and dropped)."""
    for key, ns in carried.items():
        if key in wanted:
            wanted[key] += ns
    total = sum(wanted.values())
    carried.clear()
    if machine_ns <= 0:
        return dict.fromkeys(wanted, 0.0)
    if total <= machine_ns:
        return {key: ns / machine_ns for key, ns in wanted.items()}
    scale = machine_ns / total
    for key, ns in wanted.items():
        carried[key] = ns * (1.0 - scale)
    return {key: ns * scale / machine_ns for key, ns in wanted.items()}


def attribute(
    prev: Snapshot,
    now: Snapshot,
    deltas: dict[CounterKey, int],
    totals: EnergyTotals,
    lookup: ProcessLookup,
    *,
    sensor: str,
    estimated: bool,
    carry: Carry | None = None,
) -> Frame:
    """The Frame of the window between two snapshots; `totals` already include this window.

    `carry` keeps, from one window to the next, what had to be withheld to fit the machine's time
    (a Frame without it withholds for good, as a one-off comparison may).
    """
    carry = carry if carry is not None else Carry()
    window_s = (now.energy.t_ns - prev.energy.t_ns) / 1e9
    host_uj, host_source = host_energy(deltas)
    host_watts = host_uj / 1e6 / window_s if window_s > 0 else 0.0

    busy = now.machine.busy - prev.machine.busy
    idle = now.machine.idle - prev.machine.idle
    machine_ns = now.machine.n_cpus * (now.t_ns - prev.t_ns)
    before, tasks = prev.tasks, now.tasks
    used = {key: ns for key, cpu in tasks.items() if (ns := cpu - before.get(key, 0)) > 0}
    measured = dict(used)
    for key in carry.tasks:  # a process that ran less this window still gets back what it was owed
        if key not in used and key in tasks:
            used[key] = 0
    shares = _fit(used, machine_ns, carry.tasks)
    exited_now, exited_before = now.exited, prev.exited
    consumers = []
    for key, share in shares.items():
        found = lookup(key)
        if found is None:
            continue
        info, rss, vsize = found
        ns = measured.get(key, 0)
        exited = exited_now.get(key, 0) - exited_before.get(key, 0) if key in exited_now else 0
        watts = host_watts * share
        consumers.append(
            Consumer(info, ns, share, watts, rss, vsize, exited, watts * exited / ns if ns > 0 else 0.0)
        )
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
