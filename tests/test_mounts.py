"""The mount table reader, on a synthetic /proc/self/mountinfo and on this machine's."""

from __future__ import annotations

import os

import pytest

from wattprobe.sources.mounts import Mount, filesystem_of, mounts

TABLE = """\
22 1 0:21 / / rw,relatime - ext4 /dev/vda rw
23 22 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
24 23 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
25 22 0:24 /exports /var/scaph\\040andre rw - virtiofs scaphandre rw
26 22 0:25 / /srv rw - tmpfs tmpfs rw
27 22 0:26 / /srv rw - xfs /dev/vdb rw
"""


@pytest.fixture
def procfs(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text(TABLE)
    return str(tmp_path)


def test_each_mount_with_its_root_and_type_and_escapes_undone(procfs):
    assert mounts(procfs)[3] == Mount("/var/scaph andre", "/exports", "virtiofs")
    assert [m.fstype for m in mounts(procfs)] == ["ext4", "sysfs", "cgroup2", "virtiofs", "tmpfs", "xfs"]


def test_a_path_is_on_the_deepest_mount_above_it_and_the_last_mounted_there(procfs):
    assert filesystem_of("/sys/class/powercap/intel-rapl:0", procfs) == "sysfs"
    assert filesystem_of("/sys/fs/cgroup/unified/system.slice", procfs) == "cgroup2"
    assert filesystem_of("/sys/fsx", procfs) == "sysfs"  # a prefix of a mount point's name is not in it
    assert filesystem_of("/var/scaph andre/intel-rapl:0", procfs) == "virtiofs"
    assert filesystem_of("/srv/tree", procfs) == "xfs"  # mounted over the tmpfs
    assert filesystem_of("/var/lib", procfs) == "ext4"


def test_no_table_says_nothing(tmp_path):
    assert mounts(str(tmp_path)) == []
    assert filesystem_of("/sys", str(tmp_path)) is None


@pytest.mark.skipif(not os.path.isdir("/sys/class"), reason="no sysfs here")
def test_this_machine_s_sysfs_and_a_temporary_directory(tmp_path):
    assert filesystem_of("/sys/class") == "sysfs"
    assert filesystem_of(str(tmp_path)) not in (None, "sysfs")
