"""The measured command as wattprobe's child: started, waited for, signalled, its status passed on.

- **Orphans come back.** wattprobe becomes a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so a
  process whose parent ended before it (a daemon that double-forked, a shell that did not wait) is
  reparented to wattprobe rather than to init: it stays in the measured tree, and when it ends,
  wattprobe reaps it and its time is counted. Every child is reaped (wait4(-1)), not only the command.
- **Signals.** SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGCHLD are blocked and taken with sigtimedwait
  between two ticks, so no handler runs mid-tick and none is lost. One sent to wattprobe (kill, a CI
  runner's timeout) is forwarded to the command; one the terminal sent (Ctrl-C: si_code SI_KERNEL)
  already reached the command, which is in the same foreground process group, and is not sent twice.
  The child starts with the signal mask wattprobe had, and with its stdin, stdout and stderr.
- **Exit status** of the command: its code, or 128 + N when signal N ended it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Sequence

from wattprobe.errors import WattprobeError

PR_SET_CHILD_SUBREAPER = 36
SI_KERNEL = 0x80  # a signal the kernel sent: the terminal's Ctrl-C, Ctrl-\
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_TAKEN = {*FORWARDED, signal.SIGCHLD}


class NotStarted(WattprobeError):
    """The command could not be started: 127 when not found, 126 when not executable, as shells."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def become_subreaper() -> bool:
    """Make orphaned descendants this process's children; False where the kernel refuses."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class Child:
    """One command, started by `start()`, waited for by `wait()`; use it as a context manager, which
    blocks the signals it takes and gives them back."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.pid = 0
        self.status: int | None = None  # wait status once it ended (os.waitstatus_to_exitcode)
        self.received: list[int] = []  # signals wattprobe took while the command ran
        self._mask: set[int] = set()
        self._chld: signal._HANDLER = None

    def __enter__(self) -> Child:
        # A SIGCHLD ignored by whoever started wattprobe would make the kernel reap children itself.
        self._chld = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self._mask = set(signal.pthread_sigmask(signal.SIG_BLOCK, _TAKEN))
        return self

    def __exit__(self, *exc: object) -> None:
        while signal.sigtimedwait(_TAKEN, 0) is not None:  # taken, not delivered to a handler now
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        if self._chld is not None:
            signal.signal(signal.SIGCHLD, self._chld)

    def start(self, enter: Callable[[], None] | None = None) -> int:
        """Start the command; `enter` runs in the child before exec (joining a cgroup). NotStarted
        when it cannot run; subprocess.SubprocessError when `enter` failed (the command did not run)."""
        mask = self._mask

        def prepare() -> None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if enter is not None:
                enter()

        try:
            # preexec_fn forks without vfork; what it runs takes no lock, so a thread of the sensor's
            # (a PowerSpy2 reader) cannot deadlock it.
            process = subprocess.Popen(self.argv, preexec_fn=prepare)
        except FileNotFoundError:
            raise NotStarted(f"cannot run {self.argv[0]!r}: command not found", 127) from None
        except PermissionError:
            raise NotStarted(f"cannot run {self.argv[0]!r}: permission denied", 126) from None
        except OSError as error:
            raise NotStarted(f"cannot run {self.argv[0]!r}: {error.strerror}", 126) from None
        process.returncode = 0  # reaped here, by wait4(-1): Popen must not wait for it too
        self.pid = process.pid
        return self.pid

    def wait(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the command to end, forwarding signals and reaping every child
        meanwhile; True once it has ended."""
        if self.status is None:
            self._reap()
        if self.status is not None:
            return True
        info = signal.sigtimedwait(_TAKEN, max(timeout_s, 0.0))
        if info is not None and info.si_signo != signal.SIGCHLD:
            if info.si_code != SI_KERNEL:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, info.si_signo)
            self.received.append(info.si_signo)
        self._reap()
        return self.status is not None

    def _reap(self) -> None:
        """Collect every child that ended: the command, and orphans reparented to wattprobe."""
        while True:
            try:
                pid, status, _ = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.status = status

    @property
    def exit_code(self) -> int:
        """The command's exit code, or 128 + N when signal N ended it."""
        if self.status is None:
            raise RuntimeError("the command has not ended")
        code = os.waitstatus_to_exitcode(self.status)
        return code if code >= 0 else 128 - code

    @property
    def signal(self) -> str | None:
        """The name of the signal that ended the command, if one did."""
        if self.status is None or not os.WIFSIGNALED(self.status):
            return None
        return signal.Signals(os.WTERMSIG(self.status)).name
