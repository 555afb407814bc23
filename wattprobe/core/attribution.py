"""Two snapshots -> one Frame: power from the energy deltas (judged in `wattprobe.core.counters`), and its split.

Attribution: a process's power = host power x its CPU time / machine CPU time (all CPUs) over the
same window. Its CPU time includes that of its descendants that exited in the window (reaped into
its cutime; the reader counts it once), reported apart as `exited_*`. What no process explains
(idle CPUs, work the kernel does not charge to a process) is unattributed power, so that
sum(consumers) + unattributed = host. Cgroups and containers take their CPU time from their own
counters where readable (exited processes included; without one, from their live processes' own
time), and sum(cgroups) + unattributed_cgroup = host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from wattprobe.core.counters import CounterKey, host_energy
from wattprobe.core.model import (
    Consumer,
    DiskIo,
    DomainPower,
    EnergyReading,
    Frame,
    Group,
    ProcessInfo,
    Snapshot,
    SocketPower,
    container_cgroup,
)

# What the /proc reader knows of a process: its facts, resident and virtual bytes, disk I/O.
ProcessFacts = tuple[ProcessInfo, int, int, DiskIo | None]
K = TypeVar("K", int, str)


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
    cgroups: dict[str, float] = field(default_factory=dict)
    containers: dict[str, float] = field(default_factory=dict)


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


def cpu_used(prev: Snapshot, now: Snapshot) -> dict[int, int]:
    """The CPU ns each process that ran in the window used. Where the reader said what changed since
    `prev`, only those keys are looked at (a tick costs what ran, not what exists)."""
    tasks, changed = now.tasks, now.changed
    if changed is None:
        before = prev.tasks
        return {key: ns for key, cpu in tasks.items() if (ns := cpu - before.get(key, 0)) > 0}
    if now.seq != prev.seq + 1:
        raise ValueError(f"snapshot {now.seq} says what changed since snapshot {now.seq - 1}, not {prev.seq}")
    ran = (key for key in sorted(changed) if key in tasks)  # sorted: ties in power keep an order
    return {key: ns for key in ran if (ns := tasks[key] - changed[key]) > 0}


def consumer_keys(ran: Mapping[int, int], carry: Carry | None = None) -> list[int]:
    """The processes that get a share of the window: those that ran in it (`ran`, from `cpu_used`),
    and those owed time (that did not run: a key owed time whose process is gone has no facts, and is
    left out)."""
    if carry is None:
        return list(ran)
    return [*ran, *(key for key in carry.tasks if key not in ran)]


def attribute(
    prev: Snapshot,
    now: Snapshot,
    deltas: dict[CounterKey, int],
    totals: EnergyTotals,
    processes: Mapping[int, ProcessFacts],
    *,
    sensor: str,
    estimated: bool,
    carry: Carry | None = None,
    ran: Mapping[int, int] | None = None,
) -> Frame:
    """The Frame of the window between two snapshots; `totals` already include this window.

    `processes` has the facts of the processes `consumer_keys()` names (a process missing from it
    has vanished since the scan: it is left out). `carry` keeps, from one window to the next, what
    had to be withheld to fit the machine's time (a Frame without it withholds for good, as a
    one-off comparison may). `ran` is `cpu_used(prev, now)` where the caller has it already.
    """
    carry = carry if carry is not None else Carry()
    window_s = (now.energy.t_ns - prev.energy.t_ns) / 1e9
    host_uj, host_source = host_energy(deltas)
    host_watts = host_uj / 1e6 / window_s if window_s > 0 else 0.0

    busy = now.machine.busy - prev.machine.busy
    idle = now.machine.idle - prev.machine.idle
    machine_ns = now.machine.n_cpus * (now.t_ns - prev.t_ns)
    measured = cpu_used(prev, now) if ran is None else ran
    used: dict[int, float] = dict(measured)
    for key in carry.tasks:  # a process that did not run this window still gets back what it was owed
        if key not in used and key in processes:
            used[key] = 0
    shares = _fit(used, machine_ns, carry.tasks)
    exited_now, exited_before = now.exited, prev.exited
    consumers = []
    for key, share in shares.items():
        found = processes.get(key)
        if found is None:
            continue
        info, rss, vsize, disk_io = found
        ns = measured.get(key, 0)
        exited = exited_now.get(key, 0) - exited_before.get(key, 0) if key in exited_now else 0
        watts = host_watts * share
        exited_watts = watts * exited / ns if ns > 0 else 0.0
        consumers.append(Consumer(info, ns, share, watts, rss, vsize, exited, exited_watts, disk_io))
    consumers.sort(key=lambda c: c.watts, reverse=True)
    attributed = sum(c.watts for c in consumers)
    cgroups = _cgroup_groups(consumers, prev, now, machine_ns, host_watts, carry)

    return Frame(
        timestamp=now.wall,
        window_s=window_s,
        sensor=sensor,
        estimated=estimated,
        host_source=host_source,
        host_watts=host_watts,
        host_energy_j=totals.host,
        sockets=_sockets(deltas, totals, window_s, now.energy),
        unattributed_watts=max(host_watts - attributed, 0.0),
        cpu_load=busy / (busy + idle) if busy + idle > 0 else 0.0,
        n_cpus=now.machine.n_cpus,
        consumers=tuple(consumers),
        cgroups=cgroups,
        containers=_container_groups(consumers, prev, now, machine_ns, host_watts, carry),
        exes=_groups(consumers, lambda c: c.info.exe_key),
        unattributed_cgroup_watts=max(host_watts - sum(g.watts for g in cgroups), 0.0),
    )


def _sockets(
    deltas: dict[CounterKey, int], totals: EnergyTotals, window_s: float, reading: EnergyReading
) -> tuple[SocketPower, ...]:
    """Each socket's package power, and its other domains' in the order of their names."""

    def watts(key: CounterKey) -> float:
        return deltas[key] / 1e6 / window_s if window_s > 0 else 0.0

    ids = {(c.socket, c.domain): c.index for c in reading.counters}
    domains: dict[int, list[DomainPower]] = {}
    for key in sorted(deltas, key=lambda k: k[1]):
        socket, domain = key
        if socket is not None and domain != "package":
            found = DomainPower(domain, watts(key), totals.counters[key], ids.get(key, 0))
            domains.setdefault(socket, []).append(found)
    return tuple(
        SocketPower(
            socket,
            watts((socket, "package")) if (socket, "package") in deltas else 0.0,
            totals.counters.get((socket, "package"), 0.0),
            tuple(domains.get(socket, ())),
        )
        for socket in sorted({s for s, _ in deltas if s is not None})
    )


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


def _counted_groups(
    members: dict[str, list[Consumer]],
    counted: dict[str, int],
    machine_ns: int,
    host_watts: float,
    carried: dict[str, float],
) -> tuple[Group, ...]:
    """Groups of consumers whose CPU time is the group's own counter where `counted` has it, else
    their processes' own time; fitted to the machine's time like processes are.

    Without a counter, a cgroup cannot say where its processes' exited descendants ran: in it, or in
    another cgroup whose counter already has their time. Their part stays with the processes (and
    the per-exe groups) and is left out here, so that no time is counted twice at this level.
    """
    wanted = {}
    for key, group in members.items():
        if key in counted:
            wanted[key] = float(counted[key])
        else:
            wanted[key] = sum(_own_share(c) for c in group) * machine_ns
    shares = _fit(wanted, machine_ns, carried)
    groups = [
        Group(
            key,
            host_watts * shares[key],
            shares[key],
            len(group),
            group[0].info.container,
            "cgroup" if key in counted else "processes",
        )
        for key, group in members.items()
    ]
    groups.sort(key=lambda g: g.watts, reverse=True)
    return tuple(groups)


def _own_share(consumer: Consumer) -> float:
    """A consumer's share without the part of its exited descendants."""
    if consumer.cpu_ns <= 0:
        return consumer.cpu_share
    return consumer.cpu_share * (1.0 - consumer.exited_cpu_ns / consumer.cpu_ns)


def _counter_deltas(prev: Snapshot, now: Snapshot, paths: Iterable[str]) -> dict[str, int]:
    """CPU ns of each cgroup over the window, from its counter in both snapshots; a cgroup listed
    below another keeps its own time, which its ancestor's counter (hierarchical) then loses."""
    found = {p: now.cgroups[p] - prev.cgroups[p] for p in paths if p in now.cgroups and p in prev.cgroups}
    own = dict(found)
    for path, ns in found.items():
        parent = path.rpartition("/")[0]
        while parent:
            if parent in found:
                own[parent] -= ns
                break
            parent = parent.rpartition("/")[0]
    return {path: max(ns, 0) for path, ns in own.items()}


def _cgroup_groups(
    consumers: list[Consumer], prev: Snapshot, now: Snapshot, machine_ns: int, host_watts: float, carry: Carry
) -> tuple[Group, ...]:
    members: dict[str, list[Consumer]] = {}
    for consumer in consumers:
        members.setdefault(consumer.info.cgroup, []).append(consumer)
    counted = _counter_deltas(prev, now, members)
    return _counted_groups(members, counted, machine_ns, host_watts, carry.cgroups)


def _container_groups(
    consumers: list[Consumer], prev: Snapshot, now: Snapshot, machine_ns: int, host_watts: float, carry: Carry
) -> tuple[Group, ...]:
    members: dict[str, list[Consumer]] = {}
    paths: dict[str, str] = {}
    for consumer in consumers:
        container = consumer.info.container
        if container is not None:
            members.setdefault(container.id, []).append(consumer)
            path = container_cgroup(consumer.info.cgroup, container)
            if path is not None:
                paths.setdefault(container.id, path)
    deltas = _counter_deltas(prev, now, set(paths.values()))
    counted = {cid: deltas[path] for cid, path in paths.items() if path in deltas}
    return _counted_groups(members, counted, machine_ns, host_watts, carry.containers)
