"""QEMU guest detection and naming (wattprobe.sources.identity.vms), from argv as /proc gives it."""

from __future__ import annotations

import contextlib
import os

import pytest

from tests.support.fake_qemu import fake_qemu
from wattprobe.core.model import ProcessInfo
from wattprobe.sources.identity.vms import find_guest, folder_name, is_qemu, vm_name, with_guest
from wattprobe.sources.procfs import ProcfsReader, key_pid

QEMU = "/usr/bin/qemu-system-x86_64"


@pytest.mark.parametrize(
    ("argv", "exe", "expected"),
    [
        ([QEMU, "-name", "guest=vm1", "-m", "2G"], QEMU, True),
        (["qemu-system-aarch64", "-M", "virt"], "", True),
        (["/usr/libexec/qemu-kvm", "-name", "guest=rhel"], "/usr/libexec/qemu-kvm", True),
        (["/usr/bin/kvm", "-id", "100", "-name", "web"], QEMU, True),  # Proxmox
        (["sudo", "qemu-system-x86_64", "-name", "guest=vm1"], "/usr/bin/sudo", False),
        (["grep", "qemu-system"], "/usr/bin/grep", False),
        ([], "", False),
    ],
)
def test_is_qemu(argv: list[str], exe: str, expected: bool) -> None:
    assert is_qemu(argv, exe) is expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-name", "guest=vm1,debug-threads=on", "-S"], "vm1"),  # libvirt
        (["-name", "guest=instance-0000002a,debug-threads=on"], "instance-0000002a"),  # OpenStack
        (["-id", "100", "-name", "web,debug-threads=on"], "web"),  # Proxmox
        (["-name", "myvm"], "myvm"),
        (["--name", "myvm,process=qemu-myvm"], "myvm"),
        (["-name", "guest=a,,b,debug-threads=on"], "a,b"),  # ',,' is a literal comma
        (["-name", "guest=a,,,,b,,"], "a,,b,"),
        (["-name", "guest=x\ny,debug-threads=on"], "x\ny"),  # one argv entry: the newline is kept
        (["-name", "guest=my vm,debug-threads=on"], "my vm"),  # and so is a space
        (["-name", "guest=../../etc,debug-threads=on"], "../../etc"),  # raw text: the folder is made safe
        (["-name", "a/b"], "a/b"),
        (["-id", "101", "-m", "1024"], "vmid-101"),
        (["-uuid", "5a1c0e2e-1f4b-4c1e-9d0e-000000000001"], "uuid-5a1c0e2e-1f4b-4c1e-9d0e-000000000001"),
        (["-name", "guest=,debug-threads=on"], "pid-77"),
        (["-m", "1G"], "pid-77"),
        (["-name"], "pid-77"),
        (["-append", "console=ttyS0 -name nope", "-m", "1G"], "pid-77"),  # inside another option's value
    ],
)
def test_vm_name(args: list[str], expected: str) -> None:
    assert vm_name([QEMU, *args], 77) == expected


def test_a_process_info_without_argv_is_read_from_its_cmdline() -> None:
    info = with_guest(ProcessInfo(77, "qemu", "", f"{QEMU} -name guest=web01,debug-threads=on", "/", None))
    assert (info.vm, info.vm_folder) == ("web01", "web01")
    assert find_guest(["bash", "-c", "qemu-system"], "/usr/bin/bash", 78) is None


def test_names_come_whole_from_a_real_process_argv() -> None:
    """/proc/PID/cmdline read by the agent's own reader: a newline, spaces and `,,` survive."""
    options = ["guest=x\ny,debug-threads=on", "guest=x", "guest=my vm,, 2,debug-threads=on"]
    with contextlib.ExitStack() as stack:
        processes = [stack.enter_context(fake_qemu("-name", option)) for option in options]
        reader = ProcfsReader()
        _, tasks = reader.scan()
        guests = []
        for process in processes:
            key = next(k for k in tasks if key_pid(k) == process.pid)
            info = reader.process(key)[0]
            assert info.argv[0] == "qemu-system-x86_64" and info.argv[3] == "-name"
            guests.append(info)
        reader.close()
    assert [g.vm for g in guests] == ["x\ny", "x", "my vm, 2"]  # the reader names each VM once
    folders = [g.vm_folder for g in guests]
    assert folders[1:] == ["x", "my vm, 2"]  # plain names are their own folder
    assert folders[0].startswith("x_y~")  # the newline is replaced, and the name hashed: not x's folder


@pytest.mark.parametrize(
    "name", ["..", ".", "", "../../etc", "/etc/passwd", "a/b", ".hidden", "x\ny", "tab\there", "é" * 200]
)
def test_folder_name_is_one_safe_component(name: str) -> None:
    safe = folder_name(name)
    assert safe and safe not in (".", "..")
    assert "/" not in safe and "\0" not in safe and "\n" not in safe and "\t" not in safe
    assert not safe.startswith(".")
    assert os.path.basename(safe) == safe
    assert len(safe.encode()) <= 145 < os.pathconf("/", "PC_NAME_MAX")


def test_folder_name_keeps_plain_names_and_is_stable_across_runs() -> None:
    for plain in ("vm1", "web-01.example_com", "my vm", "instance-0000002a", "pidgin", "pid-controller"):
        assert folder_name(plain) == plain
    assert folder_name("a/b") == "a_b~c14cddc033f64b9d"  # SHA-256: the same in every run and release
    assert folder_name("x\ny") == "x_y~9ab9de25768ac172"


def test_no_two_names_share_a_folder() -> None:
    """Each way a changed name could meet another: the replaced character, the literal result of a
    replacement, a name shaped like a fallback, a cut at the length limit, `.` stripping."""
    given = [
        "a/b", "a_b", "a\\b", "a\nb", folder_name("a/b"), "a~b",
        "pid-7", "vmid-100", "uuid-1234",
        "é" * 200, "é" * 200 + "x", "..x", ".x", "x", "..", ".", "vm",
    ]  # fmt: skip
    fallbacks = ["pid-7", "vmid-100", "uuid-1234", "uuid-../x", "uuid-.._x"]
    folders = [folder_name(n) for n in given] + [folder_name(n, given=False) for n in fallbacks]
    assert len(set(folders)) == len(folders), folders
    assert folder_name("pid-7", given=False) == "pid-7"  # an unnamed VM's folder, as before
