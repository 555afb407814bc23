"""Frames as Prometheus metric families, for the pull (`prometheus`) and push (`prometheus-push`) exporters.

Two namings:
- `native`: `wattprobe_*` in base units (watts, joules, seconds, bytes, ratios), counters end in `_total`.
- `scaphandre`: Scaphandre's names, units and labels (µW, µJ, `pid`/`exe`/`cmdline`, `scaph_self_*`), so
  existing dashboards and queries keep working; what Scaphandre lacks (unattributed power, the part
  of a process's power from its exited descendants, per-exe, cgroup and container aggregates, the
  sensor) keeps its native name next to them.

Every family is emitted at every scrape, empty when nothing feeds it, so the set of names is stable.
Per-process series are bounded (top N or a regex, or none) and their cmdline label is truncated;
aggregates always cover every process.
"""

from __future__ import annotations

import os
import re
import resource
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from wattprobe import __version__
from wattprobe.core.model import Consumer, Container, Frame
from wattprobe.sinks.promoptions import SeriesSettings
from wattprobe.sinks.selection import select_consumers

# -- labels --------------------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def cmdline_label(cmdline: str, limit: int) -> str:
    """The first `limit` characters, with "..." when some were cut; control characters (newlines of a
    `python -c` script) become spaces, so that regex matchers such as `cmdline=~".*nginx.*"` match."""
    text = cmdline if len(cmdline) <= limit else cmdline[:limit] + "..."
    return _CONTROL.sub(" ", text)


def _container_labels(container: Container | None) -> dict[str, str]:
    if container is None:
        return {}
    labels = {
        "container_id": container.id,
        "container_runtime": container.runtime or "",
        "container_scheduler": container.scheduler,
    }
    if container.pod_uid:
        labels["kubernetes_pod_uid"] = container.pod_uid
    return labels


def _process_labels(consumer: Consumer, opts: SeriesSettings) -> dict[str, str]:
    info = consumer.info
    if opts.naming == "scaphandre":  # Scaphandre's exe label is the command name
        labels = {"pid": str(info.pid), "exe": info.comm}
    else:  # the same exe key as the per-exe family, so the two join
        labels = {"pid": str(info.pid), "exe": info.exe_key, "comm": info.comm}
    labels["cmdline"] = cmdline_label(info.cmdline, opts.cmdline_max_length)
    if opts.qemu:
        name = info.vm
        if name:
            labels["vmname"] = name
    if opts.containers:
        labels |= _container_labels(info.container)
    return labels


def selected_consumers(frame: Frame, opts: SeriesSettings) -> list[Consumer]:
    """The processes that get their own series: top N or regex matches, plus VMs with --qemu."""
    chosen = list(select_consumers(frame, opts.max_top_consumers, opts.process_regex))
    if opts.qemu:
        pids = {c.info.pid for c in chosen}
        chosen += [c for c in frame.consumers if c.info.pid not in pids and c.info.vm]
    return chosen


# -- families ------------------------------------------------------------------------------------
class _Families:
    """Builds metric families in order; each sample's name follows its family's type."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def family(self, kind: str, name: str, doc: str, unit: str = "") -> Metric:
        metric = Metric(name, doc, kind, unit)
        self.metrics.append(metric)
        return metric


def _add(metric: Metric, value: float, **labels: str) -> None:
    suffix = {"counter": "_total", "info": "_info"}.get(metric.type, "")
    metric.add_sample(metric.name + suffix, labels, value)


@dataclass(frozen=True, slots=True)
class AgentStats:
    """The agent's own use of the machine, read from its own process (not from the Frame)."""

    cpu_seconds: float  # user + system CPU time since start
    cpu_percent: float  # of all CPUs, since the previous collection
    peak_rss_bytes: int
    tick_seconds: float
    processes_tracked: int


def render(frame: Frame | None, stats: AgentStats, opts: SeriesSettings) -> list[Metric]:
    """The families of one Frame in the chosen naming (None: no Frame yet, families stay empty)."""
    out = _Families()
    if opts.naming == "scaphandre":
        _scaphandre(out, frame, stats, opts)
    else:
        _native(out, frame, stats, opts)
    return out.metrics


def _native(out: _Families, frame: Frame | None, stats: AgentStats, opts: SeriesSettings) -> None:
    host_power = out.family("gauge", "wattprobe_host_power_watts", "Host power over the last window", "watts")
    host_energy = out.family(
        "counter", "wattprobe_host_energy_joules", "Host energy since the agent started", "joules"
    )
    _wattprobe_host_extras(out, frame)
    socket_power = out.family("gauge", "wattprobe_socket_power_watts", "CPU package power", "watts")
    socket_energy = out.family(
        "counter", "wattprobe_socket_energy_joules", "CPU package energy since the agent started", "joules"
    )
    domain_power = out.family(
        "gauge",
        "wattprobe_domain_power_watts",
        "Power of a RAPL domain of a socket (core, uncore, dram)",
        "watts",
    )
    domain_energy = out.family(
        "counter",
        "wattprobe_domain_energy_joules",
        "Energy of a RAPL domain since the agent started",
        "joules",
    )
    if frame is not None:
        _add(host_power, frame.host_watts)
        _add(host_energy, frame.host_energy_j)
        for s in frame.sockets:
            _add(socket_power, s.watts, socket=str(s.id))
            _add(socket_energy, s.energy_j, socket=str(s.id))
            for d in s.domains:
                _add(domain_power, d.watts, socket=str(s.id), domain=d.name)
                _add(domain_energy, d.energy_j, socket=str(s.id), domain=d.name)
    power = out.family(
        "gauge",
        "wattprobe_process_power_watts",
        "A process's share of host power: host power x its share of all CPU time",
        "watts",
    )
    cpu = out.family(
        "gauge", "wattprobe_process_cpu_usage_ratio", "A process's share of all CPUs' time (0..1)", "ratio"
    )
    memory = out.family("gauge", "wattprobe_process_memory_bytes", "A process's resident memory", "bytes")
    for c in selected_consumers(frame, opts) if frame is not None else ():
        labels = _process_labels(c, opts)
        _add(power, c.watts, **labels)
        _add(cpu, c.cpu_share, **labels)
        _add(memory, c.rss_bytes, **labels)
    _exited(out, frame, opts)
    _aggregates(out, frame)
    _native_self(out, stats)


def _exited(out: _Families, frame: Frame | None, opts: SeriesSettings) -> None:
    """The part of a listed process's power that came from its descendants that exited in the
    window (reaped into it): a series only for the processes that have such a part."""
    exited = out.family(
        "gauge",
        "wattprobe_process_exited_power_watts",
        "The part of a process's power used by its descendants that exited in the window (included in its power)",
        "watts",
    )
    for c in selected_consumers(frame, opts) if frame is not None else ():
        if c.exited_watts > 0:
            _add(exited, c.exited_watts, **_process_labels(c, opts))


def _wattprobe_host_extras(out: _Families, frame: Frame | None) -> None:
    """Host figures Scaphandre lacks; both namings carry them under these names."""
    unattributed = out.family(
        "gauge",
        "wattprobe_host_unattributed_power_watts",
        "Host power no process explains (idle CPUs, exited processes, kernel); processes + this = host",
        "watts",
    )
    load = out.family("gauge", "wattprobe_host_cpu_usage_ratio", "Busy fraction of all CPUs (0..1)", "ratio")
    window = out.family(
        "gauge", "wattprobe_window_seconds", "Length of the window the power figures average over", "seconds"
    )
    sensor = out.family(
        "info", "wattprobe_sensor", "Where power comes from; estimated=true when it is modelled, not measured"
    )
    if frame is not None:
        _add(unattributed, frame.unattributed_watts)
        _add(load, frame.cpu_load)
        _add(window, frame.window_s)
        _add(
            sensor,
            1,
            sensor=frame.sensor,
            source=frame.host_source,
            estimated="true" if frame.estimated else "false",
        )


def _aggregates(out: _Families, frame: Frame | None) -> None:
    exe = out.family(
        "gauge", "wattprobe_exe_power_watts", "Power of all processes of one executable", "watts"
    )
    cgroup = out.family(
        "gauge", "wattprobe_cgroup_power_watts", "Power of all processes of one cgroup", "watts"
    )
    container = out.family(
        "gauge", "wattprobe_container_power_watts", "Power of all processes of one container", "watts"
    )
    if frame is None:
        return
    for g in frame.exes:
        _add(exe, g.watts, exe=g.key)
    for g in frame.cgroups:
        _add(cgroup, g.watts, cgroup=g.key)
    for g in frame.containers:
        _add(container, g.watts, **_container_labels(g.container))


def _native_self(out: _Families, stats: AgentStats) -> None:
    _add(out.family("info", "wattprobe_build", "The agent's version"), 1, version=__version__)
    _add(
        out.family("counter", "wattprobe_self_cpu_seconds", "CPU time the agent used", "seconds"),
        stats.cpu_seconds,
    )
    _add(
        out.family("gauge", "wattprobe_self_peak_rss_bytes", "The agent's peak resident memory", "bytes"),
        stats.peak_rss_bytes,
    )
    _add(
        out.family(
            "gauge", "wattprobe_self_tick_seconds", "Duration of the agent's last measurement", "seconds"
        ),
        stats.tick_seconds,
    )
    _add(
        out.family("gauge", "wattprobe_self_processes_tracked", "Processes the agent tracks"),
        stats.processes_tracked,
    )


def _scaphandre(out: _Families, frame: Frame | None, stats: AgentStats, opts: SeriesSettings) -> None:
    # Scaphandre's energy counters have no _total suffix: typed unknown (untyped) to keep their names.
    host_power = out.family(
        "gauge", "scaph_host_power_microwatts", "Power measurement on the whole host, in microwatts"
    )
    host_energy = out.family(
        "unknown",
        "scaph_host_energy_microjoules",
        "Energy measurement for the whole host, as extracted from the sensor, in microjoules.",
    )
    socket_power = out.family(
        "gauge", "scaph_socket_power_microwatts", "Power measurement relative to a CPU socket, in microwatts"
    )
    socket_energy = out.family(
        "unknown", "scaph_socket_energy_microjoules", "Socket related energy measurement in microjoules."
    )
    domain_power = out.family(
        "gauge", "scaph_domain_power_microwatts", "Power measurement relative to a RAPL Domain, in microwatts"
    )
    domain_energy = out.family(
        "unknown", "scaph_domain_energy_microjoules", "Domain related energy measurement in microjoules."
    )
    power = out.family(
        "gauge",
        "scaph_process_power_consumption_microwatts",
        "Power consumption of the process, in microwatts",
    )
    cpu = out.family(
        "gauge",
        "scaph_process_cpu_usage_percentage",
        "CPU time consumed by the process, as a percentage of the capacity of all the CPU Cores",
    )
    memory = out.family("gauge", "scaph_process_memory_bytes", "Physical RAM usage by the process, in bytes")
    virtual = out.family(
        "gauge", "scaph_process_memory_virtual_bytes", "Virtual RAM usage by the process, in bytes"
    )
    if frame is not None:
        source = {
            "psys": "powercap_rapl_psys",
            "package": "powercap_rapl_pkg",
            "package+dram": "powercap_rapl_pkg",
        }
        value_source = source.get(frame.host_source, "") if frame.sensor == "powercap_rapl" else frame.sensor
        _add(host_power, frame.host_watts * 1e6, value_source=value_source)
        _add(host_energy, frame.host_energy_j * 1e6, value_source=value_source)
        for s in frame.sockets:
            _add(socket_power, s.watts * 1e6, socket_id=str(s.id))
            _add(socket_energy, s.energy_j * 1e6, socket_id=str(s.id))
            for d in s.domains:
                _add(domain_power, d.watts * 1e6, domain_name=d.name, socket_id=str(s.id))
                _add(domain_energy, d.energy_j * 1e6, domain_name=d.name, socket_id=str(s.id))
        for c in selected_consumers(frame, opts):
            labels = _process_labels(c, opts)
            _add(power, c.watts * 1e6, **labels)
            _add(cpu, c.cpu_share * 100, **labels)
            _add(memory, c.rss_bytes, **labels)
            _add(virtual, c.vsize_bytes, **labels)
    _add(
        out.family("gauge", "scaph_self_version", "Version number of wattprobe represented as a float."),
        _version_number(__version__),
    )
    _add(
        out.family(
            "gauge",
            "scaph_self_cpu_usage_percent",
            "CPU time consumed by the agent, as a percentage of all CPUs",
        ),
        stats.cpu_percent,
    )
    _add(
        out.family("gauge", "scaph_self_memory_bytes", "Peak resident set size of the agent, in bytes."),
        stats.peak_rss_bytes,
    )
    _add(
        out.family("gauge", "scaph_self_topo_procs_nb", "Number of processes monitored for the host."),
        stats.processes_tracked,
    )
    _wattprobe_host_extras(out, frame)
    _exited(out, frame, opts)
    _aggregates(out, frame)


def _version_number(version: str) -> float:
    """Scaphandre's float version: MAJOR.MINORPATCH (1.0.2 -> 1.02)."""
    major, minor, patch = ([*re.findall(r"\d+", version), "0", "0"])[:3]
    return float(f"{major}.{minor}{patch}")


# -- the collector -------------------------------------------------------------------------------
class FrameCollector(Collector):
    """A prometheus_client Collector: each collect() renders the Frame `frame_source` gives."""

    def __init__(self, frame_source: Callable[[], Frame | None], opts: SeriesSettings) -> None:
        self.frame_source = frame_source
        self.opts = opts
        self._lock = threading.Lock()
        self._last_cpu = (time.monotonic(), _own_cpu_seconds())

    def collect(self) -> Iterator[Metric]:
        frame = self.frame_source()
        return iter(render(frame, self.agent_stats(frame), self.opts))

    def agent_stats(self, frame: Frame | None) -> AgentStats:
        now, cpu = time.monotonic(), _own_cpu_seconds()
        with self._lock:
            (then, cpu_then), self._last_cpu = self._last_cpu, (now, cpu)
        n_cpus = frame.n_cpus if frame is not None else os.cpu_count() or 1
        percent = (cpu - cpu_then) / (now - then) / n_cpus * 100 if now > then else 0.0
        agent = frame.agent if frame is not None else None
        return AgentStats(
            cpu_seconds=cpu,
            cpu_percent=percent,
            peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            tick_seconds=agent.tick_seconds if agent else 0.0,
            processes_tracked=agent.processes_tracked if agent else 0,
        )


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system
