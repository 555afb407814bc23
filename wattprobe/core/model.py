"""The data that flows through the pipeline: energy readings, snapshots and frames.

Energy is the primitive: sensors give monotonic counters in µJ; power only ever comes from the
difference of two snapshots (see `attribution`). Every Frame is immutable and shared by all exporters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

# Domains a counter can measure. `psys` (platform) and `wall` (a wall meter) cover the whole host.
HOST_DOMAINS = ("psys", "wall")


@dataclass(frozen=True, slots=True)
class Counter:
    """One energy counter as a sensor read it."""

    socket: int | None  # physical package id; None for a host-wide counter (psys, wall)
    domain: str  # package, core, uncore, dram, psys, wall
    uj: int  # cumulative energy, µJ
    max_uj: int = 0  # the value at which the counter wraps to 0 (max_energy_range_uj); 0: never wraps
    max_w: float = 0.0  # the most its zone can draw, W; 0: unknown (wattprobe.core.counters bounds it)
    index: int = 0  # the zone's number among its socket's domains (M of intel-rapl:N:M)

    @property
    def key(self) -> tuple[int | None, str]:
        return (self.socket, self.domain)


@dataclass(frozen=True, slots=True)
class EnergyReading:
    """All counters of a sensor, read at one instant (`t_ns`, time.monotonic_ns())."""

    t_ns: int
    counters: tuple[Counter, ...]
    # Of the energy counted so far, how much was estimated rather than measured (a wall meter's gap
    # filled in), µJ, cumulative: a window in which it grew is marked estimated.
    estimated_uj: int = 0
    # How long the read took (the values were read somewhere in it: `t_ns` is its middle).
    spread_ns: int = 0


class Sensor(Protocol):
    """A source of host energy. Sensors that only know power integrate it into a counter."""

    name: str  # powercap_rapl, estimate, powerspy2
    estimated: bool  # True when every figure comes from a model, not a measurement
    # An estimating sensor also says which model makes its figures (`model`, a str): the sampler
    # copies it into every Frame. Optional: sensors that measure have none.

    def read(self) -> EnergyReading:
        """Read every counter now; raise SensorReadError when a counter cannot be read."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class MachineCpu:
    """Cumulative CPU time of the whole machine from /proc/stat, in clock ticks, and the scheduler's
    counters the same file gives."""

    busy: int  # user + nice + system + irq + softirq
    idle: int  # idle + iowait
    steal: int
    n_cpus: int  # online CPUs (vCPUs on a VM)
    context_switches: int = 0  # since boot
    forks: int = 0  # processes created since boot
    running: int = 0  # processes running now
    blocked: int = 0  # processes blocked on I/O now


@dataclass(frozen=True, slots=True)
class Disk:
    """A mounted disk file system."""

    name: str  # the device, as mounted (/dev/sda1)
    mount_point: str
    file_system: str
    kind: str  # SSD, HDD or Unknown (the device's queue/rotational)
    removable: bool
    total_bytes: int
    available_bytes: int  # to an unprivileged user


@dataclass(frozen=True, slots=True)
class CpuInfo:
    """One logical CPU as /proc/cpuinfo describes it (Kepler's kepler_node_cpu_info labels)."""

    processor: int
    vendor_id: str
    model_name: str
    physical_id: int
    core_id: int


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the host is doing besides drawing power, read once per measurement (Scaphandre's host set)."""

    load_avg: tuple[float, float, float]  # 1, 5 and 15 minutes
    memory_total_bytes: int
    memory_available_bytes: int
    memory_free_bytes: int
    swap_total_bytes: int
    swap_free_bytes: int
    cpu_mhz: float | None  # the mean current frequency of the CPUs, where the machine says
    disks: tuple[Disk, ...]
    cpus: tuple[CpuInfo, ...] = ()  # the logical CPUs, where /proc/cpuinfo says


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Sensor reading + CPU times at one instant."""

    t_ns: int  # monotonic time of the procfs scan
    wall: float  # time.time() at the same instant
    energy: EnergyReading
    machine: MachineCpu
    # task key (see procfs.task_key) -> cumulative CPU time, ns, exited descendants included: of every
    # live process, or where `changed` is given, of those in it that live (the others' stood still).
    tasks: dict[int, int]
    exited: dict[int, int] = field(
        default_factory=dict
    )  # task key -> the exited descendants' part, where not 0
    cgroups: dict[str, int] = field(default_factory=dict)  # cgroup path -> its own cumulative CPU time, ns
    # The task keys whose CPU time changed since the reader's snapshot numbered `seq - 1`, each with its
    # CPU time then (0: new since), so that a window looks at what ran, not at every process that exists;
    # such a snapshot is compared with that one only. None: `tasks` has every process, compare them all.
    seq: int = 0
    changed: Mapping[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Container:
    id: str  # full id as found in the cgroup path
    runtime: str | None  # docker, containerd, cri-o, podman; None when the path does not say
    scheduler: str  # kubernetes, docker, podman, containerd
    pod_uid: str | None = None


@dataclass(frozen=True, slots=True)
class Workload:
    """A container as its owners name it: the engine (its name, image, labels) and Kubernetes (the pod,
    its namespace, the container's name in the pod). None: not known, or not known yet (names are
    resolved off the tick; a container is shown by its id until then)."""

    name: str | None = None  # the container's name: Kubernetes' name in its pod, else the engine's
    image: str | None = None
    labels: tuple[tuple[str, str], ...] = ()  # the engine's labels, sorted by key
    pod_name: str | None = None
    pod_namespace: str | None = None
    pod_uid: str | None = None


class NameResolver(Protocol):
    """Names containers by id without ever blocking a tick: what it does not know yet it looks up in
    the background (a container engine's API, the Kubernetes API) and knows from a later tick on."""

    node_name: str | None  # the Kubernetes node whose pods it names (None: no Kubernetes)

    def names(self, containers: Iterable[Container]) -> Mapping[str, Workload]:
        """The names known now of these containers, by container id (unknown ones left out)."""
        ...

    def close(self) -> None: ...


def container_cgroup(cgroup: str, container: Container | None) -> str | None:
    """The container's own cgroup: `cgroup` up to the component that names the container."""
    if container is None:
        return None
    parts = cgroup.split("/")
    for i, part in enumerate(parts):
        if container.id in part:
            return "/".join(parts[: i + 1])
    return None


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """Static facts of one process, read once per (pid, starttime)."""

    pid: int
    comm: str
    exe: str  # path of the executable, "" when unreadable (kernel thread, other user's process)
    cmdline: str  # argv joined by spaces (secrets redacted: see sources.identity.redaction)
    cgroup: str  # cgroup path relative to the cgroup root
    container: Container | None
    argv: tuple[str, ...] = ()  # the NUL-separated entries of /proc/PID/cmdline, each kept whole
    vm: str | None = None  # the VM a QEMU/KVM process runs (sources.identity.vms): its name as given
    vm_folder: str | None = None  # and a folder name of its own for that VM

    @property
    def name(self) -> str:
        """Short display name: the executable's base name, else the command name."""
        return self.exe.rsplit("/", 1)[-1] or self.comm

    @property
    def exe_key(self) -> str:
        """What its executable is known by in per-executable figures: its path, else [comm]."""
        return self.exe or f"[{self.comm}]"


@dataclass(frozen=True, slots=True)
class DomainPower:
    name: str
    watts: float
    energy_j: float  # cumulative since the agent started, never decreasing
    id: int = 0  # its number among its socket's domains (M of intel-rapl:N:M)


@dataclass(frozen=True, slots=True)
class SocketPower:
    id: int
    watts: float  # the package domain
    energy_j: float
    domains: tuple[DomainPower, ...]  # core, uncore, dram, ... (not the package itself)


@dataclass(frozen=True, slots=True)
class DiskIo:
    """Bytes a process made the storage layer read and write (/proc/PID/io)."""

    read_bytes: int  # since it started
    write_bytes: int
    read_delta: int  # since it was last read
    write_delta: int


@dataclass(frozen=True, slots=True)
class Consumer:
    """One process's share of host power over the window."""

    info: ProcessInfo
    cpu_ns: int  # CPU time used in the window
    cpu_share: float  # its share of machine CPU time (all CPUs) in the window: cpu_ns / machine time, unless
    # the processes' sum exceeded the machine's time (then scaled down, and the rest given back later)
    watts: float
    rss_bytes: int
    vsize_bytes: int
    exited_cpu_ns: int = 0  # the part of cpu_ns its descendants used and exited with (reaped into it)
    exited_watts: float = 0.0  # the part of watts that comes from them
    disk_io: DiskIo | None = None  # None where /proc/PID/io is not readable (another user's process)


@dataclass(frozen=True, slots=True)
class Group:
    """Power of a set of processes: one cgroup, container or executable."""

    key: str
    watts: float
    cpu_share: float
    processes: int
    container: Container | None = None
    source: str = "processes"  # "cgroup": the cgroup's own counter (exited processes included)


@dataclass(frozen=True, slots=True)
class AgentStats:
    """The agent's own cost, as of this Frame."""

    cpu_seconds: float = 0.0  # its user + system CPU time since it started
    cpu_percent: float = 0.0  # of all CPUs, over the window
    peak_rss_bytes: int = 0
    rss_bytes: int = 0
    vsize_bytes: int = 0
    tick_seconds: float = 0.0  # how long its previous measurement took
    processes_tracked: int = 0


@dataclass(frozen=True, slots=True)
class Frame:
    """What two snapshots mean: power over the window between them."""

    timestamp: float  # Unix time at the end of the window
    window_s: float
    sensor: str
    estimated: bool
    host_source: str  # which counters make host energy: psys, wall, package+dram, package
    host_watts: float
    host_energy_j: float  # cumulative since the agent started, never decreasing
    sockets: tuple[SocketPower, ...]
    unattributed_watts: float  # host power no process explains: idle CPUs, the kernel's own work
    cpu_load: float  # busy fraction of all CPUs in the window, 0..1
    n_cpus: int
    consumers: tuple[Consumer, ...]  # processes that used CPU in the window, most power first
    cgroups: tuple[Group, ...]
    containers: tuple[Group, ...]
    exes: tuple[Group, ...]
    agent: AgentStats = AgentStats()
    host: HostFacts | None = None
    machine: MachineCpu | None = None  # the machine's counters at the end of the window
    socket_cpus: tuple[tuple[int, int], ...] = ()  # (socket id, its first logical cpu), where known
    # host power the cgroups do not explain: sum(cgroups) + this = host (None: not computed)
    unattributed_cgroup_watts: float | None = None
    # the names of the containers in this Frame, by container id (those known when it was made)
    workloads: Mapping[str, Workload] = field(default_factory=dict)
    node_name: str | None = None  # the Kubernetes node (or host) the agent runs on, where known
    # What one command's or block's meter needs (commandenergy.meter), so that it reads Frames only:
    scan_ns: tuple[int, int] = (0, 0)  # monotonic ns of the two scans the CPU times are between
    resets: int = 0  # new baselines since the previous Frame (a counter reset): the energy between is unknown
    # the pids the sampler follows (`Sampler.follow`) -> the live processes below each at the window's end
    trees: Mapping[int, frozenset[int]] = field(default_factory=dict)
    # the cgroups the sampler watches (`Sampler.watch`) -> their CPU ns over the window, where read at both ends
    cgroup_ns: Mapping[str, int] = field(default_factory=dict)
    model: str | None = None  # the model that made estimated figures (the sensor's), None when measured


class ProcessReader(Protocol):
    """CPU time of the machine, its processes and cgroups, once per scan: what the sampler calls on the
    procfs reader (`sources.procfs.ProcfsReader`). Core owns the contract; sources implement it."""

    root: str  # the procfs mount, for messages

    def scan_changed(self) -> tuple[MachineCpu, dict[int, int]]:
        """Machine CPU time, and the cumulative CPU ns of the live processes whose time changed since
        the last `changed()` (every process at the first scan), by task key."""
        ...

    def exited(self) -> dict[int, int]:
        """Cumulative ns of exited descendants at the last scan, by task key."""
        ...

    def cgroup_ns(self) -> dict[str, int]:
        """Cumulative CPU ns of the tracked cgroups at the last scan, by cgroup path."""
        ...

    def changed(self) -> tuple[int, Mapping[int, int]]:
        """A number one more than at the last call, and the task keys whose CPU time changed since
        that call (new processes included, 0 then; vanished ones may be there too), each with its
        cumulative CPU ns at that call."""
        ...

    def process(self, key: int) -> tuple[ProcessInfo, int, int, DiskIo | None] | None:
        """Facts, RSS and virtual size (bytes) and disk I/O of a process seen at the last scan."""
        ...

    def descendants(self, pid: int) -> set[int]:
        """The pids of the live processes below `pid` at the last scan."""
        ...

    def watch(self, path: str, *, v2: bool) -> bool:
        """Read the CPU counter of the cgroup at `path` at every scan from now on (its processes in a
        Frame or not); False when there is no such hierarchy."""
        ...

    def unwatch(self, path: str) -> None:
        """Stop what `watch` started."""
        ...

    def own_memory(self) -> tuple[int, int]:
        """The agent's own resident and virtual size, in bytes."""
        ...

    @property
    def tracked(self) -> int:
        """Processes tracked at the last scan."""
        ...

    def close(self) -> None: ...


class HostFactsReader(Protocol):
    """The host's load, memory, frequencies and disks, read with each Frame when an output writes them
    (`sources.host.HostReader`)."""

    def read(self) -> HostFacts | None: ...

    def close(self) -> None: ...
