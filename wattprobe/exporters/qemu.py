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

The guest runs `wattprobe --vm EXPORTER` with the folder mounted at /var/scaphandre.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from wattprobe.errors import WattprobeError
from wattprobe.model import Frame
from wattprobe.options import non_negative, positive
from wattprobe.vms import find_guest

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output-root",
        metavar="PATH",
        default=DEFAULT_ROOT,
        help=f"where the per-VM folders go (default {DEFAULT_ROOT})",
    )
    parser.add_argument("-s", "--step", type=positive, default=5, help="seconds between updates (default 5)")
    parser.add_argument(
        "--grace",
        type=non_negative,
        default=120,
        help="seconds a VM must be gone before its tree is removed (default 120)",
    )


def run(args: argparse.Namespace) -> int:
    from wattprobe.sampler import open_sampler

    trees = VmTrees(args.output_root, grace_s=args.grace)
    sampler = open_sampler(args)
    try:
        for frame in sampler.frames(args.step):
            trees.update(frame)
    finally:
        sampler.close()
    return 0


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
    path: str  # the VM's folder
    last_seen: float
    created: bool = False  # we made the folder (else the admin did, say for a tmpfs or libvirt: keep it)
    package: EnergyCounter = field(default_factory=EnergyCounter)
    core: EnergyCounter = field(default_factory=EnergyCounter)

    @property
    def zone(self) -> str:
        return f"{self.path}/{ZONE}"


class VmTrees:
    """The per-VM trees under one root; `update()` once per Frame."""

    def __init__(self, root: str, *, grace_s: float = 120.0) -> None:
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as error:
            raise WattprobeError(
                f"cannot create {root}: {error.strerror}; run as root or choose another --output-root"
            ) from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise WattprobeError(f"cannot write in {root}: run as root or choose another --output-root")
        self.root = os.path.realpath(root)
        self.grace_s = grace_s
        self.vms: dict[str, Vm] = {}
        now = time.monotonic()
        for entry in sorted(os.listdir(self.root)):  # trees of a previous run: continue them, or expire them
            path = f"{self.root}/{entry}"
            if not entry.startswith(".") and os.path.isfile(f"{path}/{ZONE}/energy_uj"):
                self.vms[entry] = self._resume(path, now)

    def update(self, frame: Frame, now: float | None = None) -> None:
        """Add each running VM's share of the Frame's energy; remove trees of VMs gone too long."""
        now = time.monotonic() if now is None else now
        cores = [d.watts for s in frame.sockets for d in s.domains if d.name == "core"]
        core_watts = sum(cores)
        shares: dict[str, list[float]] = {}
        for consumer in frame.consumers:
            guest = find_guest(consumer.info)
            if guest is None:
                continue
            share = shares.setdefault(guest.folder, [0.0, 0.0])
            share[0] += consumer.watts
            share[1] += (consumer.cpu_share * core_watts) if cores else consumer.watts
        for name, (watts, core) in shares.items():
            try:
                vm = self.vms.get(name) or self._create(name, now)
                self.vms[name] = vm
                vm.package.add(watts * frame.window_s * 1e6)
                vm.core.add(core * frame.window_s * 1e6)
                self._check_inside(vm.zone)
                _write_atomic(f"{vm.zone}/energy_uj", vm.package.text)
                _write_atomic(f"{vm.zone}/{DOMAIN}/energy_uj", vm.core.text)
                vm.last_seen = now
            except OSError as error:
                log.warning("qemu: cannot update the tree of VM %s: %s", name, error)
        for name, vm in list(self.vms.items()):
            if now - vm.last_seen > self.grace_s:
                self._remove(name, vm)

    def _resume(self, path: str, now: float) -> Vm:
        vm = Vm(path, now)
        vm.package.uj = _read_uj(f"{vm.zone}/energy_uj")
        vm.core.uj = _read_uj(f"{vm.zone}/{DOMAIN}/energy_uj")
        return vm

    def _create(self, name: str, now: float) -> Vm:
        path = f"{self.root}/{name}"
        if os.path.dirname(os.path.normpath(path)) != self.root:  # folder_name makes this impossible
            raise OSError(f"{path} is not directly inside {self.root}")
        created = not os.path.lexists(path)
        os.makedirs(path, mode=0o755, exist_ok=True)
        self._check_inside(path)
        if os.path.isfile(f"{path}/{ZONE}/energy_uj"):
            return self._resume(path, now)
        staging = tempfile.mkdtemp(prefix=".zone.", dir=path)
        try:
            os.chmod(staging, 0o755)
            _write_zone(staging, "package-0")
            os.mkdir(f"{staging}/{DOMAIN}", 0o755)
            _write_zone(f"{staging}/{DOMAIN}", "core")
            os.rename(staging, f"{path}/{ZONE}")
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if not os.path.lexists(f"{path}/{DOMAIN}"):
            os.symlink(f"{ZONE}/{DOMAIN}", f"{path}/{DOMAIN}")
        log.info("qemu: new VM %s, tree at %s", name, path)
        return Vm(path, now, created)

    def _remove(self, name: str, vm: Vm) -> None:
        """Remove the VM's zone (renamed aside first, so it vanishes at once), and its folder if we made it."""
        del self.vms[name]
        try:
            self._check_inside(vm.zone)
            trash = tempfile.mkdtemp(prefix=".gone.", dir=vm.path)
            os.rename(vm.zone, f"{trash}/{ZONE}")
            shutil.rmtree(trash)
            if os.path.islink(f"{vm.path}/{DOMAIN}"):
                os.unlink(f"{vm.path}/{DOMAIN}")
            if vm.created and not os.path.ismount(vm.path):
                os.rmdir(vm.path)  # fails, and stays, if someone put something else there
        except OSError as error:
            log.warning("qemu: VM %s is gone but its tree could not all be removed: %s", name, error)
        else:
            log.info("qemu: VM %s gone for %.0f s, tree removed", name, self.grace_s)

    def _check_inside(self, path: str) -> None:
        """Refuse a path that a symbolic link (say, planted by a guest) leads outside the root."""
        if os.path.realpath(path) != os.path.normpath(path) or not path.startswith(self.root + "/"):
            raise OSError(f"{path} leads outside {self.root} through a symbolic link")


def _write_zone(path: str, name: str) -> None:
    _write_atomic(f"{path}/name", f"{name}\n")
    _write_atomic(f"{path}/max_energy_range_uj", f"{MAX_ENERGY_RANGE_UJ}\n")
    _write_atomic(f"{path}/energy_uj", "0\n")


def _write_atomic(path: str, text: str) -> None:
    """Write a temporary file next to `path`, then rename it over `path`: readers never see a torn value."""
    directory, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_uj(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0
