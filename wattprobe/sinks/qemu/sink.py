"""`wattprobe qemu`: give every QEMU/KVM guest its share of host energy as a powercap tree it can read.

Per VM, under the output root (default /var/lib/libvirt/scaphandre):

    NAME/intel-rapl:0/{name=package-0, energy_uj, max_energy_range_uj}
    NAME/intel-rapl:0/intel-rapl:0:0/{name=core, energy_uj, max_energy_range_uj}
    NAME/intel-rapl:0:0 -> intel-rapl:0/intel-rapl:0:0   (where sysfs and Scaphandre guests look too)

`energy_uj` grows by the VM's share of host energy: its processes' power x the window, in µJ. The
fraction of a µJ not yet written is carried to the next step, so a small VM's share is never rounded
away. `core` grows by the VM's share of the CPU cores' power (its share of host power where the host
measures no core domain). Every value is written to a temporary file then renamed over the old one, so
a guest reads the old value or the new one, never a torn one. A zone appears all at once (built aside,
then renamed into place). A VM folder is left alone if it exists (it is usually a tmpfs mount point
shared with the guest, which libvirt needs to start the VM); once the VM has been gone for the grace
period the zone inside it is removed, and the folder too if this agent made it.

A guest can write into its folder, so everything below the root is walked with `nofollow`: a link
planted at any level is refused (one warning per VM), never followed, and the other VMs are served.

The guest runs `wattprobe --vm EXPORTER` with the folder mounted at /var/scaphandre.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from dataclasses import dataclass, field

from wattprobe.config.settings import option
from wattprobe.config.values import non_negative
from wattprobe.core.model import Frame
from wattprobe.errors import WattprobeError
from wattprobe.sinks import Context, Sink
from wattprobe.sinks.kit import options
from wattprobe.sinks.qemu import nofollow
from wattprobe.sinks.qemu.nofollow import Planted

NAME = "qemu"
HELP = "write each QEMU/KVM guest's share of host energy as a powercap tree the guest can read"

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/var/lib/libvirt/scaphandre"
ZONE = "intel-rapl:0"
DOMAIN = "intel-rapl:0:0"
# The reader (ours, and the kernel's convention) takes a decrease as a wrap at max_energy_range_uj and
# rejects a delta above half the range as a torn or reset value. 2**60 µJ (1.15e12 J) makes a wrap
# unreachable in practice (36 years for a 1 kW VM), makes any value that goes backwards (an agent
# restarted without its state) read as a huge delta that is rejected rather than a spike, and keeps
# prev + range far below 2**63 for readers that compute in signed 64-bit integers.
MAX_ENERGY_RANGE_UJ = 2**60


@dataclass(frozen=True)
class Cadence(options.Cadence):
    step: float | None = options.step(5.0, what="updates")


@dataclass(frozen=True)
class Settings:
    output_root: str = option(
        DEFAULT_ROOT, metavar="PATH", help=f"where the per-VM folders go (default {DEFAULT_ROOT})"
    )
    grace: float = option(
        120.0,
        parse=non_negative,
        metavar="SECONDS",
        help="seconds a VM must be gone before its tree is removed (default 120)",
    )


def create(settings: Settings, context: Context) -> Sink:
    return QemuSink(VmTrees(settings.output_root, grace_s=settings.grace))


class QemuSink:
    name = NAME

    def __init__(self, trees: VmTrees) -> None:
        self.trees = trees

    def write(self, frame: Frame) -> None:
        self.trees.update(frame)

    def close(self) -> None:
        pass


@dataclass
class EnergyCounter:
    """A µJ counter that carries the fraction not yet written."""

    uj: int = 0
    fraction: float = 0.0

    def add(self, uj: float) -> None:
        total = self.fraction + uj
        whole = int(total)
        self.uj += whole
        self.fraction = total - whole

    @property
    def text(self) -> str:
        return f"{self.uj % MAX_ENERGY_RANGE_UJ}\n"


@dataclass
class Vm:
    last_seen: float
    created: bool = False  # we made the folder (else the admin did, say for a tmpfs or libvirt: keep it)
    package: EnergyCounter = field(default_factory=EnergyCounter)
    core: EnergyCounter = field(default_factory=EnergyCounter)
    warned: bool = False  # a failure was logged as a warning; later ones go to the debug log
    built: bool = False  # this run built its zone once (a zone a guest keeps removing is logged once)


class VmTrees:
    """The per-VM trees under one root; `update()` once per Frame."""

    def __init__(self, root: str, *, grace_s: float = 120.0) -> None:
        _make_root(root)
        self.root = os.path.realpath(root)
        self.grace_s = grace_s
        self.vms: dict[str, Vm] = {}  # by folder name
        self.root_warned = False
        now = time.monotonic()
        try:
            with nofollow.open_root(self.root) as root_fd:
                for folder in sorted(os.listdir(root_fd)):  # trees of a previous run: continue or expire them
                    if not folder.startswith("."):
                        vm = _resume(root_fd, folder, now)
                        if vm is not None:
                            self.vms[folder] = vm
        except OSError as error:
            raise WattprobeError(
                f"cannot read {self.root}: {error.strerror}; choose another --output-root"
            ) from None

    def update(self, frame: Frame, now: float | None = None) -> None:
        """Add each running VM's share of the Frame's energy; remove trees of VMs gone too long."""
        now = time.monotonic() if now is None else now
        cores = [d.watts for s in frame.sockets for d in s.domains if d.name == "core"]
        core_watts = sum(cores)
        shares: dict[str, list[float]] = {}
        for consumer in frame.consumers:
            folder = consumer.info.vm_folder
            if folder is None:
                continue
            share = shares.setdefault(folder, [0.0, 0.0])
            share[0] += consumer.watts
            share[1] += (consumer.cpu_share * core_watts) if cores else consumer.watts
        try:
            with nofollow.open_root(self.root) as root_fd:
                for folder, (watts, core) in shares.items():
                    vm = self.vms.setdefault(folder, Vm(now))
                    vm.last_seen = now
                    vm.package.add(watts * frame.window_s * 1e6)
                    vm.core.add(core * frame.window_s * 1e6)
                    self._write(root_fd, folder, vm)
                for folder, vm in list(self.vms.items()):
                    if now - vm.last_seen > self.grace_s:
                        self._remove(root_fd, folder, vm)
        except OSError as error:  # the root itself: every VM waits for the next step
            level = logging.DEBUG if self.root_warned else logging.WARNING
            self.root_warned = True
            log.log(level, "qemu: cannot open %s: %s", self.root, error.strerror or error)

    def _write(self, root_fd: int, folder: str, vm: Vm) -> None:
        """Write the VM's counters, making its folder and building its zone first where there are none."""
        inside = self.root  # the folder being worked in, for the message
        try:
            if nofollow.make_dir(root_fd, folder):
                vm.created = True
            with nofollow.opendir(root_fd, folder) as vm_fd:
                inside = f"{self.root}/{folder}"
                if nofollow.lstat(vm_fd, ZONE) is None:
                    _build_zone(vm_fd, vm)
                    level = logging.DEBUG if vm.built else logging.INFO
                    log.log(level, "qemu: VM %s: tree built at %s", folder, inside)
                    vm.built = True
                with nofollow.opendir(vm_fd, ZONE) as zone_fd:
                    inside += f"/{ZONE}"
                    nofollow.write_atomic(zone_fd, "energy_uj", vm.package.text)
                    with nofollow.opendir(zone_fd, DOMAIN) as domain_fd:
                        inside += f"/{DOMAIN}"
                        nofollow.write_atomic(domain_fd, "energy_uj", vm.core.text)
        except Planted as error:
            self._failed(vm, folder, f"in {inside}, {error}: refused, nothing is written through it")
        except OSError as error:
            self._failed(vm, folder, f"cannot update its tree: {error}")

    def _remove(self, root_fd: int, folder: str, vm: Vm) -> None:
        """Remove the VM's zone (renamed aside first, so it vanishes at once), and its folder if we made it."""
        del self.vms[folder]
        try:
            with nofollow.opendir(root_fd, folder) as vm_fd:
                if nofollow.lstat(vm_fd, ZONE) is not None:
                    trash = nofollow.make_aside(vm_fd, ".gone.")
                    with nofollow.opendir(vm_fd, trash) as trash_fd:
                        os.rename(ZONE, ZONE, src_dir_fd=vm_fd, dst_dir_fd=trash_fd)
                    nofollow.remove_tree(vm_fd, trash)
                link = nofollow.lstat(vm_fd, DOMAIN)
                if link is not None and stat.S_ISLNK(link.st_mode):
                    os.unlink(DOMAIN, dir_fd=vm_fd)
                mounted = os.fstat(vm_fd).st_dev != os.fstat(root_fd).st_dev
            if vm.created and not mounted:
                os.rmdir(folder, dir_fd=root_fd)  # fails, and stays, if someone put something else there
        except OSError as error:
            log.warning("qemu: VM %s is gone but its tree could not all be removed: %s", folder, error)
        else:
            log.info("qemu: VM %s gone for %.0f s, tree removed", folder, self.grace_s)

    def _failed(self, vm: Vm, folder: str, message: str) -> None:
        level = logging.DEBUG if vm.warned else logging.WARNING
        vm.warned = True
        log.log(level, "qemu: VM %s: %s", folder, message)


def _make_root(root: str) -> None:
    """Make the output root if it is missing, but only its last folder: a parent that does not exist is
    a mistyped path or a host without libvirt, said rather than built. WattprobeError with the fix when
    `root` cannot be the root."""
    fix = "choose another --output-root"
    if not root:
        raise WattprobeError(f"the output root is empty: {fix}")
    parent = os.path.dirname(os.path.abspath(root))
    try:
        os.mkdir(root)
    except FileExistsError:
        pass
    except FileNotFoundError:
        raise WattprobeError(f"cannot create {root}: {parent} does not exist; create it, or {fix}") from None
    except OSError as error:
        raise WattprobeError(f"cannot create {root}: {error.strerror}; {_as_root()}{fix}") from None
    if not os.path.isdir(root):
        raise WattprobeError(f"{root} is not a directory: {fix}")
    if not os.access(root, os.W_OK | os.X_OK):
        read_only = os.statvfs(root).f_flag & os.ST_RDONLY
        why = "it is on a read-only file system; " if read_only else _as_root()
        raise WattprobeError(f"cannot write in {root}: {why}{fix}")


def _as_root() -> str:
    """Advice for a refusal of permission: running as root, unless the agent already does."""
    return "" if os.geteuid() == 0 else "run as root or "


def _resume(root_fd: int, folder: str, now: float) -> Vm | None:
    """The VM of a tree a previous run left, or None when `folder` holds no such tree."""
    try:
        with nofollow.opendir(root_fd, folder) as vm_fd, nofollow.opendir(vm_fd, ZONE) as zone_fd:
            package = nofollow.read_int(zone_fd, "energy_uj")
            core = _read_core(zone_fd)
    except OSError:
        return None
    if package is None:
        return None
    vm = Vm(now)
    vm.package.uj, vm.core.uj = package, core or 0
    return vm


def _read_core(zone_fd: int) -> int | None:
    try:
        with nofollow.opendir(zone_fd, DOMAIN) as domain_fd:
            return nofollow.read_int(domain_fd, "energy_uj")
    except OSError:
        return None


def _build_zone(vm_fd: int, vm: Vm) -> None:
    """Build the zone aside with the VM's current values, then rename it into place: it appears whole."""
    staging = nofollow.make_aside(vm_fd, ".zone.")
    try:
        with nofollow.opendir(vm_fd, staging) as zone_fd:
            _write_zone(zone_fd, "package-0", vm.package.text)
            nofollow.make_dir(zone_fd, DOMAIN)
            with nofollow.opendir(zone_fd, DOMAIN) as domain_fd:
                _write_zone(domain_fd, "core", vm.core.text)
        os.rename(staging, ZONE, src_dir_fd=vm_fd, dst_dir_fd=vm_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            nofollow.remove_tree(vm_fd, staging)
        raise
    if nofollow.lstat(vm_fd, DOMAIN) is None:
        os.symlink(f"{ZONE}/{DOMAIN}", DOMAIN, dir_fd=vm_fd)


def _write_zone(dir_fd: int, name: str, energy: str) -> None:
    nofollow.write_atomic(dir_fd, "name", f"{name}\n")
    nofollow.write_atomic(dir_fd, "max_energy_range_uj", f"{MAX_ENERGY_RANGE_UJ}\n")
    nofollow.write_atomic(dir_fd, "energy_uj", energy)
