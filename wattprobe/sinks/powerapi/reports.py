"""Frames as PowerAPI report documents (dicts ready for JSON), with integer-ms UTC timestamps.

HWPC report: target `all`, group `rapl`, socket id -> first cpu of that socket -> events. RAPL
events are the energy spent over the window in units of 2^-32 J; `time_enabled` and
`time_running` are the window in ns. A platform counter (psys) is the same value under every
socket, as each socket's cpu reads it: never sum RAPL_ENERGY_PSYS across sockets.

Power reports: target `all` (the host, scope `host`), target `all` per socket (scope `cpu` for
the package, `dram`), one per cgroup (its path, `ratio` = its share of host power) and
optionally per process (`pid:<pid>`). Every report says `estimated` in its metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from math import ldexp
from typing import Any

from wattprobe.core.model import Frame

HWPC_GROUP = "rapl"
TARGET_ALL = "all"
# Powercap domain -> HWPC RAPL event (the perf power PMU names uncore "gpu").
RAPL_EVENTS = {
    "package": "RAPL_ENERGY_PKG",
    "dram": "RAPL_ENERGY_DRAM",
    "core": "RAPL_ENERGY_CORES",
    "uncore": "RAPL_ENERGY_GPU",
    "psys": "RAPL_ENERGY_PSYS",
}
# Power report scopes per socket domain, as PowerAPI formulas name them.
SOCKET_SCOPES = {"package": "cpu", "dram": "dram"}
FORMULA = "cpu-time-share"  # how cgroup and process power is derived: host power x CPU time share

Report = dict[str, Any]


def timestamp_ms(frame: Frame) -> int:
    """The frame's end as integer Unix milliseconds, the form PowerAPI reads everywhere."""
    return round(frame.timestamp * 1000)


def iso_utc(ms: int) -> str:
    """`YYYY-MM-DDThh:mm:ss.ffffff` in UTC without a zone suffix: the string form PowerAPI 2.10 reads."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def rapl_units(joules: float) -> int:
    """Joules in RAPL units of 2^-32 J."""
    return round(ldexp(joules, 32))


def rapl_joules(units: int) -> float:
    return ldexp(units, -32)


def rapl_events(frame: Frame) -> dict[int, dict[str, int]]:
    """Socket id -> RAPL energy over the window (2^-32 J) per event, with time_enabled/running (ns)."""
    window_ns = round(frame.window_s * 1e9)
    psys = {}
    if frame.host_source == "psys":
        psys = {RAPL_EVENTS["psys"]: rapl_units(frame.host_watts * frame.window_s)}
    sockets: dict[int, dict[str, int]] = {}
    for socket in frame.sockets:
        events = {RAPL_EVENTS["package"]: rapl_units(socket.watts * frame.window_s)}
        for domain in socket.domains:
            if domain.name in RAPL_EVENTS:
                events[RAPL_EVENTS[domain.name]] = rapl_units(domain.watts * frame.window_s)
        sockets[socket.id] = events | psys
    if not sockets and psys:  # a platform counter alone: report it under socket 0
        sockets[0] = psys
    for events in sockets.values():
        events["time_enabled"] = events["time_running"] = window_ns
    return sockets


def hwpc_reports(frame: Frame, sensor: str, first_cpus: Mapping[int, int]) -> list[Report]:
    """The HWPC report of a frame (none when the frame has no RAPL counter, e.g. a wall meter)."""
    events = rapl_events(frame)
    if not events:
        return []
    rapl = {str(s): {str(first_cpus.get(s, 0)): events[s]} for s in sorted(events)}
    metadata = {"estimated": True} if frame.estimated else {}
    return [
        {
            "timestamp": timestamp_ms(frame),
            "sensor": sensor,
            "target": TARGET_ALL,
            "groups": {HWPC_GROUP: rapl},
            "metadata": metadata,
        }
    ]


def power_reports(frame: Frame, sensor: str, processes: int = 0) -> list[Report]:
    """Power reports of a frame: host, per socket and scope, per cgroup, and the top `processes`."""
    ts = timestamp_ms(frame)
    common = {"estimated": frame.estimated}

    def report(target: str, watts: float, **metadata: Any) -> Report:
        return {
            "timestamp": ts,
            "sensor": sensor,
            "target": target,
            "power": watts,
            "metadata": metadata | common,
        }

    reports = [report(TARGET_ALL, frame.host_watts, scope="host", source=frame.host_source)]
    for socket in frame.sockets:
        reports.append(report(TARGET_ALL, socket.watts, scope="cpu", socket=str(socket.id)))
        for domain in socket.domains:
            if domain.name in SOCKET_SCOPES:
                reports.append(
                    report(TARGET_ALL, domain.watts, scope=SOCKET_SCOPES[domain.name], socket=str(socket.id))
                )
    for group in frame.cgroups:
        extra = {"container": group.container.id} if group.container is not None else {}
        reports.append(
            report(
                group.key, group.watts, scope="host", formula=FORMULA, ratio=_ratio(group.cpu_share), **extra
            )
        )
    for consumer in frame.consumers[:processes]:
        info = consumer.info
        reports.append(
            report(
                f"pid:{info.pid}",
                consumer.watts,
                scope="host",
                formula=FORMULA,
                ratio=_ratio(consumer.cpu_share),
                pid=info.pid,
                name=info.name,
                exe=info.exe,
                cgroup=info.cgroup,
            )
        )
    return reports


def _ratio(share: float) -> float:
    """A share as a ratio in [0, 1]: a sum of shares can pass 1 by a rounding error."""
    return min(max(share, 0.0), 1.0)
