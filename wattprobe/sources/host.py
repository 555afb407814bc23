"""What the host does besides drawing power: load, memory, swap, CPU frequency, disks.

Scaphandre's dashboards show these beside power; `HostReader.read()` gives them once per
measurement, from small files kept open (/proc/loadavg, /proc/meminfo, each CPU's scaling_cur_freq)
and, for disks, the mount table and one statvfs per disk file system. Every root is a parameter.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

from wattprobe.core.model import CpuInfo, Disk, HostFacts
from wattprobe.sources.kept_files import KeptFiles
from wattprobe.sources.mounts import unescape

# File systems that live on a disk (not tmpfs, proc, overlay, network shares...).
DISK_FILE_SYSTEMS = frozenset(
    [
        "ext2",
        "ext3",
        "ext4",
        "xfs",
        "btrfs",
        "zfs",
        "f2fs",
        "vfat",
        "exfat",
        "ntfs",
        "ntfs3",
        "fuseblk",
        "jfs",
        "reiserfs",
        "bcachefs",
        "nilfs2",
        "hfsplus",
    ]
)
_MEMINFO = {
    b"MemTotal:": "memory_total_bytes",
    b"MemAvailable:": "memory_available_bytes",
    b"MemFree:": "memory_free_bytes",
    b"SwapTotal:": "swap_total_bytes",
    b"SwapFree:": "swap_free_bytes",
}


@dataclass(frozen=True, slots=True)
class _Device:
    kind: str
    removable: bool


class HostReader:
    """Reads HostFacts; files it needs each time stay open, facts that never change are kept."""

    def __init__(self, procfs_root: str = "/proc", sysfs_root: str = "/sys") -> None:
        self.procfs_root = procfs_root
        self.sysfs_root = sysfs_root
        self._files = KeptFiles()
        cpus = f"{sysfs_root}/devices/system/cpu"
        try:
            names = sorted(n for n in os.listdir(cpus) if n.startswith("cpu") and n[3:].isdigit())
        except OSError:
            names = []
        self._freq_files = [f"{cpus}/{n}/cpufreq/scaling_cur_freq" for n in names]
        self._freq_files = [f for f in self._freq_files if os.path.exists(f)]
        # The host's mount table (PID 1's), as a container with the host's /proc mounted sees it too.
        self._mounts = next(
            (p for p in (f"{procfs_root}/1/mounts", f"{procfs_root}/mounts") if os.access(p, os.R_OK)), None
        )
        self._devices: dict[str, _Device] = {}
        self.cpus = read_cpus(procfs_root)  # never changes while the host runs

    def read(self) -> HostFacts | None:
        """The host's facts now; None when /proc/loadavg or /proc/meminfo cannot be read (or hold what
        no kernel writes: a negative, infinite or NaN figure)."""
        try:
            load = self._read(f"{self.procfs_root}/loadavg").split()
            load_avg = (float(load[0]), float(load[1]), float(load[2]))
            memory = {name: 0 for name in _MEMINFO.values()}
            for line in self._read(f"{self.procfs_root}/meminfo", 4096).split(b"\n"):
                key, _, rest = line.partition(b" ")
                if key in _MEMINFO:
                    memory[_MEMINFO[key]] = int(rest.split()[0]) * 1024  # kB
            if not all(0 <= x < math.inf for x in (*load_avg, *memory.values())):
                raise ValueError("not a load or a size")
            return HostFacts(
                load_avg=load_avg,
                cpu_mhz=self._cpu_mhz(),
                disks=self._disks(),
                cpus=self.cpus,
                **memory,
            )
        except (OSError, ValueError, IndexError):
            return None

    def _read(self, path: str, size: int = 256) -> bytes:
        return self._files.read(path, size)

    def _cpu_mhz(self) -> float | None:
        """The mean of the CPUs' current frequencies (kHz in sysfs), else /proc/cpuinfo's "cpu MHz"."""
        khz = []
        for path in self._freq_files:
            with contextlib.suppress(OSError, ValueError):
                khz.append(int(self._read(path, 32)))
        if khz:
            return _frequency(sum(khz) / len(khz) / 1000)
        try:
            with open(f"{self.procfs_root}/cpuinfo", "rb") as f:
                mhz = [float(line.split(b":")[1]) for line in f if line.startswith(b"cpu MHz")]
        except (OSError, ValueError, IndexError):
            return None
        return _frequency(sum(mhz) / len(mhz)) if mhz else None

    def _disks(self) -> tuple[Disk, ...]:
        if self._mounts is None:
            return ()
        try:
            with open(self._mounts, "rb") as f:
                table = f.read().decode(errors="replace")
        except OSError:
            return ()
        disks, seen = [], set()
        for line in table.splitlines():
            fields = line.split()
            if len(fields) < 3 or fields[2] not in DISK_FILE_SYSTEMS or fields[0] in seen:
                continue
            device, mount_point = fields[0], unescape(fields[1])
            try:
                stats = os.statvfs(mount_point)
            except (OSError, ValueError):
                continue  # not visible from here (another mount namespace), or not a path (a NUL in it)
            seen.add(device)
            facts = self._device(device)
            disks.append(
                Disk(
                    name=device,
                    mount_point=mount_point,
                    file_system=fields[2],
                    kind=facts.kind,
                    removable=facts.removable,
                    total_bytes=stats.f_blocks * stats.f_frsize,
                    available_bytes=stats.f_bavail * stats.f_frsize,
                )
            )
        return tuple(disks)

    def _device(self, device: str) -> _Device:
        """Whether a block device spins and can be removed (its whole disk's, for a partition)."""
        if device not in self._devices:
            block = f"{self.sysfs_root}/class/block/{os.path.basename(device)}"
            if os.path.exists(f"{block}/partition"):
                block = os.path.dirname(os.path.realpath(block))
            rotational = _first_line(f"{block}/queue/rotational")
            kind = {"0": "SSD", "1": "HDD"}.get(rotational, "Unknown")
            self._devices[device] = _Device(kind, _first_line(f"{block}/removable") == "1")
        return self._devices[device]

    def close(self) -> None:
        self._files.close()


def _frequency(mhz: float) -> float | None:
    """A mean frequency, or None where the files held a negative, infinite or NaN one."""
    return mhz if 0 <= mhz < math.inf else None


def _first_line(path: str) -> str:
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return ""


_CPU_FIELDS = {"processor": "processor", "vendor_id": "vendor_id", "model name": "model_name",
    "physical id": "physical_id", "core id": "core_id"}  # fmt: skip


def read_cpus(procfs_root: str) -> tuple[CpuInfo, ...]:
    """The logical CPUs /proc/cpuinfo lists (an x86 layout; what another layout lacks is "" or -1);
    () when it cannot be read."""
    try:
        with open(f"{procfs_root}/cpuinfo", "rb") as f:
            text = f.read(1 << 22).decode(errors="replace")
    except OSError:
        return ()
    cpus = []
    for block in text.split("\n\n"):
        found: dict[str, str] = {}
        for line in block.splitlines():
            key, colon, value = line.partition(":")
            name = _CPU_FIELDS.get(key.strip())
            if colon and name:
                found[name] = value.strip()
        number = found.get("processor", "")
        if not number.isdigit():
            continue
        cpus.append(
            CpuInfo(
                processor=int(number),
                vendor_id=found.get("vendor_id", ""),
                model_name=found.get("model_name", ""),
                physical_id=_int(found.get("physical_id")),
                core_id=_int(found.get("core_id")),
            )
        )
    return tuple(cpus)


def _int(text: str | None) -> int:
    return int(text) if text is not None and text.isdigit() else -1
