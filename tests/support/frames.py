"""Frames and Snapshots made by hand, for the sinks' tests: every field a sink reads, values chosen.

`frame()` fills what a test does not care about with plausible values; `unattributed_watts` defaults to
what the consumers leave of host power, so the Frame keeps the attribution's identity. `snapshot()`
and `frame_between()` go through the real attribution instead, from CPU times chosen by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from wattprobe.core.attribution import Carry, EnergyTotals, attribute
from wattprobe.core.model import (
    AgentStats,
    Consumer,
    Container,
    Counter,
    DiskIo,
    EnergyReading,
    Frame,
    Group,
    HostFacts,
    MachineCpu,
    ProcessInfo,
    Snapshot,
    SocketPower,
    Workload,
)
from wattprobe.sources.identity.vms import with_guest

TIMESTAMP = 1_700_000_000.0  # 2023-11-14T22:13:20Z
S = 1_000_000_000  # ns


def process(
    pid: int,
    cmdline: str | None = None,
    *,
    exe: str | None = None,
    argv: Sequence[str] = (),
    cgroup: str = "/",
    container: Container | None = None,
) -> ProcessInfo:
    """A process as procfs describes it. `exe` defaults to argv[0], else /usr/bin/p<pid>; `cmdline` to
    argv joined, else the exe; its comm is the exe's name cut to 15 characters, as the kernel's."""
    if exe is None:
        exe = argv[0] if argv else f"/usr/bin/p{pid}"
    if cmdline is None:
        cmdline = " ".join(argv) if argv else exe
    comm = exe.rsplit("/", 1)[-1][:15] or "kthread"
    return with_guest(ProcessInfo(pid, comm, exe, cmdline, cgroup, container, tuple(argv)))


def consumer(
    info: ProcessInfo,
    watts: float,
    *,
    host_watts: float = 100.0,
    cpu_ns: int | None = None,
    rss_bytes: int = 0,
    vsize_bytes: int = 0,
    disk_io: DiskIo | None = None,
) -> Consumer:
    """`info` drawing `watts` of `host_watts`: its CPU share is that fraction (by default, of 1 s of CPU)."""
    share = watts / host_watts
    ns = round(share * S) if cpu_ns is None else cpu_ns
    return Consumer(info, ns, share, watts, rss_bytes, vsize_bytes, disk_io=disk_io)


def frame(
    consumers: Sequence[Consumer] = (),
    *,
    host_watts: float = 60.0,
    window_s: float = 1.0,
    sockets: Sequence[SocketPower] = (),
    sensor: str = "powercap_rapl",
    estimated: bool = False,
    host_source: str = "psys",
    host_energy_j: float = 0.0,
    unattributed_watts: float | None = None,
    cpu_load: float = 0.5,
    n_cpus: int = 4,
    cgroups: Sequence[Group] = (),
    containers: Sequence[Group] = (),
    exes: Sequence[Group] = (),
    timestamp: float = TIMESTAMP,
    agent: AgentStats | None = None,
    host: HostFacts | None = None,
    machine: MachineCpu | None = None,
    workloads: Mapping[str, Workload] | None = None,
    node_name: str | None = None,
) -> Frame:
    """A Frame of `host_watts` over `window_s` whose consumers are `consumers`, in that order."""
    if unattributed_watts is None:
        unattributed_watts = host_watts - sum(c.watts for c in consumers)
    return Frame(
        timestamp=timestamp,
        window_s=window_s,
        sensor=sensor,
        estimated=estimated,
        host_source=host_source,
        host_watts=host_watts,
        host_energy_j=host_energy_j,
        sockets=tuple(sockets),
        unattributed_watts=unattributed_watts,
        cpu_load=cpu_load,
        n_cpus=n_cpus,
        consumers=tuple(consumers),
        cgroups=tuple(cgroups),
        containers=tuple(containers),
        exes=tuple(exes),
        agent=agent or AgentStats(),
        host=host,
        machine=machine,
        workloads=dict(workloads or {}),
        node_name=node_name,
    )


def containers(consumers: Sequence[Consumer]) -> tuple[Group, ...]:
    """The per-container groups of `consumers`, as attribution makes them from their processes' time."""
    groups: dict[str, Group] = {}
    for c in consumers:
        found = c.info.container
        if found is not None:
            g = groups.get(found.id, Group(found.id, 0.0, 0.0, 0, found))
            groups[found.id] = Group(
                found.id, g.watts + c.watts, g.cpu_share + c.cpu_share, g.processes + 1, found
            )
    return tuple(sorted(groups.values(), key=lambda g: g.watts, reverse=True))


def snapshot(
    t_s: float,
    tasks: dict[int, int],
    *,
    exited: dict[int, int] | None = None,
    cgroups: dict[str, int] | None = None,
    cpus: int = 1,
    host_watts: float = 50.0,
) -> Snapshot:
    """CPU times (ns, by task key) at `t_s` seconds, with a psys counter that grows by `host_watts`."""
    energy = EnergyReading(round(t_s * S), (Counter(None, "psys", round(t_s * host_watts * 1e6)),))
    return Snapshot(
        round(t_s * S), t_s, energy, MachineCpu(0, 0, 0, cpus), tasks, exited or {}, cgroups or {}
    )


def frame_between(
    prev: Snapshot, now: Snapshot, infos: dict[int, ProcessInfo], carry: Carry | None = None
) -> Frame:
    """The real attribution's Frame between two hand-made snapshots; `infos` describes the task keys."""
    return attribute(
        prev,
        now,
        {(None, "psys"): now.energy.counters[0].uj - prev.energy.counters[0].uj},
        EnergyTotals(),
        {key: (info, 0, 0, None) for key, info in infos.items()},
        sensor="test",
        estimated=False,
        carry=Carry() if carry is None else carry,
    )
