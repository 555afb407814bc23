"""RAPL energy counters through the Linux powercap tree (/sys/class/powercap, or a VM's copy)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from wattprobe.core.counters import first_reading
from wattprobe.core.model import Counter, EnergyReading
from wattprobe.errors import SensorReadError, SensorUnavailable
from wattprobe.sources.mounts import filesystem_of

log = logging.getLogger(__name__)

_ZONE = re.compile(r"^intel-rapl(-mmio)?:(\d+)(?::(\d+))?$")
_PACKAGE = re.compile(r"^package-([0-9]{1,9})(?![0-9])")
_CONSTRAINT_POWER = re.compile(r"^constraint_\d+_(max_power|power_limit)_uw$")
# A zone may draw more than the largest power it states (PL1 is often the TDP, and short bursts go to
# PL2 or PL4, up to a few times that): its bound is this many times that figure.
STATED_POWER_MARGIN = 4

NO_RAPL_FIX = (
    "load the RAPL driver (sudo modprobe intel_rapl_common intel_rapl_msr), or inside a virtual machine "
    "use --vm with the tree its host exports"
)
VM_FIX = (
    "mount the host's export at /var/scaphandre (mount -t virtiofs scaphandre /var/scaphandre) or set "
    "SCAPHANDRE_POWERCAP_PATH to where it is, and check that the host runs `wattprobe qemu`"
)
PERMISSION_FIX = (
    "since Linux 5.10 energy_uj is readable by root only: run as root, or give a group read access "
    "(sudo groupadd -f powercap && sudo chgrp powercap {pattern} && sudo chmod g+r {pattern}, then add "
    "the user to the powercap group; deploy/ has a unit that does it at boot)"
)


_MOST = 4096  # bytes read of a counter's file: a u64 is 20 digits; a page is no counter


@dataclass(frozen=True, slots=True)
class Zone:
    path: str  # the zone's energy_uj file
    socket: int | None
    domain: str
    max_uj: int
    max_w: float  # what it can draw at most, from its constraint_* files; 0 when the tree does not say
    index: int = 0  # M of intel-rapl:N:M for a domain (Scaphandre's domain_id), else N


class PowercapSensor:
    """Reads every RAPL zone of a powercap tree; `root` is a parameter so tests use a synthetic tree."""

    name = "powercap_rapl"
    estimated = False

    def __init__(
        self,
        root: str,
        *,
        vm: bool = False,
        clock: Callable[[], int] = time.monotonic_ns,
        keep_open: bool | None = None,
    ) -> None:
        """`keep_open`: read each counter with a pread on a descriptor kept open, rather than an open, a
        read and a close. None: where the tree is sysfs, whose files are never replaced (there an open,
        read and close cost 7 µs, a pread 0.8). Elsewhere a tree may be rewritten by rename (a VM's
        export), which a kept descriptor would not see."""
        self.root = root
        self.vm = vm
        self.clock = clock
        self.zones = discover(root, vm=vm)
        if keep_open is None:
            keep_open = not vm and filesystem_of(root) == "sysfs"
        self._kept: dict[str, int] | None = {} if keep_open else None  # path -> descriptor

    def read(self) -> EnergyReading:
        """Every zone's counter as its file says it now, stamped with the middle of the read and with
        how long the read took; whether the values and their time are good enough is for
        `wattprobe.core.counters` to judge."""
        started = self.clock()
        counters = []
        kept = self._kept
        for zone in self.zones:
            try:
                if kept is None:  # anew: a tree rewritten by rename too
                    fd = os.open(zone.path, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        raw = os.read(fd, _MOST)
                    finally:
                        os.close(fd)
                else:
                    raw = self._pread(kept, zone.path)
                if len(raw) == _MOST:
                    raise ValueError("longer than any counter")
                uj = int(raw)
            except PermissionError as error:
                raise SensorReadError(f"cannot read {zone.path}: permission denied", lasting=True) from error
            except (OSError, ValueError) as error:
                # Empty, torn or garbled (a VM's tree being rewritten): read again, or skip this sample.
                raise SensorReadError(f"unreadable energy counter {zone.path}: {error}") from error
            if uj < 0:
                raise SensorReadError(f"negative energy counter {zone.path}: {uj}")
            counters.append(Counter(zone.socket, zone.domain, uj, zone.max_uj, zone.max_w, zone.index))
        ended = self.clock()
        return EnergyReading((started + ended) // 2, tuple(counters), spread_ns=ended - started)

    @staticmethod
    def _pread(kept: dict[str, int], path: str) -> bytes:
        """The counter's file through its kept descriptor (opened at its first read). A descriptor that
        fails (the zone went with its driver) is closed: the next read opens the file anew."""
        fd = kept.get(path)
        if fd is None:
            fd = kept[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, _MOST, 0)
        except OSError:
            del kept[path]
            with contextlib.suppress(OSError):
                os.close(fd)
            raise

    def close(self) -> None:
        kept = self._kept or {}
        for fd in kept.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        kept.clear()


def open_powercap(root: str, *, vm: bool = False) -> PowercapSensor:
    """A powercap sensor whose counters gave two consistent reads; SensorUnavailable with the fix if not."""
    sensor = PowercapSensor(root, vm=vm)
    try:
        first_reading(sensor)
    except SensorReadError as error:
        if error.lasting:
            fix = PERMISSION_FIX.format(pattern=f"{root}/intel-rapl*/energy_uj")
        elif vm:
            fix = VM_FIX
        else:
            fix = "reload the RAPL driver (sudo modprobe -r intel_rapl_msr && sudo modprobe intel_rapl_msr)"
        reason = str(error) if root in str(error) else f"{error} at {root}"
        raise SensorUnavailable(reason, fix) from None
    return sensor


def discover(root: str, *, vm: bool = False) -> tuple[Zone, ...]:
    """Find the RAPL zones of a powercap tree: packages, their domains, psys, and MMIO zones.

    A zone is named by its `name` file (package-N, core, uncore, dram, psys). MMIO zones that
    repeat a counter the MSR tree already has are left out.
    """
    where = f"{root} (the tree exported by the host)" if vm else root
    fix = VM_FIX if vm else NO_RAPL_FIX
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        raise SensorUnavailable(f"no powercap tree at {where}", fix) from None
    except NotADirectoryError:
        raise SensorUnavailable(f"{where} is not a powercap tree (not a folder)", fix) from None
    except PermissionError:
        raise SensorUnavailable(f"cannot list {where}: permission denied", "run as root") from None
    dirs: dict[str, str] = {}
    # In name order, whatever order the file system lists: a package before its domains, so that a
    # domain is named by its path inside the package the same way on every run.
    for entry in sorted(entries):
        dirs.setdefault(entry, f"{root}/{entry}")
        try:  # sysfs nests domains inside their package too
            nested = os.listdir(f"{root}/{entry}") if _ZONE.match(entry) else []
        except OSError:
            nested = []
        for child in nested:
            if _ZONE.match(child):
                dirs.setdefault(child, f"{root}/{entry}/{child}")
    zones: dict[tuple[int | None, str], Zone] = {}
    # MSR zones before MMIO ones, packages before their domains.
    found = {e: m for e in dirs if (m := _ZONE.match(e))}
    for entry in sorted(found, key=lambda e: ("mmio" in e, e.count(":"), e)):
        mmio, package, subzone = found[entry].groups()
        zone = _zone(dirs[entry], int(package), subzone, dirs, mmio=bool(mmio))
        if zone is not None:
            zones.setdefault((zone.socket, zone.domain), zone)
    if not zones:
        raise SensorUnavailable(f"no RAPL zones (intel-rapl:N) in the powercap tree at {where}", fix)
    return tuple(zones.values())


def _zone(path: str, package: int, subzone: str | None, dirs: dict[str, str], *, mmio: bool) -> Zone | None:
    is_domain = subzone is not None
    name = _read_text(f"{path}/name") or (f"package-{package}" if not is_domain else "")
    if not name or not os.path.exists(f"{path}/energy_uj"):
        return None
    max_text = _read_text(f"{path}/max_energy_range_uj")
    max_uj = _u64(max_text) or 0  # unknown: a decrease is never taken as a wrap
    max_w = _stated_max_watts(path) * STATED_POWER_MARGIN
    if name == "psys":
        return Zone(f"{path}/energy_uj", None, "psys", max_uj, max_w, package)
    match = _PACKAGE.match(name)
    if match:
        return Zone(f"{path}/energy_uj", int(match.group(1)), "package", max_uj, max_w, package)
    if not is_domain:
        return None
    # A domain belongs to the socket its parent package names.
    parent = dirs.get(f"intel-rapl{'-mmio' if mmio else ''}:{package}")
    parent_name = _read_text(f"{parent}/name") if parent else ""
    match = _PACKAGE.match(parent_name or "")
    socket = int(match.group(1)) if match else package
    return Zone(f"{path}/energy_uj", socket, name, max_uj, max_w, int(subzone or 0))


def _stated_max_watts(path: str) -> float:
    """The largest power a zone's constraints state (maximum or limit set), in W; 0 when none does."""
    try:
        names = [n for n in os.listdir(path) if _CONSTRAINT_POWER.match(n)]
    except OSError:
        return 0.0
    values = [_u64(_read_text(f"{path}/{n}")) for n in names]
    return max((v / 1e6 for v in values if v is not None), default=0.0)


def _u64(text: str) -> int | None:
    """A sysfs u64 as the kernel writes it (up to 20 ASCII digits); None for anything else: `isdigit`
    alone takes "²", which int() refuses, and 5,000 digits, which it refuses too."""
    return int(text) if len(text) <= 20 and text.isascii() and text.isdigit() else None


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return ""
