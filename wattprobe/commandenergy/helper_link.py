"""The caller's end of the measuring helper (`commandenergy.helper`): one helper process per Python
process, started on first use and reused, spoken to in lines of JSON over two pipes.

The caller keeps two descriptors (the pipes' ends) and no thread: a request is a line written and a
line read back, under a lock, so that threads, nested and concurrent measurements share the one
helper. The helper is started in a session of its own (a Ctrl-C at the terminal is the caller's to
handle, not the helper's) and ends when its input closes, which the kernel does when the caller's
process ends, however it ends. A process forked from the caller (without exec) forgets the
inherited ends, so that its parent's helper still ends with its parent, and starts its own.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import threading
from typing import Any

from wattprobe.commandenergy.meter import ProcessEnergy, Step, Tally
from wattprobe.errors import WattprobeError

MODULE = "wattprobe.commandenergy.helper"
# What opening the sources reads from the environment (sources/__init__.py, identity/kubernetes.py):
# sent with each measurement, so that the helper opens them as the caller would now. The rest of the
# environment is the caller's when the helper started.
ENVIRONMENT = ("SCAPHANDRE_POWERCAP_PATH", "NODE_NAME", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
# The directory that holds the `wattprobe` package: the helper imports this copy, whatever sys.path
# the caller built.
_HOME = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class HelperLink:
    """The pipes to one helper process; `request()` is one round trip."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._pending = b""
        self._ids = itertools.count(1)

    @property
    def pid(self) -> int | None:
        """The helper's pid, once started (None before, or after it ended)."""
        return None if self._process is None else self._process.pid

    def new_id(self) -> int:
        return next(self._ids)

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send `message`, return the helper's answer; WattprobeError, one line, when the helper cannot
        start or ended (the next request starts a new one)."""
        line = (json.dumps(message, default=str) + "\n").encode()
        with self._lock:
            process = self._process if self._process is not None else self._start()
            try:
                _write_all(process, line)
                reply: dict[str, Any] = json.loads(self._read_line(process))
            except (OSError, ValueError) as error:  # ValueError: not an answer, the helper is not well
                self._drop()
                status = process.poll()
                why = f"exit status {status}" if status is not None else str(error) or repr(error)
                raise WattprobeError(f"the measuring process ended ({why})") from None
        return reply

    def _start(self) -> subprocess.Popen[bytes]:
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": _HOME + (os.pathsep + path if path else "")}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", MODULE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,  # raw pipes: nothing buffered that a fork could write twice
                env=env,
                start_new_session=True,
            )
        except (OSError, ValueError) as error:
            raise WattprobeError(
                f"cannot start the measuring process ({sys.executable or 'no Python executable'}: "
                f"{getattr(error, 'strerror', None) or error})"
            ) from None
        self._pending = b""
        return self._process

    def _read_line(self, process: subprocess.Popen[bytes]) -> bytes:
        assert process.stdout is not None
        while b"\n" not in self._pending:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                raise _Ended("no answer")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def _drop(self) -> None:
        """Close the pipes to a helper that ended (reaping it), or that belongs to the parent."""
        process, self._process = self._process, None
        if process is None:
            return
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        if os.getpid() == self.owner:
            process.poll()

    def forget(self) -> None:
        """In a forked child: close the inherited ends (the parent's helper is the parent's)."""
        process, self._process = self._process, None
        if process is not None:
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
            process.returncode = 0  # not this process's child: never waited for here


class _Ended(OSError):
    """The helper's output closed: it ended."""


def _write_all(process: subprocess.Popen[bytes], data: bytes) -> None:
    assert process.stdin is not None
    fd = process.stdin.fileno()
    while data:
        data = data[os.write(fd, data) :]


_link: HelperLink | None = None
_link_lock = threading.Lock()


def link() -> HelperLink:
    """This process's link to its helper (a new one in a forked child)."""
    global _link
    with _link_lock:
        if _link is None or _link.owner != os.getpid():
            _link = HelperLink()
        return _link


def _after_fork() -> None:
    global _link, _link_lock
    _link_lock = threading.Lock()  # another thread may have held it at the fork
    if _link is not None:
        _link.forget()
        _link = None


os.register_at_fork(after_in_child=_after_fork)


def tally_json(tally: Tally) -> dict[str, Any]:
    """A Tally as JSON values (the helper's answer)."""
    return dataclasses.asdict(tally)


def tally_from_json(data: dict[str, Any]) -> Tally:
    """The Tally `tally_json` gave."""
    steps = tuple(Step(**step) for step in data["steps"])
    top = tuple(ProcessEnergy(**process) for process in data["top"])
    return Tally(**{**data, "steps": steps, "top": top})
