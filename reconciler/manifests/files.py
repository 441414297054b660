"""Careful looks at the file system for validation: what an entry is, and whether it may be read.

Used by :mod:`reconciler.manifests.load` (to open a manifest file), by
:mod:`reconciler.manifests.crossrefs` (to check an Asset's file and a watermark image) and by
:mod:`reconciler.manifests.assetsets` (to sort the entries an AssetSet glob matches). The rules:

* a manifest is read only when its real path is inside the manifests folder, and only when it
  is a regular file: a symlink to ``~/.git-credentials`` or a FIFO named ``ci.yaml`` is refused
  without being opened;
* a media file must resolve inside the media root and be a regular file; a symlink loop, a
  dangling symlink, a FIFO, a socket or a device is named as such instead of raising
  ``OSError`` (or, for a FIFO, blocking forever in ``open``).

Validation only ever *stats* media files; it opens manifests, never masters.
"""

from __future__ import annotations

import errno
import os
import stat

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class Refused(Exception):
    """A file that must not (or cannot) be read; the message says why, without its content.

    ``error`` is the problem's class: ``manifest-file`` for a file refused for what it is,
    ``io`` for one the system would not let us read.
    """

    def __init__(self, message: str, error: str = "manifest-file") -> None:
        super().__init__(message)
        self.message = message
        self.error = error


def kind_of(mode: int) -> str:
    """What a file-system entry is, for messages: 'a FIFO (named pipe)', 'a folder', ..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a file"


def inside(path: str, root: str) -> bool:
    """Whether the (real) ``path`` is ``root`` or lies under it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def open_manifest(path: str, root: str) -> tuple[int, os.stat_result]:
    """Open a manifest file for reading: a descriptor and its ``fstat``.

    ``root`` is the real path of the manifests folder. Raises :class:`Refused` for a file
    whose real path is outside it, a symlink loop or a dangling symlink, and anything that is
    not a regular file; such a file is never opened (a FIFO would block).
    """
    real = os.path.realpath(path)
    if not inside(real, root):
        raise Refused(
            "the file is a symlink that leads outside the manifests folder, so it was not "
            "read; manifests must live inside the folder"
        )
    try:
        mode = os.lstat(real).st_mode
    except OSError as exc:
        raise _unreachable(exc, path != real) from None
    if stat.S_ISLNK(mode):  # realpath stopped at a link: it loops
        raise Refused(_LOOP)
    if not stat.S_ISREG(mode):
        raise Refused(f"the file is {kind_of(mode)}, not a regular file, so it was not read")
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as exc:
        raise _unreachable(exc, path != real) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # swapped between the look and the open
        os.close(fd)
        raise Refused(f"the file is {kind_of(st.st_mode)}, not a regular file, so it was not read")
    return fd, st


def read_regular(path: str, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of a regular file, without following a final symlink or blocking;
    None when it is anything else or cannot be read."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return read_all(fd, limit)
    finally:
        os.close(fd)


def read_all(fd: int, limit: int) -> bytes:
    """Read from ``fd`` until its end or ``limit + 1`` bytes (so that 'too big' shows)."""
    chunks: list[bytes] = []
    left = limit + 1
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


_LOOP = "the file is a symlink loop (it leads back to itself), so it was not read"


def _unreachable(exc: OSError, through_link: bool) -> Refused:
    if exc.errno == errno.ELOOP:
        return Refused(_LOOP)
    if exc.errno == errno.ENOENT and through_link:
        return Refused("the file is a symlink to a file that does not exist")
    return Refused(f"cannot read the file: {exc.strerror or exc}", "io")


# (absolute path, None) or (None, the reason)
Checked = tuple[str, None] | tuple[None, str]
_ESCAPES = "must stay inside the media root (no absolute path, no '..')"


class FolderCheck:
    """Whether a folder resolves inside a root; remembered per folder (``realpath`` walks
    every component of a path, and a large library has many files per folder)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._known: dict[str, bool] = {}

    def __call__(self, folder: str) -> bool:
        known = self._known.get(folder)
        if known is None:
            known = self._known[folder] = inside(os.path.realpath(folder), self.root)
        return known


def media_name(root: str, rel: str) -> Checked:
    """The absolute path that the media file ``rel`` would have under the real media
    ``root``, or (None, why not) when its name leaves the root; nothing is looked at."""
    if os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/"):
        return None, _ESCAPES
    return os.path.normpath(os.path.join(root, rel)), None


def media_file(root: str, rel: str, folder_inside: FolderCheck, what: str = "file") -> Checked:
    """Check the media file ``rel`` (relative to the real media ``root``) without opening it.

    Returns (absolute path, None) when it is a usable master, or (None, why not). One
    ``lstat`` for a plain file; ``folder_inside`` answers (cached) whether a folder resolves
    inside the root, as a library of 100,000 Assets has few folders.
    """
    checked = media_name(root, rel)
    if checked[0] is None:
        return checked
    path = checked[0]
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        return None, _unreachable_media(exc, root, rel, what)
    if stat.S_ISLNK(mode):
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            return None, _dangling_link(exc, rel)
        path = os.path.realpath(path)
        if not inside(path, root):
            return None, (
                f"{rel} is a symlink that leads outside the media root {root}; "
                "media files must stay inside it"
            )
    elif not folder_inside(os.path.dirname(path)):
        return None, (
            f"{rel} is in a folder that leads outside the media root {root} through a symlink"
        )
    if not stat.S_ISREG(mode):
        return None, f"{rel} is not a regular file: it is {kind_of(mode)}"
    return path, None


def _unreachable_media(exc: OSError, root: str, rel: str, what: str) -> str:
    """Why ``lstat`` could not look at a media file."""
    if isinstance(exc, FileNotFoundError):
        return f"{what} not found: {rel} (looked in the media root {root})"
    if exc.errno == errno.ELOOP:
        return f"{rel} cannot be reached: a folder on its path is a symlink loop"
    if exc.errno == errno.ENOTDIR:
        return f"{what} not found: {rel} (a part of its path is not a folder)"
    return f"cannot read {rel}: {exc.strerror}"


def _dangling_link(exc: OSError, rel: str) -> str:
    """Why a media file that is a symlink leads to nothing usable."""
    if exc.errno == errno.ELOOP:
        return f"{rel} is a symlink loop (it leads back to itself); point it at a file or remove it"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return f"{rel} is a symlink to a file that does not exist"
    return f"cannot read {rel}: {exc.strerror}"
