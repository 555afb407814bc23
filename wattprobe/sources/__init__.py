"""Sources: the only code that reads /proc, /sys and devices. Which sensor gives host energy, how the
sources are set (the global options, or the `[sensor]` table of an agent's configuration), and
`open_sources()`, the one place they are opened."""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wattprobe.config.settings import option
from wattprobe.config.values import non_negative, positive, regex
from wattprobe.core.model import NameResolver, Sensor
from wattprobe.errors import SensorUnavailable, UsageError, WattprobeError
from wattprobe.sources.estimate import CPU_PROFILES
from wattprobe.sources.identity.kubernetes import CA_FILE, TOKEN_FILE, api_url
from wattprobe.sources.topology import SYSFS_CPU_ROOT

if TYPE_CHECKING:
    from wattprobe.sources.host import HostReader
    from wattprobe.sources.identity.resolver import Resolver
    from wattprobe.sources.procfs import ProcfsReader

log = logging.getLogger(__name__)

SENSORS = ("auto", "powercap_rapl", "estimate", "powerspy2")
HOST_POWERCAP = "/sys/class/powercap"
VM_POWERCAP = "/var/scaphandre"
ESTIMATE_HINT = "; or estimate from CPU load with -s estimate"  # the fix -s powercap_rapl adds


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """Where host energy and CPU times come from: the global options, or `[sensor]` in a file."""

    name: str = option(
        "auto",
        "-s",
        "--sensor",
        choices=SENSORS,
        help="energy source (default auto: powercap when readable, else estimate, saying why)",
    )
    vm: bool = option(
        False,
        "--vm",
        help=f"inside a VM: read the powercap tree its hypervisor exports, at $SCAPHANDRE_POWERCAP_PATH "
        f"or {VM_POWERCAP}",
    )
    powercap_root: str | None = option(None, metavar="PATH", help=f"powercap tree (default {HOST_POWERCAP})")
    procfs_root: str = option("/proc", metavar="PATH", help="procfs mount (default /proc)")
    cgroupfs_root: str = option(
        "/sys/fs/cgroup",
        metavar="PATH",
        help="cgroup filesystem whose CPU counters give cgroup and container figures (default /sys/fs/cgroup)",
    )
    sysfs_root: str = option(
        "/sys", metavar="PATH", help="sysfs mount, for the host's CPU frequencies and disks (default /sys)"
    )
    sysfs_cpu_root: str = option(
        SYSFS_CPU_ROOT,
        metavar="PATH",
        help=f"cpu topology, for each socket's first cpu (default {SYSFS_CPU_ROOT})",
    )
    no_redaction: bool = option(
        False, help="export command lines as they are: do not hide passwords, tokens and keys in them"
    )
    redact_pattern: re.Pattern[str] | None = option(
        None,
        parse=regex,
        metavar="REGEX",
        help="also hide what this matches in command lines (its first group, if it has one)",
    )
    powerspy_device: str = option(
        "/dev/rfcomm0", metavar="PATH", help="PowerSpy2 serial device for -s powerspy2 (default /dev/rfcomm0)"
    )
    tdp: float | None = option(
        None, parse=positive, metavar="WATTS", help="estimate: the CPU's TDP, for the Teads load curve"
    )
    cpu_profile: str = option(
        "unknown",
        choices=tuple(sorted(CPU_PROFILES)),
        help="estimate: CPU family for the per-vCPU linear model (default: the best published model for "
        "this CPU, else unknown: 0.74-3.5 W per vCPU)",
    )
    vcpu_min_watts: float | None = option(
        None, parse=non_negative, metavar="WATTS", help="estimate: idle watts per vCPU"
    )
    vcpu_max_watts: float | None = option(
        None, parse=non_negative, metavar="WATTS", help="estimate: full-load watts per vCPU"
    )
    model: str | None = option(
        None,
        metavar="PATH",
        help="estimate: this host's own curve, a model made by `wattprobe calibrate` (default: the best "
        "published model for this CPU)",
    )
    memory_watts_per_gb: float = option(
        0.0,
        parse=non_negative,
        metavar="WATTS",
        help="estimate: add memory power as a dram domain (Cloud Carbon Footprint uses 0.392; default 0)",
    )

    container_socket: str | None = option(
        None,
        metavar="PATH",
        help="the container engine's API socket (Docker's, or Podman's service), for containers' names "
        "(default /var/run/docker.sock, then /run/podman/podman.sock: the first that exists)",
    )
    kubernetes_api: str | None = option(
        None,
        metavar="URL",
        help="the Kubernetes API server, for pods' names (default in a pod: "
        "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; else none)",
    )
    kubernetes_token_file: str = option(
        TOKEN_FILE, metavar="PATH", help=f"the bearer token for --kubernetes-api (default {TOKEN_FILE})"
    )
    kubernetes_ca_file: str | None = option(
        None,
        metavar="PATH",
        help=f"the CA that signed the API server's certificate (default {CA_FILE} when it exists, else "
        "the system's CAs)",
    )
    node_name: str | None = option(
        None,
        metavar="NAME",
        help="this node's name, whose pods are listed (default $NODE_NAME, else the hostname)",
    )

    def __post_init__(self) -> None:
        api_url(self.kubernetes_api)  # an http:// or malformed URL is refused here
        if self.vm and self.name in ("estimate", "powerspy2"):
            raise UsageError(f"--vm reads the powercap tree the host exports: drop --vm or -s {self.name}")
        if self.model is not None and self.name in ("powercap_rapl", "powerspy2"):
            raise UsageError(f"--model is the estimate's curve, -s {self.name} measures: drop --model")
        if self.model is not None and self.tdp is not None:
            raise UsageError("--model and --tdp are two estimates: keep one")
        low, high = self.vcpu_watts
        if high < low:
            raise UsageError(f"--vcpu-max-watts ({high:g}) is below --vcpu-min-watts ({low:g})")

    @property
    def vcpu_watts(self) -> tuple[float, float]:
        """Idle and full-load watts per vCPU: the profile's, or as given."""
        low, high = CPU_PROFILES[self.cpu_profile]
        return (
            low if self.vcpu_min_watts is None else self.vcpu_min_watts,
            high if self.vcpu_max_watts is None else self.vcpu_max_watts,
        )

    @property
    def powercap_tree(self) -> str:
        """The powercap tree to read: explicit, else the VM's exported tree with --vm, else the host's."""
        if self.powercap_root:
            return self.powercap_root
        if self.vm:
            return os.environ.get("SCAPHANDRE_POWERCAP_PATH") or VM_POWERCAP
        return HOST_POWERCAP


def open_sensor(settings: SourceSettings) -> Sensor:
    """Open the sensor the settings ask for; raise WattprobeError with the fix when it cannot work.

    With --vm the user asked for the host's figures: a missing or unusable tree is an error, never a
    fallback to the estimate. Under `auto` on a host without RAPL, the fallback is said in one line.
    """
    from wattprobe.sources.estimate import EstimateSensor
    from wattprobe.sources.powercap import open_powercap

    if settings.name == "estimate":
        return EstimateSensor.from_settings(settings)
    if settings.name == "powerspy2":
        from wattprobe.sources.powerspy2.sensor import PowerSpy2Sensor

        return PowerSpy2Sensor(settings.powerspy_device)
    try:
        return open_powercap(settings.powercap_tree, vm=settings.vm)
    except SensorUnavailable as why:
        if settings.vm:
            raise
        if settings.name == "powercap_rapl":
            raise SensorUnavailable(why.reason, why.fix + ESTIMATE_HINT) from None
        sensor = EstimateSensor.from_settings(settings)
        log.warning(
            "no usable powercap tree (%s): estimating power from CPU load instead (%s), every figure marked "
            "estimated; to measure it: %s",
            why.reason,
            sensor.model,
            why.fix,
        )
        return sensor


@dataclass(frozen=True, slots=True)
class Sources:
    """The readers a sampler takes: host energy, CPU times, the host's facts, each socket's first cpu."""

    sensor: Sensor
    procfs: ProcfsReader
    host: HostReader | None  # None: no output writes the host's facts
    socket_cpus: dict[int, int]
    names: NameResolver | None = None  # containers' names, where an engine or Kubernetes can give them


def open_sources(
    settings: SourceSettings, secrets: Iterable[str] = (), *, host_facts: bool = False
) -> Sources:
    """Every source the settings describe; WattprobeError with the fix when one cannot work.

    `secrets` (the outputs' own secret options) are redacted from every command line procfs reads. The
    host's facts (load, memory, disks, CPUs) are read only with `host_facts` (an output writes them).
    """
    from wattprobe.sources.host import HostReader
    from wattprobe.sources.identity.kubernetes import read_token
    from wattprobe.sources.identity.redaction import Redactor
    from wattprobe.sources.procfs import ProcfsReader, raise_fd_limit, read_machine_cpu
    from wattprobe.sources.topology import first_cpus

    try:
        read_machine_cpu(settings.procfs_root)
    except (OSError, ValueError) as error:
        raise WattprobeError(
            f"cannot read {settings.procfs_root}/stat ({getattr(error, 'strerror', None) or error}): point "
            "--procfs-root at the procfs mount (default /proc)"
        ) from None
    raise_fd_limit()
    sensor = open_sensor(settings)
    names = open_names(settings)
    token = read_token(settings.kubernetes_token_file) if names is not None and names.watcher else None
    secrets = {*secrets, token} if token else secrets
    redactor = Redactor(not settings.no_redaction, settings.redact_pattern, frozenset(secrets))
    procfs = ProcfsReader(settings.procfs_root, cgroupfs_root=settings.cgroupfs_root, redactor=redactor)
    host = HostReader(settings.procfs_root, settings.sysfs_root) if host_facts else None
    return Sources(sensor, procfs, host, first_cpus(settings.sysfs_cpu_root), names)


def open_names(settings: SourceSettings) -> Resolver | None:
    """The resolver of containers' names: from the engine's socket (given, else the first default one
    that exists) and the Kubernetes API (given, else in a pod); None when there is neither, so that a
    host without containers pays nothing. Nothing is asked before a container is seen."""
    from wattprobe.sources.identity.engine import EngineApi, default_socket
    from wattprobe.sources.identity.kubernetes import KubeApi, PodWatcher
    from wattprobe.sources.identity.resolver import Resolver

    socket_path = settings.container_socket or default_socket()
    url = api_url(settings.kubernetes_api)
    if socket_path is None and url is None:
        return None
    engine = EngineApi(socket_path) if socket_path else None
    if url is None:
        return Resolver(engine)
    node = settings.node_name or os.environ.get("NODE_NAME") or socket.gethostname()
    ca_file = settings.kubernetes_ca_file or (CA_FILE if os.path.exists(CA_FILE) else None)
    api = KubeApi(url, node, settings.kubernetes_token_file, ca_file)
    return Resolver(engine, lambda changed: PodWatcher(api, changed), node_name=node)
