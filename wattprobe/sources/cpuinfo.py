"""What the CPU is, from /proc/cpuinfo: its model name, its sockets, and whether a hypervisor runs it.

The estimate uses it to pick a published curve for this CPU, and `calibrate` to say on which CPU a
model was made (a model is another CPU's when the names differ).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CpuIdentity:
    model_name: str | None  # "model name" of the first CPU; None where the file does not say (ARM)
    sockets: int  # distinct "physical id" values (1 where the file gives none)
    virtual: bool  # the "hypervisor" flag: a VM's vCPUs, which share a host's sockets with others


UNKNOWN = CpuIdentity(None, 1, False)


def read_cpu_identity(procfs_root: str = "/proc") -> CpuIdentity:
    """The CPU as /proc/cpuinfo describes it; UNKNOWN where the file cannot be read."""
    try:
        with open(f"{procfs_root}/cpuinfo", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return UNKNOWN
    model: str | None = None
    sockets: set[str] = set()
    virtual = False
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "model name" and model is None and value:
            model = " ".join(value.split())
        elif key == "physical id":
            sockets.add(value)
        elif key == "flags" and not virtual:
            virtual = "hypervisor" in value.split()
    return CpuIdentity(model, max(1, len(sockets)), virtual)
