"""Every metric wattprobe exports, declared once: its names, type, unit, help and labels.

Three namings:
- `native`: `wattprobe_*` in base units (watts, joules, seconds, bytes, ratios); counters end in `_total`.
  Host facts that node_exporter already exports (load, memory, disks...) are not repeated.
- `scaphandre`: Scaphandre 1.0's names, units and labels (µW, µJ, percent, `socket_id`, `domain_id`,
  `exe` = the command name, its container and Kubernetes labels), so its dashboards and queries work
  unchanged. A family Scaphandre lacks (unattributed power, per-executable, cgroup, container, pod and
  namespace power) keeps its native name there too.
- `kepler`: Kepler's (0.10 and later) families and labels, alone: node, process, container, pod and VM
  power and energy by RAPL `zone`, with its constant `node_name` label, so its dashboards work unchanged.
  Its figures are wattprobe's (see `workloads`).

Workloads' energy counters (containers, pods, namespaces, VMs, and processes in Kepler's naming) are
their power added up over the Frames: a sink keeps a `workloads.Ledger`, adds each Frame to it once,
and passes it to `samples()`; without one, those counters are left out.

`samples()` turns a Frame into every sample once; the Prometheus, Riemann and Warp 10 sinks render
those samples, and the JSON sink takes its units from here. Labels follow one policy (`Labels`):
the exe key, the command line cleaned and cut to a length, `vmname`, container labels.

Left out of Scaphandre's set, with why: `scaph_{socket,domain}_rapl_mmio_energy_microjoules` (MMIO
counters repeat the MSR ones, which wattprobe reads once), and the internal buffer statistics
`scaph_self_topo_{stats,records}_nb`, `scaph_self_{socket,domain}_{stats,records}_nb` and
`scaph_self_domain_records_nb` (wattprobe keeps no record buffers).
"""

from __future__ import annotations

import functools
import platform
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple, cast

from wattprobe import __version__
from wattprobe.core.model import Consumer, Container, Frame, ProcessInfo, Workload
from wattprobe.sinks.kit.workloads import (
    HOST,
    Account,
    Ledger,
    Named,
    Pod,
    Vm,
    Zone,
    flows,
    pod_of,
    process_key,
    zones,
)

NAMINGS = ("native", "scaphandre", "kepler")
MICRO = 1e6  # Scaphandre's µW and µJ


@dataclass(frozen=True, slots=True, eq=False)  # each family is one object: compared and hashed by identity
class Family:
    native: str | None  # None: only in Scaphandre's naming
    scaph: str | None  # None: Scaphandre has no such family (its native name is used there too)
    kind: str  # gauge, counter or info
    unit: str  # of its values: watts, joules, bytes, seconds, ratio, megahertz, or "" (a count)
    help: str
    scale: float = 1.0  # in Scaphandre's naming: the value times this (µW, µJ, percent)
    integer: bool = False  # in Scaphandre's naming: an integer, as Scaphandre sends it (µJ, counts)
    scaph_kind: str | None = None  # where Scaphandre types it otherwise (its totals are gauges)
    in_scaph: bool = True  # without a Scaphandre name: written in its naming too, under the native one
    kepler: str | None = None  # its name in Kepler's naming (which writes Kepler's families alone)

    def name(self, naming: str) -> str | None:
        if naming == "kepler":
            return self.kepler
        if naming != "scaphandre":
            return self.native
        return self.scaph or (self.native if self.in_scaph else None)

    def kind_in(self, naming: str) -> str:
        return self.scaph_kind or self.kind if naming == "scaphandre" and self.scaph else self.kind

    def sample_name(self, naming: str) -> str:
        """The name its samples carry: native counters end in _total, info families in _info."""
        name = self.name(naming) or ""
        kind = self.kind_in(naming)
        if kind == "info":
            return name + "_info"
        if kind == "counter" and not (naming == "scaphandre" and self.scaph):
            return name + "_total"
        return name

    def value_in(self, naming: str, value: float) -> float | int:
        """A value (in the family's unit) as the naming writes it: in Scaphandre's, scaled, and an
        integer where Scaphandre sends one."""
        if naming != "scaphandre":
            return float(value)
        scaled = value * self.scale if self.scaph else value
        return round(scaled) if self.integer else float(scaled)


def _f(native: str | None, scaph: str | None, kind: str, unit: str, help: str, **more: object) -> Family:
    return Family(native, scaph, kind, unit, help, **more)  # type: ignore[arg-type]


def _k(name: str, kind: str, unit: str, help: str) -> Family:
    """A family of Kepler's naming alone."""
    return Family(None, None, kind, unit, help, in_scaph=False, kepler=name)


# -- the families, in the order they are written -------------------------------------------------------
HOST_POWER = _f("wattprobe_host_power_watts", "scaph_host_power_microwatts", "gauge", "watts",
    "Power of the whole host over the window", scale=MICRO)  # fmt: skip
HOST_ENERGY = _f("wattprobe_host_energy_joules", "scaph_host_energy_microjoules", "counter", "joules",
    "Energy of the whole host since the agent started", scale=MICRO, integer=True)  # fmt: skip
UNATTRIBUTED = _f("wattprobe_host_unattributed_power_watts", None, "gauge", "watts",
    "Host power no process explains (idle CPUs, the kernel); processes + this = host")  # fmt: skip
HOST_CPU = _f("wattprobe_host_cpu_usage_ratio", None, "gauge", "ratio", "Busy fraction of all CPUs (0..1)")
WINDOW = _f("wattprobe_window_seconds", None, "gauge", "seconds",
    "Length of the window the power figures average over")  # fmt: skip
SENSOR = _f("wattprobe_sensor", None, "info", "",
    "Where power comes from; estimated=true when it is modelled, not measured (model: which)",
    integer=True)  # fmt: skip
SOCKET_POWER = _f("wattprobe_socket_power_watts", "scaph_socket_power_microwatts", "gauge", "watts",
    "Power of a CPU package over the window", scale=MICRO)  # fmt: skip
SOCKET_ENERGY = _f("wattprobe_socket_energy_joules", "scaph_socket_energy_microjoules", "counter", "joules",
    "Energy of a CPU package since the agent started", scale=MICRO, integer=True)  # fmt: skip
DOMAIN_POWER = _f("wattprobe_domain_power_watts", "scaph_domain_power_microwatts", "gauge", "watts",
    "Power of a RAPL domain of a socket (core, uncore, dram) over the window", scale=MICRO)  # fmt: skip
DOMAIN_ENERGY = _f("wattprobe_domain_energy_joules", "scaph_domain_energy_microjoules", "counter", "joules",
    "Energy of a RAPL domain since the agent started", scale=MICRO, integer=True)  # fmt: skip
LOAD_1 = _f(None, "scaph_host_load_avg_one", "gauge", "", "Load average on 1 minute.")
LOAD_5 = _f(None, "scaph_host_load_avg_five", "gauge", "", "Load average on 5 minutes.")
LOAD_15 = _f(None, "scaph_host_load_avg_fifteen", "gauge", "", "Load average on 15 minutes.")
CPU_FREQUENCY = _f(None, "scaph_host_cpu_frequency", "gauge", "megahertz",
    "Global frequency of all the cpus. In MegaHertz")  # fmt: skip
MEMORY_TOTAL = _f(None, "scaph_host_memory_total_bytes", "gauge", "bytes",
    "Random Access Memory installed on the host, in bytes.")  # fmt: skip
MEMORY_AVAILABLE = _f(None, "scaph_host_memory_available_bytes", "gauge", "bytes",
    "Random Access Memory available to be re-used on the host, in bytes.")  # fmt: skip
MEMORY_FREE = _f(None, "scaph_host_memory_free_bytes", "gauge", "bytes",
    "Random Access Memory free to be used (not reused) on the host, in bytes.")  # fmt: skip
SWAP_FREE = _f(None, "scaph_host_swap_free_bytes", "gauge", "bytes",
    "Swap space free to be used on the host, in bytes.")  # fmt: skip
SWAP_TOTAL = _f(
    None, "scaph_host_swap_total_bytes", "gauge", "bytes", "Total swap space on the host, in bytes."
)
DISK_TOTAL = _f(None, "scaph_host_disk_total_bytes", "gauge", "bytes", "Total disk size, in bytes.")
DISK_AVAILABLE = _f(None, "scaph_host_disk_available_bytes", "gauge", "bytes",
    "Available disk space, in bytes.")  # fmt: skip
FORKS = _f(None, "scaph_forks_since_boot_total", "counter", "",
    "Number of forks that have occured since boot (number of processes to have existed so far).",
    integer=True)  # fmt: skip
RUNNING = _f(None, "scaph_processes_running_current", "gauge", "", "Number of processes currently running.",
    integer=True)  # fmt: skip
BLOCKED = _f(None, "scaph_processes_blocked_current", "gauge", "",
    "Number of processes currently blocked waiting for I/O.", integer=True)  # fmt: skip
CONTEXT_SWITCHES = _f(None, "scaph_context_switches_total", "counter", "",
    "Number of context switches since boot.", integer=True)  # fmt: skip
PROCESS_POWER = _f("wattprobe_process_power_watts", "scaph_process_power_consumption_microwatts", "gauge",
    "watts", "A process's share of host power: host power x its share of all CPU time", scale=MICRO)  # fmt: skip
PROCESS_EXITED_POWER = _f("wattprobe_process_exited_power_watts", None, "gauge", "watts",
    "The part of a process's power that came from descendants that exited in the window (reaped into it)")  # fmt: skip
PROCESS_CPU = _f("wattprobe_process_cpu_usage_ratio", "scaph_process_cpu_usage_percentage", "gauge", "ratio",
    "CPU time consumed by the process, as a share of the capacity of all the CPU cores", scale=100)  # fmt: skip
PROCESS_MEMORY = _f("wattprobe_process_memory_bytes", "scaph_process_memory_bytes", "gauge", "bytes",
    "Physical RAM usage by the process, in bytes", integer=True)  # fmt: skip
PROCESS_VIRTUAL = _f(None, "scaph_process_memory_virtual_bytes", "gauge", "bytes",
    "Virtual RAM usage by the process, in bytes", integer=True)  # fmt: skip
PROCESS_DISK_READ = _f(None, "scaph_process_disk_read_bytes", "gauge", "bytes",
    "Data read on disk by the process since the last measurement, in bytes", integer=True)  # fmt: skip
PROCESS_DISK_WRITE = _f(None, "scaph_process_disk_write_bytes", "gauge", "bytes",
    "Data written on disk by the process since the last measurement, in bytes", integer=True)  # fmt: skip
PROCESS_DISK_TOTAL_READ = _f("wattprobe_process_disk_read_bytes", "scaph_process_disk_total_read_bytes",
    "counter", "bytes", "Total data read on disk by the process, in bytes", integer=True,
    scaph_kind="gauge")  # fmt: skip
PROCESS_DISK_TOTAL_WRITE = _f("wattprobe_process_disk_written_bytes", "scaph_process_disk_total_write_bytes",
    "counter", "bytes", "Total data written on disk by the process, in bytes", integer=True,
    scaph_kind="gauge")  # fmt: skip
EXE_POWER = _f(
    "wattprobe_exe_power_watts", None, "gauge", "watts", "Power of all processes of one executable"
)
CGROUP_POWER = _f(
    "wattprobe_cgroup_power_watts", None, "gauge", "watts", "Power of all processes of one cgroup"
)
CONTAINER_POWER = _f("wattprobe_container_power_watts", None, "gauge", "watts",
    "Power of all processes of one container")  # fmt: skip
CONTAINER_ENERGY = _f("wattprobe_container_energy_joules", None, "counter", "joules",
    "Energy of all processes of one container since the agent first saw it")  # fmt: skip
POD_POWER = _f("wattprobe_pod_power_watts", None, "gauge", "watts",
    "Power of all containers of one Kubernetes pod")  # fmt: skip
POD_ENERGY = _f("wattprobe_pod_energy_joules", None, "counter", "joules",
    "Energy of all containers of one Kubernetes pod since the agent first saw it")  # fmt: skip
NAMESPACE_POWER = _f("wattprobe_namespace_power_watts", None, "gauge", "watts",
    "Power of all pods of one Kubernetes namespace on this node")  # fmt: skip
NAMESPACE_ENERGY = _f("wattprobe_namespace_energy_joules", None, "counter", "joules",
    "Energy of all pods of one Kubernetes namespace on this node since the agent first saw them")  # fmt: skip
BUILD = _f("wattprobe_build", None, "info", "", "The agent's version", integer=True, in_scaph=False)
VERSION = _f(None, "scaph_self_version", "gauge", "", "Version number of wattprobe represented as a float.")
SELF_CPU_SECONDS = _f("wattprobe_self_cpu_seconds", None, "counter", "seconds", "CPU time the agent used",
    in_scaph=False)  # fmt: skip
SELF_CPU_PERCENT = _f(None, "scaph_self_cpu_usage_percent", "gauge", "",
    "CPU time consumed by the agent, as a percentage of all CPUs, over the window")  # fmt: skip
SELF_MEMORY = _f("wattprobe_self_memory_bytes", "scaph_self_memory_bytes", "gauge", "bytes",
    "Resident set size of the agent, in bytes.", integer=True)  # fmt: skip
SELF_VIRTUAL = _f(None, "scaph_self_memory_virtual_bytes", "gauge", "bytes",
    "Virtual memory size of the agent, in bytes.", integer=True)  # fmt: skip
SELF_PEAK_RSS = _f("wattprobe_self_peak_rss_bytes", None, "gauge", "bytes", "The agent's peak resident memory",
    in_scaph=False)  # fmt: skip
TICK_SECONDS = _f("wattprobe_self_tick_seconds", None, "gauge", "seconds",
    "Duration of the agent's last measurement", in_scaph=False)  # fmt: skip
TRACKED = _f("wattprobe_self_processes_tracked", "scaph_self_topo_procs_nb", "gauge", "",
    "Number of processes monitored for the host.", integer=True)  # fmt: skip

# Kepler's naming (its help texts); `zone`, `path`, `state` and the constant `node_name` as Kepler has them.
K_NODE_JOULES = _k(
    "kepler_node_cpu_joules", "counter", "joules", "Energy consumption of cpu at node level in joules"
)
K_NODE_WATTS = _k(
    "kepler_node_cpu_watts", "gauge", "watts", "Power consumption of cpu at node level in watts"
)
K_NODE_ACTIVE_JOULES = _k("kepler_node_cpu_active_joules", "counter", "joules",
    "Energy consumption of cpu in active state at node level in joules")  # fmt: skip
K_NODE_ACTIVE_WATTS = _k("kepler_node_cpu_active_watts", "gauge", "watts",
    "Power consumption of cpu in active state at node level in watts")  # fmt: skip
K_NODE_IDLE_JOULES = _k("kepler_node_cpu_idle_joules", "counter", "joules",
    "Energy consumption of cpu in idle state at node level in joules")  # fmt: skip
K_NODE_IDLE_WATTS = _k("kepler_node_cpu_idle_watts", "gauge", "watts",
    "Power consumption of cpu in idle state at node level in watts")  # fmt: skip
K_NODE_USAGE = _k("kepler_node_cpu_usage_ratio", "gauge", "ratio",
    "CPU usage ratio of a node (value between 0.0 and 1.0)")  # fmt: skip
K_NODE_INFO = _k("kepler_node_cpu_info", "gauge", "", "CPU information from procfs")
K_PROCESS_JOULES = _k("kepler_process_cpu_joules", "counter", "joules",
    "Energy consumption of cpu at process level in joules")  # fmt: skip
K_PROCESS_WATTS = _k("kepler_process_cpu_watts", "gauge", "watts",
    "Power consumption of cpu at process level in watts")  # fmt: skip
K_PROCESS_SECONDS = _k("kepler_process_cpu_seconds", "counter", "seconds",
    "Total user and system time of cpu at process level in seconds")  # fmt: skip
K_CONTAINER_JOULES = _k("kepler_container_cpu_joules", "counter", "joules",
    "Energy consumption of cpu at container level in joules")  # fmt: skip
K_CONTAINER_WATTS = _k("kepler_container_cpu_watts", "gauge", "watts",
    "Power consumption of cpu at container level in watts")  # fmt: skip
K_CONTAINER_SECONDS = _k("kepler_container_cpu_seconds", "counter", "seconds",
    "Total user and system time of cpu at container level in seconds")  # fmt: skip
K_VM_JOULES = _k(
    "kepler_vm_cpu_joules", "counter", "joules", "Energy consumption of cpu at vm level in joules"
)
K_VM_WATTS = _k("kepler_vm_cpu_watts", "gauge", "watts", "Power consumption of cpu at vm level in watts")
K_POD_JOULES = _k(
    "kepler_pod_cpu_joules", "counter", "joules", "Energy consumption of cpu at pod level in joules"
)
K_POD_WATTS = _k("kepler_pod_cpu_watts", "gauge", "watts", "Power consumption of cpu at pod level in watts")
K_BUILD = _k("kepler_build_info", "gauge", "",
    "A metric with a constant '1' value labeled with version information")  # fmt: skip

FAMILIES = tuple(v for v in list(globals().values()) if isinstance(v, Family))


# The families made of Frame.host: only the namings that write one need the host's facts read.
_HOST_FACTS = (LOAD_1, LOAD_5, LOAD_15, CPU_FREQUENCY, MEMORY_TOTAL, MEMORY_AVAILABLE, MEMORY_FREE, SWAP_FREE,
               SWAP_TOTAL, DISK_TOTAL, DISK_AVAILABLE, K_NODE_INFO)  # fmt: skip


def families(naming: str) -> tuple[Family, ...]:
    """The families a naming writes, in order (each written at every scrape, empty or not)."""
    return tuple(f for f in FAMILIES if f.name(naming))


_NO_LABELS: dict[str, str] = {}  # a sample's labels where it has none (shared, not to be changed)


@functools.cache
def _written(naming: str) -> frozenset[Family]:
    return frozenset(families(naming))


def uses_host_facts(naming: str) -> bool:
    """Whether the naming has families made of the host's facts (Frame.host: load, memory, disks, CPUs)."""
    return any(f.name(naming) for f in _HOST_FACTS)


# -- labels --------------------------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def cmdline_label(cmdline: str, limit: int) -> str:
    """The first `limit` characters, with "..." when some were cut; control characters (newlines of a
    `python -c` script) become spaces, so that regex matchers such as `cmdline=~".*nginx.*"` match."""
    text = cmdline if len(cmdline) <= limit else cmdline[:limit] + "..."
    return _CONTROL.sub(" ", text)


_NOT_IN_NAME = re.compile(r"[^a-zA-Z0-9_]")


def label_name(text: str) -> str:
    """`text` as a Prometheus label name's tail: each character outside [a-zA-Z0-9_] becomes `_` (Scaphandre
    replaces `-`, `.`, `:` and spaces the same way)."""
    return _NOT_IN_NAME.sub("_", text)


def container_labels(
    container: Container | None,
    workload: Workload | None = None,
    *,
    scaph: bool = False,
    node: str | None = None,
) -> dict[str, str]:
    """A container's labels: its id, runtime and scheduler, and the names its owners give it where known;
    natively `container_name`, `pod_name`, `pod_namespace`; in Scaphandre's naming its labels exactly
    (`container_names`, `container_label_*`, `kubernetes_pod_name`, `kubernetes_pod_namespace`, and
    `kubernetes_node_name` = `node` on a pod's container)."""
    if container is None:
        return {}
    labels = {
        "container_id": container.id,
        "container_runtime": container.runtime or "",
        "container_scheduler": container.scheduler,
    }
    if container.pod_uid:
        labels["kubernetes_pod_uid"] = container.pod_uid
    if workload is None:
        return labels
    if not scaph:
        for key, value in (
            ("container_name", workload.name),
            ("pod_name", workload.pod_name),
            ("pod_namespace", workload.pod_namespace),
        ):
            if value:
                labels[key] = value
        return labels
    if workload.name:
        labels["container_names"] = workload.name
    for key, value in workload.labels:  # sorted by key: of two that read alike, the first is kept
        labels.setdefault("container_label_" + label_name(key), value)
    if workload.pod_name:
        labels["kubernetes_pod_name"] = workload.pod_name
        if workload.pod_namespace:
            labels["kubernetes_pod_namespace"] = workload.pod_namespace
        if node:
            labels["kubernetes_node_name"] = node
    return labels


def pod_labels(pod: Pod) -> dict[str, str]:
    return {"pod_name": pod.name or "", "pod_namespace": pod.namespace or "", "pod_uid": pod.uid}


@dataclass(frozen=True, slots=True)
class Labels:
    """The label policy, one for every sink: which labels a process, socket or domain gets."""

    naming: str = "native"
    cmdline_max: int = 256
    qemu: bool = False  # vmname on a QEMU guest's process
    containers: bool = False  # container labels on a process
    hostname: str | None = None  # a `hostname` label on every sample (Scaphandre's pushes carry one)
    node: str | None = None  # the node's name where a Frame has none (the host's name; None: asked here)

    @property
    def scaph(self) -> bool:
        return self.naming == "scaphandre"

    def node_name(self, frame: Frame) -> str:
        """The Kubernetes node (or host) the agent runs on: the Frame's, else the one given, else the
        host's name."""
        return frame.node_name or self.node or socket.gethostname()

    def process(
        self, info: ProcessInfo, workload: Workload | None = None, node: str | None = None
    ) -> dict[str, str]:
        """A process's labels; its container's (`workload`: that container's names) with --containers."""
        if self.scaph:  # Scaphandre's exe is the command name
            labels = {"pid": str(info.pid), "exe": info.comm}
        else:  # the exe key of the per-executable family, so the two join
            labels = {"pid": str(info.pid), "exe": info.exe_key, "comm": info.comm}
        labels["cmdline"] = cmdline_label(info.cmdline, self.cmdline_max)
        if self.qemu and info.vm:
            labels["vmname"] = info.vm
        if self.containers:
            labels |= container_labels(info.container, workload, scaph=self.scaph, node=node)
        return labels

    def extra(self, labels: dict[str, str]) -> dict[str, str]:
        """`labels` with those every sample carries."""
        return labels if self.hostname is None else {**labels, "hostname": self.hostname}

    def socket(self, socket: int) -> dict[str, str]:
        return _socket_labels(self.scaph, socket)

    def domain(self, socket: int, name: str, domain_id: int) -> dict[str, str]:
        return _domain_labels(self.scaph, socket, name, domain_id)


# A socket's, a domain's, an executable's and a cgroup's labels: the same dict from one Frame to the
# next (shared, not to be changed).
@functools.lru_cache(maxsize=4096)
def _one_label(name: str, value: str) -> dict[str, str]:
    return {name: value}


@functools.cache
def _socket_labels(scaph: bool, socket: int) -> dict[str, str]:
    return {"socket_id": str(socket)} if scaph else {"socket": str(socket)}


@functools.cache
def _domain_labels(scaph: bool, socket: int, name: str, domain_id: int) -> dict[str, str]:
    if scaph:
        return {"domain_name": name, "domain_id": str(domain_id), "socket_id": str(socket)}
    return {"socket": str(socket), "domain": name}


# -- samples -------------------------------------------------------------------------------------------
class Sample(NamedTuple):
    family: Family
    labels: dict[str, str]  # shared by the samples of one process: not to be changed
    value: float  # in the family's unit


def ledger_for(naming: str) -> Ledger:
    """The ledger a sink keeps for the energy counters of workloads in `naming`."""
    kepler = naming == "kepler"
    return Ledger(zones=kepler, processes=kepler)


def samples(
    frame: Frame,
    consumers: Iterable[Consumer],
    labels: Labels,
    ledger: Ledger | None = None,
    made: ProcessLabels | None = None,
) -> list[Sample]:
    """Every sample of a Frame in a naming, the per-process ones for `consumers` only. `ledger` (with
    this Frame added) gives the workloads' energy counters; without it they are left out. `made`
    (under the same `labels`) keeps the processes' labels from one call to the next."""
    naming = labels.naming
    if naming == "kepler":
        return [*_kepler_samples(frame, consumers, labels, ledger), *agent_samples(frame, labels)]
    if made is not None:
        made.turn()
    out: list[Sample] = []
    written = _written(naming)
    extra = labels.extra

    def sample(family: Family, value: float, named: dict[str, str] = _NO_LABELS) -> None:
        if family in written:
            out.append(tuple.__new__(Sample, (family, extra(named), value)))

    host = {"value_source": _value_source(frame)} if labels.scaph else _NO_LABELS
    sample(HOST_POWER, frame.host_watts, host)
    sample(HOST_ENERGY, frame.host_energy_j, host)
    sample(UNATTRIBUTED, frame.unattributed_watts)
    sample(HOST_CPU, frame.cpu_load)
    sample(WINDOW, frame.window_s)
    estimated = "true" if frame.estimated else "false"
    model = {"model": frame.model} if frame.model else {}
    sample(SENSOR, 1, {"sensor": frame.sensor, "source": frame.host_source, "estimated": estimated, **model})
    for s in frame.sockets:
        sample(SOCKET_POWER, s.watts, labels.socket(s.id))
        sample(SOCKET_ENERGY, s.energy_j, labels.socket(s.id))
        for d in s.domains:
            sample(DOMAIN_POWER, d.watts, labels.domain(s.id, d.name, d.id))
            sample(DOMAIN_ENERGY, d.energy_j, labels.domain(s.id, d.name, d.id))
    if frame.host is not None:
        facts = frame.host
        for family, value in zip((LOAD_1, LOAD_5, LOAD_15), facts.load_avg, strict=True):
            sample(family, value)
        if facts.cpu_mhz is not None:
            sample(CPU_FREQUENCY, facts.cpu_mhz)
        sample(MEMORY_TOTAL, facts.memory_total_bytes)
        sample(MEMORY_AVAILABLE, facts.memory_available_bytes)
        sample(MEMORY_FREE, facts.memory_free_bytes)
        sample(SWAP_FREE, facts.swap_free_bytes)
        sample(SWAP_TOTAL, facts.swap_total_bytes)
        for disk in facts.disks:
            about = {
                "disk_name": disk.name,
                "disk_mount_point": disk.mount_point,
                "disk_file_system": disk.file_system,
                "disk_type": disk.kind,
                "disk_is_removable": "true" if disk.removable else "false",
            }
            sample(DISK_TOTAL, disk.total_bytes, about)
            sample(DISK_AVAILABLE, disk.available_bytes, about)
    if frame.machine is not None:
        sample(FORKS, frame.machine.forks)
        sample(RUNNING, frame.machine.running)
        sample(BLOCKED, frame.machine.blocked)
        sample(CONTEXT_SWITCHES, frame.machine.context_switches)
    node = labels.node_name(frame) if labels.containers else None
    out += _process_samples(consumers, labels, frame.workloads, node, made)
    for g in frame.exes:
        sample(EXE_POWER, g.watts, _one_label("exe", g.key))
    for g in frame.cgroups:
        sample(CGROUP_POWER, g.watts, _one_label("cgroup", g.key))
    workloads = frame.workloads
    for g in frame.containers:
        sample(CONTAINER_POWER, g.watts, container_labels(g.container, workloads.get(g.key)))
    now = flows(frame)
    for flow in now["pod"].values():
        sample(POD_POWER, flow.watts, pod_labels(flow.about))  # type: ignore[arg-type]
    for namespace, flow in now["namespace"].items():
        sample(NAMESPACE_POWER, flow.watts, {"namespace": str(namespace)})
    if ledger is not None:
        for _, account in ledger.known("container"):
            named = cast(Named, account.about)
            about = container_labels(named.container, named.workload)
            sample(CONTAINER_ENERGY, account.joules[HOST], about)
        for _, account in ledger.known("pod"):
            sample(POD_ENERGY, account.joules[HOST], pod_labels(account.about))  # type: ignore[arg-type]
        for namespace, account in ledger.known("namespace"):
            sample(NAMESPACE_ENERGY, account.joules[HOST], {"namespace": str(namespace)})
    out += agent_samples(frame, labels)
    return out


# A process's facts, its container's names and the node, and the labels made of them.
_Made = tuple[ProcessInfo, Workload | None, str | None, dict[str, str]]


class ProcessLabels:
    """Each process's labels (with those every sample carries) under a label policy, made once while
    its facts, its container's names and the node stay the same: a sink that writes Frames one after
    another lists mostly the processes it listed last time. What the last call of `samples` used is
    kept; the dicts are shared, not to be changed."""

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self._now: dict[int, _Made] = {}  # by id(info): the entry holds `info`, so the id names no other
        self._before: dict[int, _Made] = {}

    def turn(self) -> None:
        """A new Frame: what the last one used is kept, the rest forgotten."""
        self._before, self._now = self._now, {}

    def __call__(self, info: ProcessInfo, workload: Workload | None, node: str | None) -> dict[str, str]:
        key = id(info)
        made = self._now.get(key) or self._before.get(key)
        if made is None or made[0] is not info or made[1] != workload or made[2] != node:
            made = (info, workload, node, self.labels.extra(self.labels.process(info, workload, node)))
        self._now[key] = made
        return made[3]


def _process_samples(
    consumers: Iterable[Consumer],
    labels: Labels,
    workloads: Mapping[str, Workload],
    node: str | None,
    made: ProcessLabels | None = None,
) -> Iterator[Sample]:
    """The per-process samples: the hot part of a scrape with thousands of processes listed, so the
    families of the naming are chosen once and a process's samples share one label dict (`made`
    keeps them from one Frame to the next)."""
    naming = labels.naming
    power, exited, cpu, memory, virtual, read, write, total_read, total_write = (
        family if family.name(naming) else None
        for family in (
            PROCESS_POWER,
            PROCESS_EXITED_POWER,
            PROCESS_CPU,
            PROCESS_MEMORY,
            PROCESS_VIRTUAL,
            PROCESS_DISK_READ,
            PROCESS_DISK_WRITE,
            PROCESS_DISK_TOTAL_READ,
            PROCESS_DISK_TOTAL_WRITE,
        )
    )
    new = tuple.__new__  # a Sample as its own constructor makes it, without that Python function's call
    for c in consumers:
        container = c.info.container
        workload = workloads.get(container.id) if container is not None and workloads else None
        named = (
            made(c.info, workload, node)
            if made is not None
            else labels.extra(labels.process(c.info, workload, node))
        )
        if power:
            yield new(Sample, (power, named, c.watts))
        if exited and c.exited_watts > 0:
            yield new(Sample, (exited, named, c.exited_watts))
        if cpu:
            yield new(Sample, (cpu, named, c.cpu_share))
        if memory:
            yield new(Sample, (memory, named, c.rss_bytes))
        if virtual:
            yield new(Sample, (virtual, named, c.vsize_bytes))
        io = c.disk_io
        if io is not None:
            if read:
                yield new(Sample, (read, named, io.read_delta))
            if write:
                yield new(Sample, (write, named, io.write_delta))
            if total_read:
                yield new(Sample, (total_read, named, io.read_bytes))
            if total_write:
                yield new(Sample, (total_write, named, io.write_bytes))


def _kepler_samples(
    frame: Frame, consumers: Iterable[Consumer], labels: Labels, ledger: Ledger | None
) -> Iterator[Sample]:
    """Kepler's families: each figure by zone, a workload's = the zone's power x its CPU share."""
    extra = labels.extra
    node = {"node_name": labels.node_name(frame)}
    found = zones(frame)
    now = flows(frame)
    known = ledger.accounts if ledger is not None else None
    for zone in found:
        at = extra({"zone": zone.name, "path": zone.path, **node})
        yield Sample(K_NODE_JOULES, at, zone.joules)
        yield Sample(K_NODE_WATTS, at, zone.watts)
        for joules, watts, kind in (
            (K_NODE_ACTIVE_JOULES, K_NODE_ACTIVE_WATTS, "active"),
            (K_NODE_IDLE_JOULES, K_NODE_IDLE_WATTS, "idle"),
        ):
            account = known[kind].get(HOST) if known is not None else None
            if account is not None:
                yield Sample(joules, at, account.joules.get(zone.name, 0.0))
            yield Sample(watts, at, zone.watts * now[kind][HOST].share)
    yield Sample(K_NODE_USAGE, extra(dict(node)), frame.cpu_load)
    for cpu in frame.host.cpus if frame.host is not None else ():
        about = {
            "processor": str(cpu.processor),
            "vendor_id": cpu.vendor_id,
            "model_name": cpu.model_name,
            "physical_id": str(cpu.physical_id),
            "core_id": str(cpu.core_id),
        }
        yield Sample(K_NODE_INFO, extra(about), 1)
    processes = known["process"] if known is not None else {}
    for c in consumers:
        info = c.info
        about = _kepler_process(info) | node
        account = processes.get(process_key(info))
        if account is not None:
            yield Sample(K_PROCESS_SECONDS, extra(about), account.cpu_s)
        about = {**about, "state": "running"}  # on its power and energy, not its CPU time (as Kepler)
        yield from _by_zone(K_PROCESS_WATTS, K_PROCESS_JOULES, about, c.cpu_share, account, found, extra)
    for kind, watts, joules, seconds, describe in (
        ("container", K_CONTAINER_WATTS, K_CONTAINER_JOULES, K_CONTAINER_SECONDS, _kepler_container),
        ("vm", K_VM_WATTS, K_VM_JOULES, None, _kepler_vm),
        ("pod", K_POD_WATTS, K_POD_JOULES, None, _kepler_pod),
    ):
        present = now[kind]
        accounts = known[kind] if known is not None else {}
        for key in [*present, *(k for k in accounts if k not in present)]:
            flow, account = present.get(key), accounts.get(key)
            about = describe((flow or account).about) | node  # type: ignore[union-attr]
            about["state"] = "running"
            if seconds is not None and account is not None:
                yield Sample(seconds, extra(about), account.cpu_s)
            share = flow.share if flow is not None else None
            yield from _by_zone(watts, joules, about, share, account, found, extra)


def _by_zone(
    watts: Family,
    joules: Family,
    about: dict[str, str],
    share: float | None,
    account: Account | None,
    found: tuple[Zone, ...],
    extra: Callable[[dict[str, str]], dict[str, str]],
) -> Iterator[Sample]:
    """A workload's power (where it ran in the Frame: `share`) and energy (where counted) in each zone."""
    for zone in found:
        at = extra({**about, "zone": zone.name})
        if share is not None:
            yield Sample(watts, at, zone.watts * share)
        if account is not None:
            yield Sample(joules, at, account.joules.get(zone.name, 0.0))


_KEPLER_RUNTIMES = {"cri-o": "crio"}


def _kepler_process(info: ProcessInfo) -> dict[str, str]:
    container = info.container
    kind = "vm" if info.vm_folder else "container" if container is not None else "regular"
    return {
        "pid": str(info.pid),
        "comm": info.comm,
        "exe": info.exe,
        "type": kind,
        "container_id": container.id if container is not None else "",
        "vm_id": info.vm_folder or "",
    }


def _kepler_container(about: object) -> dict[str, str]:
    named = cast(Named, about)
    container, workload = named.container, named.workload
    runtime = container.runtime if container is not None else None
    return {
        "container_id": container.id if container is not None else "",
        "container_name": (workload.name if workload is not None else None) or "",
        "runtime": _KEPLER_RUNTIMES.get(runtime or "unknown", runtime or "unknown"),
        "pod_id": pod_of(container, workload) or "",
    }


def _kepler_pod(about: object) -> dict[str, str]:
    pod: Pod = about  # type: ignore[assignment]
    return {"pod_id": pod.uid, "pod_name": pod.name or "", "pod_namespace": pod.namespace or ""}


def _kepler_vm(about: object) -> dict[str, str]:
    vm: Vm = about  # type: ignore[assignment]
    return {"vm_id": vm.id, "vm_name": vm.name, "hypervisor": "kvm"}


def _value_source(frame: Frame) -> str:
    """Scaphandre's name for where host power comes from."""
    if frame.sensor != "powercap_rapl":
        return frame.sensor
    return "powercap_rapl_psys" if frame.host_source == "psys" else "powercap_rapl_pkg"


def agent_samples(frame: Frame | None, labels: Labels) -> Iterator[Sample]:
    """The agent's own figures (the version even without a Frame)."""
    naming = labels.naming
    for family, value, named in _build():
        if family.name(naming):
            yield Sample(family, labels.extra(named), value)
    if frame is None:
        return
    agent = frame.agent
    for family, value in (
        (SELF_CPU_SECONDS, agent.cpu_seconds),
        (SELF_CPU_PERCENT, agent.cpu_percent),
        (SELF_MEMORY, agent.rss_bytes),
        (SELF_VIRTUAL, agent.vsize_bytes),
        (SELF_PEAK_RSS, agent.peak_rss_bytes),
        (TICK_SECONDS, agent.tick_seconds),
        (TRACKED, agent.processes_tracked),
    ):
        if family.name(naming):
            yield Sample(family, labels.extra(_NO_LABELS), value)


@functools.cache
def _build() -> tuple[tuple[Family, float, dict[str, str]], ...]:
    """The agent's build families: their values and labels never change while it runs."""
    return (
        (BUILD, 1, {"version": __version__}),
        (VERSION, version_number(__version__), {}),
        (K_BUILD, 1, {"arch": platform.machine(), "version": __version__}),
    )


def version_number(version: str) -> float:
    """Scaphandre's float version: MAJOR.MINORPATCH (1.0.2 -> 1.02)."""
    major, minor, patch = ([*re.findall(r"\d+", version), "0", "0"])[:3]
    return float(f"{major}.{minor}{patch}")
