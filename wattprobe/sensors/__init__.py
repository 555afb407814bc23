"""Sensors: where host energy comes from, chosen with -s/--sensor."""

from __future__ import annotations

import argparse
import logging
import os

from wattprobe.errors import WattprobeError
from wattprobe.model import Sensor

log = logging.getLogger(__name__)

SENSORS = ("auto", "powercap_rapl", "estimate", "powerspy2")
HOST_POWERCAP = "/sys/class/powercap"
VM_POWERCAP = "/var/scaphandre"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The global options that choose and tune the sensor."""
    from wattprobe.sensors import estimate

    parser.add_argument(
        "-s",
        "--sensor",
        choices=SENSORS,
        default="auto",
        help="energy source (default auto: powercap when readable, else estimate, saying why)",
    )
    parser.add_argument(
        "--vm",
        action="store_true",
        help=f"inside a VM: read the powercap tree its hypervisor exports, at $SCAPHANDRE_POWERCAP_PATH "
        f"or {VM_POWERCAP}",
    )
    parser.add_argument("--powercap-root", metavar="PATH", help=f"powercap tree (default {HOST_POWERCAP})")
    parser.add_argument("--procfs-root", metavar="PATH", default="/proc", help="procfs mount (default /proc)")
    parser.add_argument(
        "--cgroupfs-root",
        metavar="PATH",
        default="/sys/fs/cgroup",
        help="cgroup filesystem whose CPU counters give cgroup and container figures (default /sys/fs/cgroup)",
    )
    parser.add_argument(
        "--powerspy-device",
        metavar="PATH",
        default="/dev/rfcomm0",
        help="PowerSpy2 serial device for -s powerspy2 (default /dev/rfcomm0)",
    )
    estimate.add_arguments(parser)


def powercap_root(args: argparse.Namespace) -> str:
    """The powercap tree to read: explicit, else the VM's exported tree with --vm, else the host's."""
    if args.powercap_root:
        return args.powercap_root
    if args.vm:
        return os.environ.get("SCAPHANDRE_POWERCAP_PATH") or VM_POWERCAP
    return HOST_POWERCAP


def make_sensor(args: argparse.Namespace) -> Sensor:
    """Open the sensor the options ask for; raise WattprobeError with the fix when it cannot work."""
    from wattprobe.sensors.estimate import EstimateSensor
    from wattprobe.sensors.powercap import PowercapSensor

    if args.sensor == "powercap_rapl":
        return PowercapSensor(powercap_root(args), vm=args.vm)
    if args.sensor == "estimate":
        return EstimateSensor.from_args(args)
    if args.sensor == "powerspy2":
        from wattprobe.sensors.powerspy2.sensor import PowerSpy2Sensor

        return PowerSpy2Sensor(args.powerspy_device)
    try:
        return PowercapSensor(powercap_root(args), vm=args.vm)
    except WattprobeError as why:
        sensor = EstimateSensor.from_args(args)
        log.warning("no usable powercap tree: %s", why)
        log.warning("estimating power from CPU load instead (%s); figures are marked estimated", sensor.model)
        return sensor
