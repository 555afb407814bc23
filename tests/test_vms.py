"""QEMU guest detection and naming (wattprobe.vms)."""

from __future__ import annotations

import os

import pytest

from wattprobe.vms import is_qemu, path_component, vm_name


@pytest.mark.parametrize(
    ("cmdline", "exe", "expected"),
    [
        ("/usr/bin/qemu-system-x86_64 -name guest=vm1 -m 2G", "/usr/bin/qemu-system-x86_64", True),
        ("qemu-system-aarch64 -M virt", "", True),
        ("/usr/libexec/qemu-kvm -name guest=rhel", "/usr/libexec/qemu-kvm", True),
        ("/usr/bin/kvm -id 100 -name web", "/usr/bin/qemu-system-x86_64", True),  # Proxmox
        ("sudo qemu-system-x86_64 -name guest=vm1", "/usr/bin/sudo", False),
        ("grep qemu-system", "/usr/bin/grep", False),
        ("", "", False),
    ],
)
def test_is_qemu(cmdline: str, exe: str, expected: bool) -> None:
    assert is_qemu(cmdline, exe) is expected


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        ("qemu-system-x86_64 -name guest=vm1,debug-threads=on -S", "vm1"),  # libvirt
        (
            "qemu-system-x86_64 -name guest=instance-0000002a,debug-threads=on",
            "instance-0000002a",
        ),  # OpenStack
        ("/usr/bin/kvm -id 100 -name web,debug-threads=on", "web"),  # Proxmox
        ("qemu-system-x86_64 -name myvm", "myvm"),
        ("qemu-system-x86_64 --name myvm,process=qemu-myvm", "myvm"),
        ("qemu-system-x86_64 -name guest=a,,b,debug-threads=on", "a,b"),  # ',,' is a literal comma
        ("/usr/bin/kvm -id 101 -m 1024", "vmid-101"),
        (
            "qemu-system-x86_64 -uuid 5a1c0e2e-1f4b-4c1e-9d0e-000000000001 -m 1G",
            "uuid-5a1c0e2e-1f4b-4c1e-9d0e-000000000001",
        ),
        ("qemu-system-x86_64 -name guest=,debug-threads=on", "pid-77"),
        ("qemu-system-x86_64 -m 1G", "pid-77"),
        ("qemu-system-x86_64 -name", "pid-77"),
    ],
)
def test_vm_name(cmdline: str, expected: str) -> None:
    assert vm_name(cmdline, 77) == expected


@pytest.mark.parametrize(
    "name", ["..", ".", "", "../../etc", "/etc/passwd", "a/b", ".hidden", "x\ny", "é" * 200]
)
def test_path_component_is_one_safe_component(name: str) -> None:
    safe = path_component(name)
    assert safe and safe not in (".", "..")
    assert "/" not in safe and "\0" not in safe and "\n" not in safe
    assert not safe.startswith(".")
    assert os.path.basename(safe) == safe
    assert len(safe.encode()) <= 140


def test_path_component_keeps_plain_names_and_separates_mangled_ones() -> None:
    assert path_component("vm1") == "vm1"
    assert path_component("web-01.example_com") == "web-01.example_com"
    assert path_component("a/b") != path_component("a_b")
    assert path_component("a/b") == path_component("a/b")  # stable across runs
