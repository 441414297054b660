"""Opening a master file safely: the one way any part of the reconciler reads a master.

Called by observation (hashing masters for a plan) and by apply (each upload job opens its
master once and reads every byte it hashes, transforms, encrypts or sends from that one
descriptor). A manifest was validated earlier, but the file system can change in between, so
the checks are made again on the open descriptor, where they cannot be raced:

* the last path component is opened with ``O_NOFOLLOW``: a master swapped for a symlink is
  never followed blindly (a symlink is resolved only to check that it stays in the media
  root, and its target is opened with ``O_NOFOLLOW`` again);
* ``O_NONBLOCK``, so that a master swapped for a FIFO cannot hang the open;
* ``fstat`` on the descriptor must say a regular file;
* the descriptor's real path (``/proc/self/fd``) must lie inside the media root;
* it must not be a file the manifests reference as a credential, under any name
  (:mod:`reconciler.observe.credentials`).

Anything else is :class:`UnsafeMaster`, a permanent failure with a one-line reason; nothing
outside the media root is ever read.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from reconciler.errors import PermanentError
from reconciler.observe.credentials import is_credential
from reconciler.observe.payload import Payload

FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafeMaster(PermanentError):
    """A master that cannot be read safely: gone, not a regular file, or outside the root.
    ``reason`` says why without naming the file (observations name it already)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"the master {name} {reason}")
        self.reason = reason


@dataclass
class Opened:
    """An open master: its descriptor and what ``fstat`` said of it."""

    fd: int
    st: os.stat_result
    path: str  # as given

    @property
    def size(self) -> int:
        return self.st.st_size

    def payload(self, expected: str) -> Payload:
        return Payload(self.fd, self.size, expected, os.path.basename(self.path))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def inside(path: str, root: str) -> bool:
    root = root.rstrip(os.sep) or os.sep
    return path == root or path.startswith(root if root == os.sep else root + os.sep)


def below(path: str, root: str) -> bool:
    """``path`` is strictly below ``root`` (a file is never the root folder itself)."""
    root = root.rstrip(os.sep)
    return path.startswith(root + os.sep) and len(path) > len(root) + 1


def open_master(path: str, root: str) -> Opened:
    """Open ``path`` for reading if it is a regular file inside ``root`` (a real path), or
    raise :class:`UnsafeMaster` saying why not."""
    name = os.path.basename(path) or path
    fd = _open(path, root, name)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeMaster(name, f"is not a regular file ({_kind(st.st_mode)})")
        if is_credential(st):  # under any name: a link, a symlinked folder
            raise UnsafeMaster(name, "is a credential file the manifests reference")
        real = _real_path(fd, path, st)
        if real is None or not below(real, root):
            raise UnsafeMaster(name, f"leads outside the media root {root}")
        # blocking reads from here on (F_SETFL changes only the status flags, such as
        # O_NONBLOCK, and none of them but O_NONBLOCK was set: one call, not two)
        fcntl.fcntl(fd, fcntl.F_SETFL, FLAGS & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return Opened(fd, st, path)


@contextmanager
def opened_master(path: str, root: str) -> Iterator[Opened]:
    """:func:`open_master` as a context manager that closes the descriptor."""
    master = open_master(path, root)
    try:
        yield master
    finally:
        master.close()


def _open(path: str, root: str, name: str) -> int:
    try:
        return os.open(path, FLAGS)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise _failure(exc, name) from None
    # the last component is a symlink: follow it only to a file inside the root
    real = os.path.realpath(path)
    if not inside(real, root):
        raise UnsafeMaster(name, "is a symlink that leads outside the media root")
    try:
        return os.open(real, FLAGS)
    except OSError as exc:
        raise _failure(exc, name) from None


def _failure(exc: OSError, name: str) -> UnsafeMaster:
    if exc.errno == errno.ENOENT:
        return UnsafeMaster(name, "has vanished")
    if exc.errno == errno.ELOOP:
        return UnsafeMaster(name, "is a symlink loop")
    if exc.errno == errno.ENXIO:
        return UnsafeMaster(name, "is not a regular file (a socket)")
    return UnsafeMaster(name, f"cannot be read: {exc.strerror or exc}")


def _real_path(fd: int, path: str, st: os.stat_result) -> str | None:
    """Where the open file really is: the kernel's name for the descriptor, or (without
    /proc) the resolved path, if it is still the same file."""
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = os.path.realpath(path)
        try:
            now = os.stat(real)
        except OSError:
            return None
        return real if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) else None
    if st.st_nlink == 0:  # unlinked since it was opened: the kernel says so in the name
        return real.removesuffix(" (deleted)")
    return real


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"
