"""`wattprobe run -o FILE` and `--report FILE` write as a shell's `>` would: a regular file whole (a
temporary file renamed over it), a symlink through to its target, a FIFO or a device as it is; a write
that fails is one line and a non-zero exit, the command's own status kept.

Devices are made in the test's directory (mknod) where this user may, so that a writer that replaces
them replaces a copy, never the machine's /dev/full.
"""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import agents
from tests.support.run import vm_tree, wattprobe_run

NULL, FULL = (1, 3), (1, 7)


@pytest.fixture
def tree(tmp_path):
    with vm_tree(tmp_path / "vm-tree") as tree:
        yield tree


def char_device(directory: Path, name: str, numbers: tuple[int, int]) -> Path:
    """A character device (major, minor) at directory/name, or the machine's /dev/name where this user
    may not make one (who then may not replace it either)."""
    path = directory / name
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(*numbers))
        os.close(os.open(path, os.O_WRONLY))
    except OSError:
        path.unlink(missing_ok=True)
        path = Path("/dev") / name
        assert not os.access(path.parent, os.W_OK), "may write in /dev but not make a device"
    return path


def errors(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("wattprobe: error:")]


@pytest.mark.parametrize("option", ["-o", "--report"])
@pytest.mark.parametrize(("command", "status"), [("exit 0", 1), ("exit 3", 3)])
def test_a_full_device_is_one_line_and_a_non_zero_exit_and_stays_a_device(
    tree, tmp_path, option, command, status
):
    full = char_device(tmp_path, "full", FULL)
    result = wattprobe_run(tree.root, "-s", "0.2", option, str(full), "--", "sh", "-c", command)
    assert result.returncode == status, result.stderr
    assert errors(result) == [f"wattprobe: error: cannot write {full}: No space left on device"]
    assert "exit status" in result.stderr  # the summary is printed all the same
    assert stat.S_ISCHR(os.stat(full).st_mode) and os.stat(full).st_rdev == os.makedev(*FULL)


def test_the_null_device_takes_the_figures_and_stays_a_device(tree, tmp_path):
    null = char_device(tmp_path, "null", NULL)
    result = wattprobe_run(tree.root, "-s", "0.2", "-o", str(null), "--report", str(null), "--", "true")
    assert result.returncode == 0 and not errors(result), result.stderr
    assert stat.S_ISCHR(os.stat(null).st_mode) and os.stat(null).st_rdev == os.makedev(*NULL)


def test_a_symlink_is_written_through_to_its_target_and_kept(tree, tmp_path):
    (tmp_path / "data").mkdir()
    target, link = tmp_path / "data" / "run.json", tmp_path / "latest.json"
    target.write_text("old")
    link.symlink_to(Path("data") / "run.json")
    dangling = tmp_path / "next.json"  # to a file that does not exist yet: made, as a shell would
    dangling.symlink_to(tmp_path / "data" / "next.json")
    result = wattprobe_run(
        tree.root, "-s", "0.2", "-o", str(link), "--report", str(dangling), "--", "sh", "-c", "exit 0"
    )
    assert result.returncode == 0 and not errors(result), result.stderr
    assert link.is_symlink() and os.readlink(link) == os.path.join("data", "run.json")
    assert json.loads(target.read_text())["exit_code"] == 0
    assert dangling.is_symlink() and "<html" in (tmp_path / "data" / "next.json").read_text().lower()
    assert sorted(os.listdir(tmp_path / "data")) == ["next.json", "run.json"]  # no temporary file left


def test_a_regular_file_is_replaced_whole_and_keeps_its_permissions(tree, tmp_path):
    out = tmp_path / "run.json"
    out.write_text("old figures")
    out.chmod(0o600)  # private figures stay private
    before = os.stat(out)
    with out.open() as reader:  # who reads the old file meanwhile reads it whole
        result = wattprobe_run(tree.root, "-s", "0.2", "-o", str(out), "--", "true")
        assert reader.read() == "old figures"
    assert result.returncode == 0 and not errors(result), result.stderr
    after = os.stat(out)
    assert after.st_ino != before.st_ino and stat.S_IMODE(after.st_mode) == 0o600
    assert json.loads(out.read_text())["exit_code"] == 0
    assert sorted(p for p in os.listdir(tmp_path) if p != "vm-tree") == ["run.json"]


def drain(fd: int) -> bytes:
    """What a non-blocking reader can read now."""
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:  # a writer is there, with nothing more yet
        pass
    return data


def test_a_fifo_s_reader_gets_the_figures(tree, tmp_path):
    fifo = tmp_path / "figures"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader there before the writer comes
    got = b""
    try:
        process = agents.start(
            agents.command("--vm", "run", "-s", "0.2", "-o", str(fifo), "--", "true"),
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SCAPHANDRE_POWERCAP_PATH": str(tree.root)},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ended = process.poll() is not None
            select.select([reader], [], [], 0.05)
            got += drain(reader)
            if ended:
                break
            time.sleep(0.02)  # no writer yet: the FIFO reads as at its end, at once
        _, err = process.communicate(timeout=10)
    finally:
        os.close(reader)
    assert process.returncode == 0 and "wattprobe: error" not in err, err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(got)["exit_code"] == 0


def test_a_fifo_without_a_reader_is_one_line_not_a_wait(tree, tmp_path):
    fifo = tmp_path / "figures"
    os.mkfifo(fifo)
    result = wattprobe_run(tree.root, "-s", "0.2", "-o", str(fifo), "--", "true", timeout=60)
    assert result.returncode == 1, result.stderr
    assert errors(result) == [
        f"wattprobe: error: cannot write {fifo}: no process reads this FIFO; start its reader first"
    ]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_socket_behind_a_link_stops_before_the_command_runs(tree, tmp_path):
    ran, sock, link = tmp_path / "ran", tmp_path / "sock", tmp_path / "link"
    os.mknod(sock, 0o666 | stat.S_IFSOCK)  # a unix socket's file: open() cannot write it
    link.symlink_to(sock)
    result = wattprobe_run(tree.root, "-o", str(link), "--", "touch", str(ran))
    assert result.returncode == 1, result.stderr
    assert errors(result) == [f"wattprobe: error: cannot write {link}: it is a socket"]
    assert not ran.exists() and stat.S_ISSOCK(os.stat(sock).st_mode) and link.is_symlink()
