"""A Frame as a flat list of named, labelled numbers: what the Riemann and Warp10 exporters send.

Names, units (µW, µJ) and labels are Scaphandre's, so that existing queries keep working; energy
counters are integers, power is a float. `scaph_host_unattributed_power_microwatts` is wattprobe's own:
host power that no process explains, so that the processes plus it add up to the host.
"""

from __future__ import annotations

from dataclasses import dataclass

from wattprobe.core.model import Frame

# Long command lines make huge labels (a JVM's can pass 4000 characters): keep the start.
MAX_CMDLINE = 256


@dataclass(frozen=True, slots=True)
class Point:
    name: str
    value: int | float
    labels: tuple[tuple[str, str], ...]
    description: str


def frame_points(frame: Frame, *, qemu: bool = False) -> list[Point]:
    """Host, sockets, domains and every process that used CPU in the window.

    With `qemu`, processes that are QEMU guests get a `vmname` label.
    """
    points = [
        Point("scaph_host_power_microwatts", frame.host_watts * 1e6, (), "Power of the whole host, in µW"),
        Point(
            "scaph_host_energy_microjoules",
            round(frame.host_energy_j * 1e6),
            (),
            "Energy of the whole host since the agent started, in µJ",
        ),
        Point(
            "scaph_host_unattributed_power_microwatts",
            frame.unattributed_watts * 1e6,
            (),
            "Host power no process explains (idle CPUs, exited processes, kernel), in µW",
        ),
    ]
    for socket in frame.sockets:
        labels: tuple[tuple[str, str], ...] = (("socket_id", str(socket.id)),)
        points += [
            Point(
                "scaph_socket_power_microwatts", socket.watts * 1e6, labels, "Power of a CPU package, in µW"
            ),
            Point(
                "scaph_socket_energy_microjoules",
                round(socket.energy_j * 1e6),
                labels,
                "Energy of a CPU package since the agent started, in µJ",
            ),
        ]
        for domain in socket.domains:
            domain_labels = (("domain_name", domain.name), *labels)
            points += [
                Point(
                    "scaph_domain_power_microwatts",
                    domain.watts * 1e6,
                    domain_labels,
                    "Power of a RAPL domain, in µW",
                ),
                Point(
                    "scaph_domain_energy_microjoules",
                    round(domain.energy_j * 1e6),
                    domain_labels,
                    "Energy of a RAPL domain since the agent started, in µJ",
                ),
            ]
    for consumer in frame.consumers:
        info = consumer.info
        labels = (
            ("pid", str(info.pid)),
            ("exe", info.name),
            ("cmdline", info.cmdline[:MAX_CMDLINE]),
        )
        name = info.vm if qemu else None
        if name is not None:
            labels += (("vmname", name),)
        points.append(
            Point(
                "scaph_process_power_consumption_microwatts",
                consumer.watts * 1e6,
                labels,
                "Power of a process (host power x its share of all CPU time), in µW",
            )
        )
    return points
