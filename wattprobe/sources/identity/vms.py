"""QEMU/KVM guests among processes: which processes are VMs, what they are called, and their folder name.

Works on the process's argv (`ProcessInfo.argv`: the NUL-separated entries of /proc/PID/cmdline), so
a name keeps the spaces, newlines and commas it was given. A ProcessInfo made without argv (built by
hand, not read from /proc) is read from its cmdline split on whitespace instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from wattprobe.core.model import ProcessInfo

# Program names of QEMU system emulators: qemu-system-x86_64, qemu-system-aarch64, RHEL's qemu-kvm.
QEMU_PROGRAMS = ("qemu-system", "qemu-kvm")
# Replaced in folder names: what cannot or should not be in one (`/`, `\`, control characters), and
# `~`, which only ever appears in a folder name to mark the hash of a name that had to change.
_REPLACED = re.compile(r"[/\\\x00-\x1f\x7f~]")
# Names the fallbacks make: a VM given such a name by `-name` gets a hashed folder, not the fallback's.
_FALLBACK = re.compile(r"vmid-|uuid-|pid-[0-9]+\Z")
MAX_COMPONENT_BYTES = 128  # of the readable part; a folder name is at most this + 17 bytes
HASH_HEX = 16  # 64 bits of SHA-256: finding a second name for a VM's folder is out of reach


@dataclass(frozen=True, slots=True)
class Guest:
    """A VM as its QEMU process names it."""

    name: str  # raw text: `-name`'s, else the fallback vmid-N, uuid-U or pid-PID
    given: bool  # True when the name came from `-name`; False for a fallback

    @property
    def folder(self) -> str:
        """A folder name of its own: two different guests never share one, and it is the same every run."""
        return folder_name(self.name, given=self.given)


def argv_of(info: ProcessInfo) -> Sequence[str]:
    """The process's argv; split from its cmdline only for a ProcessInfo made without one."""
    return info.argv or info.cmdline.split()


def is_qemu(argv: Sequence[str], exe: str = "") -> bool:
    """True for a QEMU guest process: its program (argv[0] or executable) is a qemu-system binary.

    Only the program counts, so `sudo qemu-system-x86_64 ...` or `grep qemu-system` are not VMs.
    Proxmox starts guests as /usr/bin/kvm, a link to qemu-system-x86_64: `exe` catches it.
    """
    programs = (argv[0] if argv else "", exe)
    return any(p.rsplit("/", 1)[-1].startswith(QEMU_PROGRAMS) for p in programs)


def parse_guest(argv: Sequence[str], pid: int) -> Guest:
    """The VM's name: `-name guest=NAME,...` (libvirt), else `-name NAME,...`, else a stable fallback.

    Fallbacks, stable for the VM's life: `vmid-N` (Proxmox `-id N`), `uuid-U` (`-uuid U`), `pid-PID`.
    """
    value = _option(argv, "-name")
    if value:
        name = _name_from_option(value)
        if name:
            return Guest(name, given=True)
    for flag, prefix in (("-id", "vmid"), ("-uuid", "uuid")):
        value = _option(argv, flag)
        if value:
            return Guest(f"{prefix}-{value}", given=False)
    return Guest(f"pid-{pid}", given=False)


def vm_name(argv: Sequence[str], pid: int) -> str:
    """The VM's name as raw text (see `parse_guest`); `Guest.folder` is the one to make paths with."""
    return parse_guest(argv, pid).name


def find_guest(argv: Sequence[str], exe: str, pid: int) -> Guest | None:
    """The VM a process runs, or None when it is not a QEMU guest."""
    return parse_guest(argv, pid) if is_qemu(argv, exe) else None


def with_guest(info: ProcessInfo) -> ProcessInfo:
    """`info` with its VM name and folder filled in (the /proc reader fills them when it reads a process;
    this is for a ProcessInfo made another way)."""
    guest = find_guest(argv_of(info), info.exe, info.pid)
    return dataclasses.replace(info, vm=guest.name, vm_folder=guest.folder) if guest else info


def _option(argv: Sequence[str], flag: str) -> str | None:
    """The argument after `-flag` or `--flag`, if any."""
    for i in range(1, len(argv) - 1):
        if argv[i] in (flag, "-" + flag):
            return argv[i + 1]
    return None


def _name_from_option(value: str) -> str:
    """NAME from `guest=NAME,debug-threads=on` or `NAME,process=...`; QEMU writes a literal comma as `,,`."""
    parts = [p.replace("\0", ",") for p in value.replace(",,", "\0").split(",")]
    for i, part in enumerate(parts):
        key, eq, rest = part.partition("=")
        if key == "guest" and eq:
            return rest
        if i == 0 and not eq:
            return part
    return ""


def folder_name(name: str, *, given: bool = True) -> str:
    """`name` as one safe file name: never empty, `.`, `..`, hidden, over 145 bytes, or containing `/`.

    A name that is already safe is kept as it is. Any other gets `~` and 64 bits of a hash of the
    original: `~` never survives in a kept name, so a changed name can never meet a kept one
    (`a/b` -> `a_b~<hash>`, while a VM named `a_b~<hash>` gets `a_b_<hash>~<its own hash>`), and
    the result is the same on every run. A VM that `-name` calls like a fallback (`pid-7`) is
    hashed too, so it cannot take the folder of an unnamed VM (`given=False`).
    """
    safe = _REPLACED.sub("_", name).lstrip(".")
    safe = safe.encode(errors="replace")[:MAX_COMPONENT_BYTES].decode(errors="ignore")
    if safe == name and safe and not (given and _FALLBACK.match(name)):
        return safe
    key = name if given else "\0" + name  # no argv entry holds a NUL: a given name never starts so
    digest = hashlib.sha256(key.encode(errors="surrogatepass")).hexdigest()[:HASH_HEX]
    return f"{safe or 'vm'}~{digest}"
