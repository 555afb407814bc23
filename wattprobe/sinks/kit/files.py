"""An output file that is complete after every write, or says in one line why it could not be written.

Text goes to a file (or, given no path, to standard output). In a regular file each write lands at the
end of what was written before, followed by `tail` (a JSON array's closing bracket), so the file parses
after every write, even if the agent is killed. A write error (disk full, I/O error, a reader that
closed the pipe) is one WattprobeError, and the file is cut back to the last complete write. Elsewhere
(standard output, a pipe, a device) text is written in sequence and `tail` at close.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys

from wattprobe.errors import WattprobeError


class OutputFile:
    def __init__(self, path: str | None, *, append: bool = False, tail: bytes = b"") -> None:
        self.name = path or "standard output"
        self.tail = tail
        self._owned = path is not None
        if path is None:
            self._fd = sys.stdout.fileno()
        else:
            mode = os.O_APPEND if append else os.O_TRUNC
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode | os.O_CLOEXEC, 0o644)
            except OSError as error:
                raise WattprobeError(
                    f"cannot write {path}: {error.strerror}; choose another path with -f"
                ) from None
        # Where the tail of a regular file starts; None: written in sequence, the tail at close.
        info = os.fstat(self._fd)
        self._end: int | None = info.st_size if stat.S_ISREG(info.st_mode) else None

    def write(self, data: bytes) -> None:
        """Append `data` (then the tail, in a regular file); WattprobeError if it could not be written."""
        if self._end is None:
            self._write(data)
            return
        try:
            self._write(data + self.tail, self._end)
        except WattprobeError:
            with contextlib.suppress(OSError, WattprobeError):  # back to the last complete write
                os.ftruncate(self._fd, self._end)
                if self._end and self.tail:
                    self._write(self.tail, self._end)
            raise
        self._end += len(data)

    def close(self) -> None:
        try:
            if self._end is None and self.tail:
                self._write(self.tail)
        except WattprobeError:
            pass  # the write that failed has said it
        finally:
            if self._owned:
                os.close(self._fd)

    def _write(self, data: bytes, offset: int | None = None) -> None:
        """Write all of `data` (at `offset`, or in sequence), or raise WattprobeError saying why not."""
        try:
            while data:
                if offset is None:
                    written = os.write(self._fd, data)
                else:
                    written = os.pwrite(self._fd, data, offset)
                    offset += written
                data = data[written:]
        except BrokenPipeError:
            raise WattprobeError(f"cannot write {self.name}: its reader closed it") from None
        except OSError as error:
            fix = "; choose another path with -f" if self._owned else ""
            raise WattprobeError(f"cannot write {self.name}: {error.strerror}{fix}") from None


def write_whole(path: str, data: bytes) -> None:
    """Write `data` to `path` as a shell's `>` would, a regular file whole or not at all.

    A symlink is followed to its target. A regular file, or a path that does not exist yet, gets a
    temporary file beside it renamed over it (its permission bits kept): a reader never sees half of
    it. A FIFO or a device is opened and written as it is: a FIFO must have a reader already (no wait
    for one that may never come). WattprobeError, one line, when it cannot be written.
    """
    real = os.path.realpath(path)
    try:
        info: os.stat_result | None = os.stat(real)
    except FileNotFoundError:
        info = None
    except OSError as error:
        raise WattprobeError(f"cannot write {path}: {error.strerror}") from None
    try:
        if info is None or stat.S_ISREG(info.st_mode):
            _replace(real, data, info)
        elif stat.S_ISDIR(info.st_mode):
            raise WattprobeError(f"cannot write {path}: it is a directory")
        else:
            _write_special(real, data)
    except OSError as error:
        if stat.S_ISFIFO(info.st_mode if info else 0) and error.errno == errno.ENXIO:
            raise WattprobeError(
                f"cannot write {path}: no process reads this FIFO; start its reader first"
            ) from None
        if isinstance(error, BrokenPipeError):
            raise WattprobeError(f"cannot write {path}: its reader closed it") from None
        raise WattprobeError(f"cannot write {path}: {error.strerror}") from None


def write_problem(path: str) -> str | None:
    """Why `write_whole(path)` cannot work, as far as can be told before writing; None if it may."""
    real = os.path.realpath(path)
    directory = os.path.dirname(real)
    try:
        info = os.stat(real)
    except FileNotFoundError:
        if not os.path.isdir(directory):
            return f"no directory {os.path.dirname(os.path.abspath(path))}"
        return None if os.access(directory, os.W_OK) else "permission denied"
    except OSError as error:
        return error.strerror
    if stat.S_ISDIR(info.st_mode):
        return "it is a directory"
    if stat.S_ISSOCK(info.st_mode):
        return "it is a socket"
    if not os.access(real, os.W_OK):
        return "permission denied"
    if stat.S_ISREG(info.st_mode) and not os.access(directory, os.W_OK):
        return f"permission denied in {directory} (its file is replaced whole)"
    return None


def _replace(real: str, data: bytes, info: os.stat_result | None) -> None:
    tmp = f"{real}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # O_EXCL: never through a link someone placed at the temporary name.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        if info is not None:
            os.fchmod(fd, info.st_mode & 0o777)
        _write_all(fd, data)
        os.close(fd)
        fd = -1
        os.replace(tmp, real)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_special(real: str, data: bytes) -> None:
    # O_NONBLOCK: a FIFO without a reader is ENXIO at once rather than a wait with no end; the writes
    # then block as a shell's would.
    fd = os.open(real, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        os.set_blocking(fd, True)
        _write_all(fd, data)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
