"""An output file that is complete after every write, or says in one line why it could not be written.

Text goes to a file (or, given no path, to standard output). In a regular file each write lands at the
end of what was written before, followed by `tail` (a JSON array's closing bracket), so the file parses
after every write, even if the agent is killed. A write error (disk full, I/O error, a reader that
closed the pipe) is one WattprobeError, and the file is cut back to the last complete write. Elsewhere
(standard output, a pipe, a device) text is written in sequence and `tail` at close.
"""

from __future__ import annotations

import contextlib
import os
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
