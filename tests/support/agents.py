"""wattprobe as users run it: `python -m wattprobe ...` in a subprocess, from the repository.

`command()` and `on_tree()` make command lines, `run()` runs one to its end, `start()`/`stop()` and
`running()` manage a long-lived one (any server too), `serving()` a Prometheus agent until it serves.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.paths import REPO
from tests.support.waiting import wait_for

SERVING = re.compile(r"serving metrics on (\S+)")


def command(*args: str) -> list[str]:
    """`python -m wattprobe ARGS`."""
    return [sys.executable, "-m", "wattprobe", *args]


def on_tree(powercap_root: Path | str, *args: str) -> list[str]:
    """The command line of an agent that reads a synthetic powercap tree: `wattprobe -s powercap_rapl
    --powercap-root ROOT ARGS`."""
    return command("-s", "powercap_rapl", "--powercap-root", str(powercap_root), *args)


def run(argv: list[str], *, timeout: float = 30, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run `argv` from the repository to its end; its output captured as text."""
    kwargs.setdefault("cwd", REPO)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def start(argv: list[str], **popen: Any) -> subprocess.Popen[Any]:
    """Start `argv` from the repository (Popen's keyword arguments as given)."""
    popen.setdefault("cwd", REPO)
    return subprocess.Popen(argv, **popen)


def stop(process: subprocess.Popen[Any], *, signum: int = signal.SIGTERM, timeout_s: float = 10.0) -> str:
    """Send `signum` unless it has ended, wait for it (SIGKILL after `timeout_s`); its stderr, if piped."""
    if process.poll() is None:
        process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err.decode() if isinstance(err, bytes) else err or ""


@contextlib.contextmanager
def running(argv: list[str], **popen: Any) -> Iterator[subprocess.Popen[Any]]:
    """`argv` started for the block, stopped at its end (SIGTERM, then SIGKILL)."""
    process = start(argv, **popen)
    try:
        yield process
    finally:
        stop(process, timeout_s=5)


@dataclass
class Served:
    process: subprocess.Popen[Any]
    url: str  # of the metrics
    log_path: Path  # its stderr
    final_log: list[str] | None = None  # its stderr once it stopped (a temporary log is gone by then)

    @property
    def log(self) -> list[str]:
        """The lines it wrote on stderr so far."""
        return self.final_log if self.final_log is not None else self.log_path.read_text().splitlines()


def wait_for_url(process: subprocess.Popen[Any], log_path: Path, timeout_s: float = 60.0) -> str:
    """The metrics URL the agent says it serves on stderr (written to `log_path`)."""
    match = wait_for(
        lambda: SERVING.search(log_path.read_text()),
        timeout_s,
        lambda: f"the agent to serve metrics; it said: {log_path.read_text()[-2000:]}",
        alive=process,
    )
    return match.group(1)


@contextlib.contextmanager
def serving(argv: list[str], log_path: Path | None = None, timeout_s: float = 60.0) -> Iterator[Served]:
    """A Prometheus agent (`argv`) from the moment it serves to the end of the block; its stderr goes to
    `log_path` (a temporary file by default)."""
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "agent.log"
        log = stack.enter_context(open(log_path, "w"))
        process = start(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        served = Served(process, "", log_path)

        def stop_and_keep_log() -> None:
            stop(process, timeout_s=5)
            served.final_log = served.log

        stack.callback(stop_and_keep_log)
        served.url = wait_for_url(process, log_path, timeout_s)
        yield served
