"""A Frame as OpenTelemetry metrics (the SDK's `MetricsData`), named as the semantic conventions say.

Host, sockets, domains, processes and containers come from the catalogue's samples (`sinks.kit.
catalogue`): its families are the figures, `FROM_CATALOGUE` gives each its OpenTelemetry name, and
the family's unit and kind give the metric's unit and type (a counter is a cumulative, monotonic sum).
Pods and VMs are the kit's aggregates (`sinks.kit.workloads.flows`), and per-workload energy is its
`Ledger`'s counters, each with the start time of its cumulative sum. The OpenTelemetry hardware conventions name the host's power (`hw.host.power`,
`hw.host.energy`) and its components' (`hw.power`, `hw.energy`); none names a process's, container's,
pod's or VM's yet, so those are `wattprobe.{process,container,pod,vm}.{power,energy}`, with the
conventions' attribute names. Every point of an estimated Frame carries `wattprobe.estimated=true`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import cast

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
from wattprobe.core.model import Container, Frame, ProcessInfo
from wattprobe.sinks.kit import catalogue
from wattprobe.sinks.kit.catalogue import Family, Labels
from wattprobe.sinks.kit.selection import select_consumers
from wattprobe.sinks.kit.workloads import HOST, Ledger, Named, Pod, Vm, flows, pod_of, process_key, window_ns

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
CONTAINER_ENERGY = _from(catalogue.CONTAINER_ENERGY, "wattprobe.container.energy")
POD_POWER = _from(catalogue.POD_POWER, "wattprobe.pod.power")
POD_ENERGY = _from(catalogue.POD_ENERGY, "wattprobe.pod.energy")
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
    pod_uid = pod_of(container, workload)
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


class Renderer:
    """Renders Frames, in order: it keeps the start of the first one and the workloads' energy counters."""

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
        self.ledger = Ledger(processes=True)  # every workload's energy, listed or not

    def render(self, frame: Frame) -> MetricsData:
        begin_ns, end_ns = window_ns(frame)
        if self.start_ns is None:
            self.start_ns = begin_ns
        start_ns = self.start_ns
        self.ledger.add(frame)
        accounts = self.ledger.accounts
        now = flows(frame)
        mark = ESTIMATED if frame.estimated else {}
        points: dict[Figure, list[NumberDataPoint]] = {figure: [] for figure in FIGURES}

        def add(figure: Figure, attributes: Attributes, value: float, since_ns: int | None = None) -> None:
            if math.isfinite(value):
                since = (start_ns if since_ns is None else since_ns) if figure.cumulative else begin_ns
                points[figure].append(NumberDataPoint({**attributes, **mark}, since, end_ns, float(value)))

        def add_energy(figure: Figure, attributes: Attributes, kind: str, key: object) -> None:
            account = accounts[kind].get(key)
            if account is not None:
                add(figure, attributes, account.joules[HOST], account.start_ns)

        consumers = select_consumers(frame, self.top, self.pattern)
        by_pid = {c.info.pid: c for c in consumers}
        containers = now["container"]
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
                add_energy(PROCESS_ENERGY, attributes, "process", process_key(info))
            elif figure is CONTAINER_POWER and labels.get("container_id") in containers:
                key = labels["container_id"]
                container = cast(Named, containers[key].about).container
                if container is not None:
                    attributes = container_attributes(container, frame)
                    add(figure, attributes, sample.value)
                    add_energy(CONTAINER_ENERGY, attributes, "container", key)
        for uid, flow in now["pod"].items():
            pod = cast(Pod, flow.about)
            attributes = pod_attributes(pod.uid, frame, pod.name, pod.namespace)
            add(POD_POWER, attributes, flow.watts)
            add_energy(POD_ENERGY, attributes, "pod", uid)
        for folder, flow in now["vm"].items():
            vm: Attributes = {"wattprobe.vm.name": cast(Vm, flow.about).name}
            add(VM_POWER, vm, flow.watts)
            add_energy(VM_ENERGY, vm, "vm", folder)
        metrics = [_metric(figure, found) for figure, found in points.items() if found]
        return MetricsData([ResourceMetrics(self.resource, [ScopeMetrics(self.scope, metrics, "")], "")])


def _metric(figure: Figure, points: list[NumberDataPoint]) -> Metric:
    data = Sum(points, AggregationTemporality.CUMULATIVE, True) if figure.cumulative else Gauge(points)
    return Metric(figure.name, figure.description, figure.unit, data)
