"""A Frame as OpenTelemetry metrics (the SDK's `MetricsData`), named as the semantic conventions say.

Host, sockets, domains, processes and containers come from the catalogue's samples (`sinks.kit.
catalogue`): its families are the figures, `FROM_CATALOGUE` gives each its OpenTelemetry name, and
the family's unit and kind give the metric's unit and type (a counter is a cumulative, monotonic sum).
Pods and VMs add up their containers' and processes' power; per-workload energy is summed by
`energy.EnergySums`. The OpenTelemetry hardware conventions name the host's power (`hw.host.power`,
`hw.host.energy`) and its components' (`hw.power`, `hw.energy`); none names a process's, container's,
pod's or VM's yet, so those are `wattprobe.{process,container,pod,vm}.{power,energy}`, with the
conventions' attribute names. Every point of an estimated Frame carries `wattprobe.estimated=true`.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from wattprobe import __version__
from wattprobe.core.model import Consumer, Container, Frame, Group, ProcessInfo
from wattprobe.sinks.kit import catalogue
from wattprobe.sinks.kit.catalogue import Family, Labels
from wattprobe.sinks.kit.selection import select_consumers
from wattprobe.sinks.otlp.energy import EnergySums

__all__ = ["FIGURES", "MetricsData", "Renderer", "resource"]

UCUM = {"watts": "W", "joules": "J"}
Attributes = dict[str, str | int | bool]


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    unit: str  # UCUM
    description: str
    cumulative: bool  # a cumulative monotonic sum, else a gauge


def _from(family: Family, name: str, description: str | None = None) -> Figure:
    """The catalogue's family under an OpenTelemetry name, with its unit and kind."""
    return Figure(name, UCUM[family.unit], description or family.help, family.kind == "counter")


HOST_POWER = _from(catalogue.HOST_POWER, "hw.host.power")
HOST_ENERGY = _from(catalogue.HOST_ENERGY, "hw.host.energy")
HW_POWER = _from(catalogue.SOCKET_POWER, "hw.power", "Power of a CPU package or of one of its RAPL domains")
HW_ENERGY = _from(
    catalogue.SOCKET_ENERGY, "hw.energy", "Energy of a CPU package or of one of its RAPL domains"
)
PROCESS_POWER = _from(catalogue.PROCESS_POWER, "wattprobe.process.power")
PROCESS_ENERGY = Figure("wattprobe.process.energy", "J", "A process's share of host energy", True)
CONTAINER_POWER = _from(catalogue.CONTAINER_POWER, "wattprobe.container.power")
CONTAINER_ENERGY = Figure("wattprobe.container.energy", "J", "Energy of all processes of one container", True)
POD_POWER = Figure("wattprobe.pod.power", "W", "Power of all containers of one Kubernetes pod", False)
POD_ENERGY = Figure("wattprobe.pod.energy", "J", "Energy of all containers of one Kubernetes pod", True)
VM_POWER = Figure("wattprobe.vm.power", "W", "Power of the QEMU/KVM processes of one virtual machine", False)
VM_ENERGY = Figure(
    "wattprobe.vm.energy", "J", "Energy of the QEMU/KVM processes of one virtual machine", True
)
FIGURES = (
    HOST_POWER,
    HOST_ENERGY,
    HW_POWER,
    HW_ENERGY,
    PROCESS_POWER,
    PROCESS_ENERGY,
    CONTAINER_POWER,
    CONTAINER_ENERGY,
    POD_POWER,
    POD_ENERGY,
    VM_POWER,
    VM_ENERGY,
)
FROM_CATALOGUE = {
    catalogue.HOST_POWER: HOST_POWER,
    catalogue.HOST_ENERGY: HOST_ENERGY,
    catalogue.SOCKET_POWER: HW_POWER,
    catalogue.SOCKET_ENERGY: HW_ENERGY,
    catalogue.DOMAIN_POWER: HW_POWER,
    catalogue.DOMAIN_ENERGY: HW_ENERGY,
    catalogue.PROCESS_POWER: PROCESS_POWER,
    catalogue.CONTAINER_POWER: CONTAINER_POWER,
}
HW_TYPES = {"dram": "memory"}  # RAPL domains; package, core, uncore (and the rest) are the CPU's
ESTIMATED: Attributes = {"wattprobe.estimated": True}
_HOST_ID = "host"


def resource(hostname: str) -> Resource:
    """host.name, service.name (wattprobe) and service.version, under what OTEL_RESOURCE_ATTRIBUTES
    and OTEL_SERVICE_NAME set (the SDK's reading of them)."""
    defaults = Resource({"host.name": hostname, "service.name": "wattprobe", "service.version": __version__})
    return defaults.merge(OTELResourceDetector().detect())


def socket_attributes(socket: str) -> Attributes:
    return {
        "hw.id": f"socket-{socket}",
        "hw.type": "cpu",
        "hw.name": f"package-{socket}",
        "hw.parent": _HOST_ID,
    }


def domain_attributes(socket: str, domain: str) -> Attributes:
    return {
        "hw.id": f"socket-{socket}-{domain}",
        "hw.type": HW_TYPES.get(domain, "cpu"),
        "hw.name": domain,
        "hw.parent": f"socket-{socket}",
    }


def container_attributes(container: Container, frame: Frame) -> Attributes:
    """container.* and, in a pod, k8s.*: the names the container engine and Kubernetes gave, where known."""
    found: Attributes = {"container.id": container.id}
    if container.runtime:
        found["container.runtime.name"] = container.runtime
    workload = frame.workloads.get(container.id)
    if workload is not None:
        if workload.name:
            found["container.name"] = workload.name
        if workload.image:
            found["container.image.name"] = workload.image
    pod_uid = container.pod_uid or (workload.pod_uid if workload else None)
    if pod_uid:
        found |= pod_attributes(pod_uid, frame, workload.pod_name if workload else None,
                                workload.pod_namespace if workload else None)  # fmt: skip
    return found


def pod_attributes(uid: str, frame: Frame, name: str | None, namespace: str | None) -> Attributes:
    found: Attributes = {"k8s.pod.uid": uid}
    if name:
        found["k8s.pod.name"] = name
    if namespace:
        found["k8s.namespace.name"] = namespace
    if frame.node_name:
        found["k8s.node.name"] = frame.node_name
    return found


def process_attributes(info: ProcessInfo, command_line: str, frame: Frame) -> Attributes:
    found: Attributes = {"process.pid": info.pid, "process.executable.name": info.name}
    if info.exe:
        found["process.executable.path"] = info.exe
    found["process.command_line"] = command_line  # the catalogue's label: redacted, cut, one line
    if info.container is not None:
        found |= container_attributes(info.container, frame)
    if info.vm:
        found["wattprobe.vm.name"] = info.vm
    return found


def process_key(info: ProcessInfo) -> tuple[str, int, str, str]:
    return ("process", info.pid, info.comm, info.cmdline)


def container_key(group: Group) -> tuple[str, str]:
    return ("container", group.container.id if group.container else group.key)


def pods(frame: Frame) -> dict[str, list[Group]]:
    """The containers of each pod, by pod uid."""
    found: dict[str, list[Group]] = defaultdict(list)
    for group in frame.containers:
        container = group.container
        if container is None:
            continue
        workload = frame.workloads.get(container.id)
        uid = container.pod_uid or (workload.pod_uid if workload else None)
        if uid:
            found[uid].append(group)
    return found


def _pod_names(groups: list[Group], frame: Frame) -> tuple[str | None, str | None]:
    """A pod's name and namespace, from whichever of its containers Kubernetes named."""
    for group in groups:
        workload = frame.workloads.get(group.container.id) if group.container else None
        if workload is not None and workload.pod_name:
            return workload.pod_name, workload.pod_namespace
    return None, None


def vms(consumers: tuple[Consumer, ...]) -> dict[str, float]:
    """The power of each VM: its QEMU/KVM processes'."""
    found: dict[str, float] = defaultdict(float)
    for c in consumers:
        if c.info.vm:
            found[c.info.vm] += c.watts
    return found


class Renderer:
    """Renders Frames, in order: it keeps the start of the first one and each workload's energy sum."""

    def __init__(
        self, resource: Resource, hostname: str, top: int, pattern: re.Pattern[str] | None = None
    ) -> None:
        self.resource = resource
        self.scope = InstrumentationScope("wattprobe", __version__)
        self.host_attributes: Attributes = {"hw.id": _HOST_ID, "hw.name": hostname}
        self.top = top
        self.pattern = pattern
        self.labels = Labels("native", qemu=True, containers=True)
        self.start_ns: int | None = None  # the start of the first Frame's window: when energy began
        self.energy = EnergySums()

    def render(self, frame: Frame) -> MetricsData:
        end_ns = round(frame.timestamp * 1e9)
        begin_ns = end_ns - round(frame.window_s * 1e9)
        if self.start_ns is None:
            self.start_ns = begin_ns
        start_ns = self.start_ns
        pods_now = pods(frame)
        vms_now = vms(frame.consumers)
        self._add_energy(frame, begin_ns, pods_now, vms_now)
        mark = ESTIMATED if frame.estimated else {}
        points: dict[Figure, list[NumberDataPoint]] = {figure: [] for figure in FIGURES}

        def add(figure: Figure, attributes: Attributes, value: float, since_ns: int | None = None) -> None:
            if math.isfinite(value):
                since = (start_ns if since_ns is None else since_ns) if figure.cumulative else begin_ns
                points[figure].append(NumberDataPoint({**attributes, **mark}, since, end_ns, float(value)))

        def add_energy(figure: Figure, attributes: Attributes, key: object) -> None:
            counter = self.energy.get(key)
            if counter is not None:
                add(figure, attributes, counter.joules, counter.start_ns)

        consumers = select_consumers(frame, self.top, self.pattern)
        by_pid = {c.info.pid: c for c in consumers}
        containers = {g.container.id: (g, g.container) for g in frame.containers if g.container is not None}
        for sample in catalogue.samples(frame, consumers, self.labels):
            figure = FROM_CATALOGUE.get(sample.family)
            if figure is None:
                continue
            labels = sample.labels
            if figure in (HOST_POWER, HOST_ENERGY):
                add(figure, self.host_attributes, sample.value)
            elif "domain" in labels:
                add(figure, domain_attributes(labels["socket"], labels["domain"]), sample.value)
            elif "socket" in labels:
                add(figure, socket_attributes(labels["socket"]), sample.value)
            elif figure is PROCESS_POWER:
                info = by_pid[int(labels["pid"])].info
                attributes = process_attributes(info, labels["cmdline"], frame)
                add(figure, attributes, sample.value)
                add_energy(PROCESS_ENERGY, attributes, process_key(info))
            elif figure is CONTAINER_POWER and labels.get("container_id") in containers:
                group, container = containers[labels["container_id"]]
                attributes = container_attributes(container, frame)
                add(figure, attributes, sample.value)
                add_energy(CONTAINER_ENERGY, attributes, container_key(group))
        for uid, groups in pods_now.items():
            attributes = pod_attributes(uid, frame, *_pod_names(groups, frame))
            add(POD_POWER, attributes, sum(g.watts for g in groups))
            add_energy(POD_ENERGY, attributes, ("pod", uid))
        for vm, watts in vms_now.items():
            add(VM_POWER, {"wattprobe.vm.name": vm}, watts)
            add_energy(VM_ENERGY, {"wattprobe.vm.name": vm}, ("vm", vm))
        metrics = [_metric(figure, found) for figure, found in points.items() if found]
        return MetricsData([ResourceMetrics(self.resource, [ScopeMetrics(self.scope, metrics, "")], "")])

    def _add_energy(
        self, frame: Frame, begin_ns: int, pods_now: Mapping[str, list[Group]], vms_now: Mapping[str, float]
    ) -> None:
        """Every workload's energy over this Frame's window, listed or not."""
        add, window, now = self.energy.add, frame.window_s, frame.timestamp
        for c in frame.consumers:
            add(process_key(c.info), c.watts, window, begin_ns, now)
        for g in frame.containers:
            add(container_key(g), g.watts, window, begin_ns, now)
        for uid, groups in pods_now.items():
            add(("pod", uid), sum(g.watts for g in groups), window, begin_ns, now)
        for vm, watts in vms_now.items():
            add(("vm", vm), watts, window, begin_ns, now)
        self.energy.sweep(now)


def _metric(figure: Figure, points: list[NumberDataPoint]) -> Metric:
    data = Sum(points, AggregationTemporality.CUMULATIVE, True) if figure.cumulative else Gauge(points)
    return Metric(figure.name, figure.description, figure.unit, data)
