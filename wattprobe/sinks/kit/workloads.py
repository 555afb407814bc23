"""Workloads' figures for the metric catalogue: a Frame's power by zone, pod, namespace and VM, and
the ledger that adds each workload's power up into energy counters that never go back.

A workload's share of a zone is the zone's power x the workload's share of all CPU time in the window:
the figure wattprobe's attribution gives a process against host power, here against each RAPL zone.
Kepler's split (node active = node x CPU usage ratio; a workload gets active power x its CPU time / the
node's used CPU time) comes to the same figure.

A Frame says power over its window; energy since the agent started is that power added up over the
Frames, per workload. The `Ledger` does it once per Frame (a Frame served twice is counted once), for
every workload of the Frame, listed in a series or not, so that a process leaving the top N and coming
back keeps its counter. A workload gone from the Frames for `grace_s` is forgotten (memory stays
bounded); if it comes back, its counters start again from 0 with a new start time (`Account.start_ns`),
which a cumulative sum's reader (OpenTelemetry) takes for a reset. A figure that is not a finite,
positive energy adds nothing, so a counter stays right.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from wattprobe.core.model import Container, Frame, ProcessInfo, Workload

GRACE_S = 600.0  # a workload absent this long is forgotten (its energy counter ends)
HOST = ""  # the key of a workload's energy against host power (wattprobe's figure) in Account.joules


@dataclass(frozen=True, slots=True)
class Zone:
    """A RAPL domain summed over the sockets (Kepler aggregates zones of one name), or the host-wide
    counter (psys, a wall meter)."""

    name: str  # package, core, uncore, dram, psys, wall
    path: str  # its powercap zone (`aggregated-NAME` over several sockets, as Kepler says)
    watts: float
    joules: float  # since the agent started


def zones(frame: Frame) -> tuple[Zone, ...]:
    """The Frame's zones: packages and their domains by name, and the host-wide counter if it has one."""
    found: dict[str, list] = {}
    for s in frame.sockets:
        parts = [("package", s.watts, s.energy_j, f"intel-rapl:{s.id}")]
        parts += [(d.name, d.watts, d.energy_j, f"intel-rapl:{s.id}:{d.id}") for d in s.domains]
        for name, watts, joules, path in parts:
            entry = found.setdefault(name, [0.0, 0.0, [], name])
            entry[0] += watts
            entry[1] += joules
            entry[2].append(path)
    result = [
        Zone(name, f"/sys/class/powercap/{paths[0]}" if len(paths) == 1 else f"aggregated-{name}", w, j)
        for name, (w, j, paths, _) in found.items()
    ]
    if frame.host_source in ("psys", "wall"):
        result.append(Zone(frame.host_source, frame.host_source, frame.host_watts, frame.host_energy_j))
    return tuple(result)


@dataclass(frozen=True, slots=True)
class Pod:
    uid: str
    name: str | None
    namespace: str | None


@dataclass(frozen=True, slots=True)
class Named:
    """A container and its names (None: not known)."""

    container: Container | None
    workload: Workload | None


@dataclass(frozen=True, slots=True)
class Vm:
    id: str  # the folder name wattprobe gives it: unique among the host's VMs
    name: str


@dataclass(slots=True)
class Flow:
    """A workload's part of one Frame: its share of all CPU time, its power, its CPU seconds."""

    about: object  # what it is: ProcessInfo, Named (a container), Pod, namespace, Vm, or HOST
    share: float = 0.0
    watts: float = 0.0
    cpu_s: float = 0.0


# Kinds of workloads: the process key is (pid, exe key, command name), the labels of its series.
KINDS = ("process", "container", "pod", "namespace", "vm", "active", "idle")


def pod_of(container: Container | None, workload: Workload | None) -> str | None:
    """The uid of the container's pod: Kubernetes' answer, else the cgroup path's; None: no pod."""
    if workload is not None and workload.pod_uid:
        return workload.pod_uid
    return container.pod_uid if container is not None else None


def flows(frame: Frame, *, processes: bool = False) -> dict[str, dict[object, Flow]]:
    """The Frame's workloads by kind and key: containers, their pods (a container with no known pod is in
    none), pods' namespaces (where known), VMs, node active and idle (by zone), and with `processes`,
    every process."""
    found: dict[str, dict[object, Flow]] = {kind: {} for kind in KINDS}
    machine_s = frame.n_cpus * frame.window_s
    if processes:
        procs = found["process"]
        for c in frame.consumers:
            info = c.info
            procs[process_key(info)] = Flow(info, c.cpu_share, c.watts, c.cpu_ns / 1e9)
    vms = found["vm"]
    for c in frame.consumers:
        folder = c.info.vm_folder
        if folder is not None:
            vm = vms.get(folder)
            if vm is None:
                vm = vms[folder] = Flow(Vm(folder, c.info.vm or folder))
            vm.share += c.cpu_share
            vm.watts += c.watts
            vm.cpu_s += c.cpu_ns / 1e9
    workloads = frame.workloads
    containers, pods, namespaces = found["container"], found["pod"], found["namespace"]
    for g in frame.containers:
        workload = workloads.get(g.key)
        cpu_s = g.cpu_share * machine_s
        containers[g.key] = Flow(Named(g.container, workload), g.cpu_share, g.watts, cpu_s)
        uid = pod_of(g.container, workload)
        if uid is None:
            continue
        pod = pods.get(uid)
        if pod is None:
            pod = pods[uid] = Flow(Pod(uid, None, None))
        if workload is not None and workload.pod_name and not pod.about.name:  # type: ignore[attr-defined]
            pod.about = Pod(uid, workload.pod_name, workload.pod_namespace)
        pod.share += g.cpu_share
        pod.watts += g.watts
        pod.cpu_s += cpu_s
    for pod in pods.values():
        namespace = pod.about.namespace  # type: ignore[attr-defined]
        if namespace:
            ns = namespaces.get(namespace)
            if ns is None:
                ns = namespaces[namespace] = Flow(namespace)
            ns.share += pod.share
            ns.watts += pod.watts
            ns.cpu_s += pod.cpu_s
    used = frame.cpu_load
    found["active"][HOST] = Flow(HOST, used, frame.host_watts * used)
    found["idle"][HOST] = Flow(HOST, 1.0 - used, frame.host_watts * (1.0 - used))
    return found


@dataclass(slots=True)
class Account:
    """A workload's figures since the agent started (or first saw it)."""

    about: object  # as of the last Frame it was in
    joules: dict[str, float] = field(default_factory=dict)  # by zone; HOST: against host power
    cpu_s: float = 0.0
    seen: float = 0.0  # the timestamp of the last Frame it was in
    start_ns: int = 0  # the start of the first Frame's window it was in, ns since the epoch: when it began


class Ledger:
    """Workloads' energy and CPU time added up over the Frames: every energy counter of a workload.
    `zones`: per RAPL zone too (Kepler's naming); `processes`: every process too."""

    def __init__(self, *, zones: bool = False, processes: bool = False, grace_s: float = GRACE_S) -> None:
        self.zones = zones
        self.processes = processes
        self.grace_s = grace_s
        self.accounts: dict[str, dict[object, Account]] = {kind: {} for kind in KINDS}
        self.last: float | None = None  # the timestamp of the last Frame added
        self.lock = threading.Lock()  # held by a sink while it adds a Frame and renders from it

    def add(self, frame: Frame) -> bool:
        """Add the Frame's energy (False: this Frame, or a later one, was added already)."""
        if self.last is not None and frame.timestamp <= self.last:
            return False
        self.last = now = frame.timestamp
        window = frame.window_s
        begin_ns = window_ns(frame)[0]
        by_zone = [(z.name, z.watts * window) for z in zones(frame)] if self.zones else []
        for kind, found in flows(frame, processes=self.processes).items():
            accounts = self.accounts[kind]
            for key, flow in found.items():
                account = accounts.get(key)
                if account is None:
                    account = accounts[key] = Account(flow.about, start_ns=begin_ns)
                account.about = flow.about
                account.seen = now
                account.cpu_s += flow.cpu_s
                joules = account.joules
                added = flow.watts * window
                joules[HOST] = joules.get(HOST, 0.0) + (added if 0.0 < added < math.inf else 0.0)
                share = flow.share
                for zone, zone_j in by_zone:
                    added = zone_j * share
                    joules[zone] = joules.get(zone, 0.0) + (added if 0.0 < added < math.inf else 0.0)
        for accounts in self.accounts.values():
            gone = [key for key, a in accounts.items() if now - a.seen > self.grace_s]
            for key in gone:
                del accounts[key]
        return True

    def known(self, kind: str) -> Iterator[tuple[object, Account]]:
        """The workloads of a kind whose energy is counted, in the order first seen."""
        return iter(list(self.accounts[kind].items()))


def window_ns(frame: Frame) -> tuple[int, int]:
    """The Frame's window as (start, end) in ns since the epoch: the times of a point that covers it."""
    end = round(frame.timestamp * 1e9)
    return end - round(frame.window_s * 1e9), end


def process_key(info: ProcessInfo) -> tuple[int, str, str]:
    return (info.pid, info.exe_key, info.comm)
