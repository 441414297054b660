"""The files the manifests reference as credentials, by identity, so that none is ever read
as a master.

Validation registers every referenced secret file (auth and client secrets, encryption keys)
with :func:`forbid`, which records each existing file's (device, inode); the one safe way a
master is opened (:mod:`reconciler.observe.masters`) refuses a file with such an identity, whatever
name or link it is reached by: another path, a symlinked folder, a hard link. Kept apart and
import-light, as validation runs without the rest of the reconciler.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

_lock = threading.Lock()
_identities: set[tuple[int, int]] = set()


def forbid(paths: Iterable[str]) -> None:
    """Remember the identity of every existing file among ``paths``."""
    found = set()
    for path in paths:
        try:
            st = os.stat(path)
        except (OSError, ValueError):  # not created yet (create: true), or unusable
            continue
        found.add((st.st_dev, st.st_ino))
    with _lock:
        _identities.update(found)


def is_credential(st: os.stat_result) -> bool:
    """Whether an open file is one the manifests reference as a credential."""
    with _lock:
        return (st.st_dev, st.st_ino) in _identities


MAX_SECRET_BYTES = 64 * 1024


def read_secret_file(path: Path) -> str:
    """The text of a small regular file holding a secret, read without blocking (a FIFO
    swapped in for it raises instead of hanging the run); OSError with a reason otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if st.st_size > MAX_SECRET_BYTES:
            raise OSError(errno.EFBIG, "too large to hold a secret")
        data = os.pread(fd, MAX_SECRET_BYTES + 1, 0)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(errno.EINVAL, "not UTF-8 text") from None
