"""The measured command as wattprobe's child: started, waited for, signalled, its status passed on.

- **Orphans come back.** wattprobe becomes a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so a
  process whose parent ended before it (a daemon that double-forked, a shell that did not wait) is
  reparented to wattprobe rather than to init: it stays in the measured tree, and when it ends,
  wattprobe reaps it and its time is counted. Every child is reaped (wait4(-1)), not only the command.
- **Signals.** Every signal that can be caught, bar the faults of wattprobe's own code (SIGSEGV and
  the like, which must never be blocked), is blocked and taken with sigtimedwait between two ticks,
  so no handler runs mid-tick and none is lost or kills wattprobe. One sent to wattprobe (kill, a CI
  runner's timeout, SIGUSR1) is forwarded to the command; one the terminal sent (Ctrl-C: si_code
  SI_KERNEL) already reached the command, which is in the same foreground process group, and is not
  sent twice; one wattprobe raised itself (SIGPIPE of a write to a closed pipe) or the command sent
  it is not sent back. SIGCHLD is taken, never forwarded. A stop (SIGTSTP, SIGTTIN, SIGTTOU) then
  stops wattprobe too, so that a shell sees its job stopped; the SIGCONT that resumes it is forwarded.
- **The command's environment** is the one wattprobe was given: its signal mask, its stdin, stdout and
  stderr, and its limit on open files (wattprobe raises its own for reading /proc, not the command's).
- **Exit status** of the command: its code, or 128 + N when signal N ended it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
from collections.abc import Callable, Sequence

from wattprobe.errors import WattprobeError

PR_SET_CHILD_SUBREAPER = 36
SI_KERNEL = 0x80  # a signal the kernel sent: the terminal's Ctrl-C, Ctrl-\
# Raised by the kernel on the thread whose instruction faulted: blocked, they kill the process at once.
_FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP, signal.SIGSYS}
_STOPS = frozenset({signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
FORWARDED = frozenset(signal.valid_signals() - _FAULTS - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD})
_TAKEN = FORWARDED | {signal.SIGCHLD}


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
        # Taken here, before the sensor opens: wattprobe then raises its own for reading /proc.
        self._nofile = resource.getrlimit(resource.RLIMIT_NOFILE)

    def another(self) -> Child:
        """A new Child for another run of the same command inside this one's `with` (`run --repeat`):
        it starts with the signal mask and the open-files limit wattprobe was given, as this one."""
        child = Child(self.argv)
        child._mask, child._nofile = self._mask, self._nofile
        return child

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
        mask, nofile = self._mask, self._nofile

        def prepare() -> None:
            with contextlib.suppress(ValueError, OSError):  # lowered to what it was: never refused
                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if enter is not None:
                enter()

        try:
            # preexec_fn forks without vfork; what it runs takes no lock (plain system calls), so a
            # thread of the sensor's (a PowerSpy2 reader) cannot deadlock it.
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
            self._forward(info)
        self._reap()
        return self.status is not None

    def _forward(self, info: signal.struct_siginfo) -> None:
        signum = info.si_signo
        self.received.append(signum)
        if info.si_code != SI_KERNEL and info.si_pid not in (os.getpid(), self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)
        if signum in _STOPS:  # stopped as the command is, until a SIGCONT (taken, then forwarded)
            os.kill(os.getpid(), signal.SIGSTOP)

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
        signum = os.WTERMSIG(self.status)
        try:
            return signal.Signals(signum).name
        except ValueError:  # a real-time signal between SIGRTMIN and SIGRTMAX has no name of its own
            return f"SIGRTMIN+{signum - signal.SIGRTMIN}"
