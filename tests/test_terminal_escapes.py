"""A process cannot write to the user's terminal through wattprobe: an executable whose name and
arguments hold escape sequences (OSC window title, clear screen, a raw C1 CSI byte), a bidi override and
rich markup is shown escaped by `wattprobe stdout` (plain, and the live table on a terminal) and by
`wattprobe run`'s summary."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import agents
from tests.support.paths import REPO
from tests.support.powercap_tree import PowercapTree
from tests.support.run import vm_tree
from wattprobe.core.printable import printable

MARKER = "wattprobe-escape-test"
# OSC 2 (window title) ended by BEL, clear screen, a raw 8-bit CSI byte (not UTF-8: kept by
# surrogateescape), rich markup, a right-to-left override.
EVIL_NAME = os.fsdecode(b"py\x1b]2;PWNED\x07\x1b[2J\x9b2J[bold red]x[reverse]\xe2\x80\xaespoof")
EVIL_SHOWN = r"py\x1b]2;PWNED\x07\x1b[2J\x9b2J[bold red]x[reverse]\u202espoof"
EVIL_SHOWN_REPLACED = EVIL_SHOWN.replace(r"\x9b", "\ufffd")  # as /proc/PID/cmdline is decoded
# An argument that moves the cursor up, erases the line and writes a forged one.
EVIL_ARG = f"{MARKER}\x1b[1A\x1b[2K\rforged\n[blink]line[/]\u2066"
EVIL_ARG_SHOWN = rf"{MARKER}\x1b[1A\x1b[2K\rforged\n[blink]line[/]\u2066"
SPIN = "while :; do :; done"
# What rich itself writes on a terminal: SGR colours, cursor moves, line erases, cursor show/hide.
RICH_CSI = re.compile(r"\x1b\[[0-9;?]*[ABCDGHKJlhm]")


def test_printable_escapes_what_a_terminal_acts_on():
    assert printable("firefox --new-tab") == "firefox --new-tab"
    assert printable("naïve 名前 ✓") == "naïve 名前 ✓"
    assert printable("a\tb\nc\rd\x00\x1b\x7f\x85\x9b") == r"a\tb\nc\rd\x00\x1b\x7f\x85\x9b"
    assert (
        printable("\u202a\u202e\u2066\u2069\u200b\u2028\ufeff")
        == r"\u202a\u202e\u2066\u2069\u200b\u2028\ufeff"
    )
    assert printable(os.fsdecode(b"\xff\x9b")) == r"\xff\x9b"  # bytes kept by surrogateescape
    assert printable("\U000e0001") == r"\U000e0001"  # a tag character (format, invisible)
    assert printable(EVIL_NAME) == EVIL_SHOWN


def unsafe(text: str, allowed: str = "\n") -> list[str]:
    """The characters of `text` a terminal would act on or that hide or reorder text."""
    return [c for c in text if not c.isprintable() and c not in allowed]


@pytest.fixture
def evil(tmp_path: Path) -> Path:
    """A copy of bash named EVIL_NAME."""
    bash = shutil.which("bash") or "/bin/bash"
    path = tmp_path / EVIL_NAME
    shutil.copy(bash, path)
    return path


@contextlib.contextmanager
def spinning(evil: Path) -> Iterator[subprocess.Popen[bytes]]:
    with subprocess.Popen([evil, "-c", SPIN, EVIL_ARG]) as process:
        try:
            yield process
        finally:
            process.kill()


def test_stdout_plain_shows_names_escaped(evil: Path, powercap: PowercapTree):
    with spinning(evil), powercap.running(period_s=0.01):
        done = subprocess.run(
            agents.on_tree(powercap.root, "stdout", "-s", "0.5", "-t", "2", "-r", MARKER),
            cwd=REPO,
            capture_output=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    out = done.stdout.decode()  # strict: a lone surrogate or raw byte would not even decode
    assert not unsafe(out, "\n\t"), sorted(set(unsafe(out, "\n\t")))
    assert f'"{printable(str(evil.parent))}/{EVIL_SHOWN}"' in out, out


def read_terminal(argv: list[str], columns: int = 250) -> bytes:
    """What `argv` writes on a terminal `columns` wide, until it ends."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": "50"}
    env.pop("NO_COLOR", None)
    with subprocess.Popen(
        argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE, env=env
    ) as process:
        os.close(slave)
        chunks = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the writer side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(master)
        assert process.wait(timeout=10) == 0, (
            process.stderr.read().decode(errors="replace") if process.stderr else ""
        )
    return b"".join(chunks)


def test_stdout_table_shows_names_escaped(evil: Path, powercap: PowercapTree):
    with spinning(evil), powercap.running(period_s=0.01):
        raw = read_terminal(agents.on_tree(powercap.root, "stdout", "-s", "0.5", "-t", "2", "-r", MARKER))
    for sequence in (b"\x1b]", b"\x07", b"\x1b[2J", b"\x9b", b"\x1b[1A\x1b[2K\rforged"):
        assert sequence not in raw
    screen = RICH_CSI.sub("", raw.decode())
    assert not unsafe(screen, "\n\r"), sorted(set(unsafe(screen, "\n\r")))
    assert EVIL_SHOWN in screen, screen[-3000:]
    assert "[bold red]x[reverse]" in screen  # shown, not taken as markup


def test_run_summary_shows_the_command_escaped(evil: Path, tmp_path: Path):
    """`wattprobe run`'s summary (stderr) shows the command and its processes' command lines escaped."""
    spin_2s = "end=$((SECONDS + 2)); while [ $SECONDS -lt $end ]; do :; done"
    with vm_tree(tmp_path / "tree"):
        done = subprocess.run(
            agents.command("--vm", "run", "--", f"./{EVIL_NAME}", "-c", spin_2s, EVIL_ARG),
            cwd=evil.parent,  # argv[0] relative: the command line starts with the name, not a long path
            env={
                **os.environ,
                "SCAPHANDRE_POWERCAP_PATH": str(tmp_path / "tree"),
                "PYTHONPATH": str(REPO),
                "COLUMNS": "400",  # the table's lines unwrapped
            },
            capture_output=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    err = done.stderr.decode()
    assert not unsafe(err), sorted(set(unsafe(err)))
    assert f"wattprobe run: './{EVIL_SHOWN}' -c " in err, err  # the title: markup shown as text
    # The top processes, by command line.
    assert f"./{EVIL_SHOWN_REPLACED} -c end=" in err, err
