"""QEMU/KVM guests among processes: which processes are VMs, what they are called, and a safe folder name.

Works on `ProcessInfo.cmdline` (argv joined by spaces), so an argument is a whitespace-separated word.
"""

from __future__ import annotations

import hashlib
import re

from wattprobe.model import ProcessInfo

# Program names of QEMU system emulators: qemu-system-x86_64, qemu-system-aarch64, RHEL's qemu-kvm.
QEMU_PROGRAMS = ("qemu-system", "qemu-kvm")
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")
MAX_COMPONENT_BYTES = 128


def is_qemu(cmdline: str, exe: str = "") -> bool:
    """True for a QEMU guest process: its program (argv[0] or executable) is a qemu-system binary.

    Only the program counts, so `sudo qemu-system-x86_64 ...` or `grep qemu-system` are not VMs.
    Proxmox starts guests as /usr/bin/kvm, a link to qemu-system-x86_64: `exe` catches it.
    """
    words = cmdline.split(None, 1)
    programs = (words[0] if words else "", exe)
    return any(p.rsplit("/", 1)[-1].startswith(QEMU_PROGRAMS) for p in programs)


def vm_name(cmdline: str, pid: int) -> str:
    """The VM's name: `-name guest=NAME,...` (libvirt), else `-name NAME,...`, else a stable fallback.

    Fallbacks, stable for the VM's life: `vmid-N` (Proxmox `-id N`), `uuid-U` (`-uuid U`), `pid-PID`.
    The result is raw text: use `path_component()` before making it a file name.
    """
    words = cmdline.split()
    value = _option(words, "-name")
    if value:
        name = _name_from_option(value)
        if name:
            return name
    for flag, prefix in (("-id", "vmid"), ("-uuid", "uuid")):
        value = _option(words, flag)
        if value:
            return f"{prefix}-{value}"
    return f"pid-{pid}"


def guest_name(info: ProcessInfo) -> str | None:
    """The VM name of a process, or None when it is not a QEMU guest."""
    return vm_name(info.cmdline, info.pid) if is_qemu(info.cmdline, info.exe) else None


def _option(words: list[str], flag: str) -> str | None:
    """The word after `-flag` or `--flag`, if any."""
    for i, word in enumerate(words[:-1]):
        if word in (flag, "-" + flag):
            return words[i + 1]
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


def path_component(name: str) -> str:
    """`name` as one safe file name: never empty, `.`, `..`, hidden, or containing `/`.

    A name that had to change gets a short hash of the original, so that two different names can
    never share a folder (`a/b` and `a_b` stay apart) and the result is stable across runs.
    """
    safe = _UNSAFE.sub("_", name).lstrip(".")
    safe = safe.encode()[:MAX_COMPONENT_BYTES].decode(errors="ignore")
    if safe != name or not safe:
        digest = hashlib.sha256(name.encode(errors="surrogateescape")).hexdigest()[:8]
        safe = f"{safe or 'vm'}-{digest}"
    return safe
