"""File operations inside a folder that someone else can write into, which never follow a symbolic link.

Each operation takes the fd of an already opened folder and one name in it (never a path), and uses
the *at() system calls: a folder is opened with O_NOFOLLOW | O_DIRECTORY, a file is created with
O_CREAT | O_EXCL | O_NOFOLLOW, and rename, unlink, rmdir and symlink act on the name itself. So a
link planted anywhere (say by a VM guest that shares the folder) is refused with `Planted`, not
followed, and nothing is ever written, replaced or removed outside the folder the walk started from.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Trees we build are two levels deep; anything much deeper was not made by us and is left in place
# rather than walked (which would hold one fd per level).
MAX_REMOVE_DEPTH = 8


class Planted(OSError):
    """A name that should be a folder or a regular file is a symbolic link or something else."""


def lstat(dir_fd: int, name: str) -> os.stat_result | None:
    """The entry itself (a link is not followed), or None when there is none."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def open_root(path: str) -> Iterator[int]:
    """The fd of the folder a walk starts from: its path is the admin's choice, links included."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def opendir(dir_fd: int, name: str) -> Iterator[int]:
    """The fd of the folder `name`; Planted when it is a link or not a folder."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Planted(f"{name} is a symbolic link or not a folder") from None
        raise
    try:
        yield fd
    finally:
        os.close(fd)


def make_dir(dir_fd: int, name: str, mode: int = 0o755) -> bool:
    """Make the folder `name` if there is nothing of that name; True when this call made it."""
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
    except FileExistsError:
        return False
    with opendir(dir_fd, name) as fd:
        os.fchmod(fd, mode)  # what the umask took off
    return True


def make_aside(dir_fd: int, prefix: str) -> str:
    """A new empty folder with a name nobody can guess, to build in before a rename."""
    for _ in range(100):
        name = f"{prefix}{secrets.token_hex(6)}"
        if make_dir(dir_fd, name):
            return name
    raise FileExistsError(errno.EEXIST, f"no free name for {prefix}*")


def write_atomic(dir_fd: int, name: str, text: str, mode: int = 0o644) -> None:
    """Write a temporary file, then rename it over `name`: readers see the old value or the new one.

    Planted when `name` or the temporary name is a link or not a regular file. The rename never
    follows a link either, should one appear between the check and the rename.
    """
    _check_file(dir_fd, name)
    tmp = f".{name}.new"
    try:
        fd = os.open(tmp, _NEW_FILE_FLAGS, mode, dir_fd=dir_fd)
    except FileExistsError:
        _check_file(dir_fd, tmp)
        os.unlink(tmp, dir_fd=dir_fd)  # a regular file left by an interrupted write
        fd = os.open(tmp, _NEW_FILE_FLAGS, mode, dir_fd=dir_fd)
    try:
        try:
            os.fchmod(fd, mode)
            data = text.encode()
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _check_file(dir_fd: int, name: str) -> None:
    st = lstat(dir_fd, name)
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise Planted(f"{name} is {kind}")


def read_int(dir_fd: int, name: str) -> int | None:
    """The integer in the regular file `name`; None when absent, a link, not a file, or not a number.

    O_NONBLOCK: a FIFO planted in place of the file must not hang the reader.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return int(os.read(fd, 64))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def remove_tree(dir_fd: int, name: str, depth: int = 0) -> None:
    """Remove `name` and, if it is a folder, all it holds; a link is removed itself, never followed."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        os.unlink(name, dir_fd=dir_fd)  # a file, a link or a FIFO: the name goes, nothing else
        return
    try:
        if depth >= MAX_REMOVE_DEPTH:
            raise OSError(errno.ENOTEMPTY, f"{name} is nested deeper than this tree ever is: left in place")
        for entry in os.listdir(fd):
            remove_tree(fd, entry, depth + 1)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
