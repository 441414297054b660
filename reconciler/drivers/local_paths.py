"""Folders below a ``local`` target, reached without ever following a symlink.

Someone who can write to the target (a NAS share) can replace a folder the tool made with a
symlink to another place. A path handed to ``open``, ``mkdir``, ``rename`` or ``unlink`` would
follow it, and writes, reads and deletes would land outside the target. So nothing below the
target is ever named by its path: :class:`TargetFolders` opens the target folder once and
reaches every folder below it one component at a time, each opened relative to the descriptor
of the one above it with ``O_DIRECTORY | O_NOFOLLOW`` (creating missing folders with
``mkdir(dir_fd=...)`` on the way). A component that is a symlink is a
:class:`~reconciler.drivers.base.PermanentError`, never followed. Files are then created,
renamed, read and unlinked relative to their folder's descriptor.

The descriptors stay open for the life of the driver (up to :data:`KEEP_OPEN`, the least
recently used beyond that are closed when idle), so that 100,000 uploads into a few folders
do not walk their paths 100,000 times. That is safe against the swap above: a folder replaced
by a symlink after it was opened is still, through its descriptor, the real folder that was
inside the target. A folder that was removed is noticed (no links left) and walked again.
A folder *moved* elsewhere on the same file system while this driver holds it open is not
noticed; that needs write access to the target's parent as well.

:func:`os_failure` says what an OSError from any of this means to apply (permanent or not).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from reconciler.drivers.base import PermanentError, TemporaryError

OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
KEEP_OPEN = 256  # folder descriptors kept open when idle (the root is always kept)
NOT_REMOVABLE = {errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT, errno.ENOTDIR, errno.EBUSY}

Parts = tuple[str, ...]  # a folder below the target, one name per component; () is the target
PART_MARK = ".reconcile-"  # an upload's part file: .reconcile-<12 hex digits>.part
PART_SUFFIX = ".part"


def key_parts(key: str) -> Parts:
    """The components of ``key`` (``a/b/c.mp4``), or a PermanentError for a key that could
    name something outside the target (absolute, empty, ``.`` or ``..`` components, NUL)."""
    parts = tuple(key.split("/"))
    if "" in parts or "." in parts or ".." in parts or "\0" in key:  # "" covers "/a", "a//b"
        raise PermanentError(f"the key {key} would leave the target folder")
    return parts


PERMANENT_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENAMETOOLONG,
    errno.ENOTDIR,
    errno.EISDIR,
}


def os_failure(exc: OSError, doing: str) -> Exception:
    """An OSError as a driver failure with a message a person understands."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return PermanentError(f"{doing}: no space left on the target ({reason})")
    if exc.errno in PERMANENT_ERRNOS:
        return PermanentError(f"{doing}: {reason}")
    return TemporaryError(f"{doing}: {reason}")


def is_part(name: str) -> bool:
    """Whether ``name`` is an upload's part file (``.reconcile-*.part``, and the
    ``.NAME.reconcile-*.part`` names earlier versions used)."""
    return PART_MARK in name and name.endswith(PART_SUFFIX) and name.startswith(".")


def symlinked(path: Path, verb: str) -> PermanentError:
    """The failure for a symlink found where a folder of the target should be."""
    return PermanentError(
        f"{path} on the target is a symlink; nothing was {verb} through it (when an "
        "administrator made it so on purpose, set follow_symlinks: true on the platform)"
    )


class _Entry:
    """One open folder descriptor and how many callers hold it now."""

    __slots__ = ("fd", "forgotten", "users")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 0
        self.forgotten = False  # out of the cache: closed when its last user lets go


@dataclass
class Held:
    """A folder descriptor lent by :meth:`TargetFolders.hold`; valid until released (use it
    as a context manager)."""

    fd: int
    _entry: _Entry
    _owner: TargetFolders

    def release(self) -> None:
        self._owner._release(self._entry)

    def __enter__(self) -> Held:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class TargetFolders:
    """The open folders of one target, safe to share between threads."""

    def __init__(
        self, root: Path, keep_open: int = KEEP_OPEN, follow_symlinks: bool = False
    ) -> None:
        self.root = root  # already resolved: the user may name the target through a symlink
        self.keep_open = keep_open
        self.follow = follow_symlinks  # the platform's owner allows symlinked folders
        self._lock = threading.Lock()
        self._open: OrderedDict[Parts, _Entry] = OrderedDict()
        # closes what is still open if the driver is dropped without finish()
        weakref.finalize(self, _close_all, self._open, self._lock)

    def hold(self, parts: Parts, *, create: bool, verb: str) -> Held | None:
        """The folder ``parts`` below the target, reached from the target's descriptor one
        component at a time without following symlinks; missing folders (and the target
        itself) are created when ``create``, else the answer is None. ``verb`` says in a
        symlink's message what was not done through it (written, read, deleted). Raises
        PermanentError for a symlinked component, OSError for anything else."""
        known, entry = self._cached(parts)
        if entry is None:
            fd = self._open_root(create, verb)
            if fd is None:
                return None
            entry = self._insert((), fd)
        for depth in range(known, len(parts)):
            try:
                fd = self._open_child(entry.fd, parts[: depth + 1], create, verb)
            finally:
                self._release(entry)
            if fd is None:
                return None
            entry = self._insert(parts[: depth + 1], fd)
        return Held(entry.fd, entry, self)

    def forget(self, parts: Parts) -> None:
        """Drop ``parts`` and every folder below it from the cache (it was removed)."""
        with self._lock:
            for cached in [k for k in self._open if k[: len(parts)] == parts]:
                self._drop(cached)

    def close(self) -> None:
        """Close every folder descriptor (those in use when their users let go). The cache
        fills again on the next use."""
        with self._lock:
            for cached in list(self._open):
                self._drop(cached)

    # -- the cache ---------------------------------------------------------------------------
    def _cached(self, parts: Parts) -> tuple[int, _Entry | None]:
        """The deepest open folder on the way to ``parts`` that still exists, held, and its
        depth; (0, None) when not even the target is open."""
        while True:
            with self._lock:
                depth = len(parts)
                while depth >= 0 and parts[:depth] not in self._open:
                    depth -= 1
                if depth < 0:
                    return 0, None
                entry = self._open[parts[:depth]]
                self._open.move_to_end(parts[:depth])
                entry.users += 1
            if os.fstat(entry.fd).st_nlink > 0:
                return depth, entry
            self._release(entry)  # removed since it was opened: walk to it again
            self.forget(parts[:depth])

    def _insert(self, parts: Parts, fd: int) -> _Entry:
        """Cache a freshly opened descriptor (or use the one another thread cached first),
        held once; closes idle ones beyond :attr:`keep_open`, least recently used first."""
        with self._lock:
            entry = self._open.get(parts)
            if entry is not None:
                os.close(fd)
            else:
                entry = self._open[parts] = _Entry(fd)
            entry.users += 1
            self._open.move_to_end(parts)
            while len(self._open) > self.keep_open + 1:
                idle = next((k for k, e in self._open.items() if k and e.users == 0), None)
                if idle is None:
                    break
                self._drop(idle)
            return entry

    def _release(self, entry: _Entry) -> None:
        with self._lock:
            entry.users -= 1
            if entry.forgotten and entry.users == 0:
                os.close(entry.fd)

    def _drop(self, parts: Parts) -> None:
        """(With the lock held.) Out of the cache; closed now when nobody holds it."""
        entry = self._open.pop(parts)
        entry.forgotten = True
        if entry.users == 0:
            os.close(entry.fd)

    # -- walking -----------------------------------------------------------------------------
    def _open_root(self, create: bool, verb: str) -> int | None:
        try:
            return _open_or_make(str(self.root), None, create)
        except _Symlink:  # resolved when the driver was made, and swapped since
            raise PermanentError(
                f"the target folder {self.root} has become a symlink; nothing was {verb} through it"
            ) from None

    def _open_child(self, parent: int, parts: Parts, create: bool, verb: str) -> int | None:
        try:
            return _open_or_make(parts[-1], parent, create, self.follow)
        except _Symlink:
            raise symlinked(self.root.joinpath(*parts), verb) from None


class _Symlink(Exception):
    """A symlink where a folder was opened."""


def _open_or_make(name: str, parent: int | None, create: bool, follow: bool = False) -> int | None:
    """Open the folder ``name`` in ``parent`` (or the target, by its resolved path, when
    ``parent`` is None), making it first when it is missing and ``create``; None when it is
    missing and not ``create``. ``follow``: a symlinked folder is opened where it leads."""
    if follow and parent is not None:
        with contextlib.suppress(FileNotFoundError):
            return os.open(name, OPEN_FOLDER & ~os.O_NOFOLLOW, dir_fd=parent)
        if not create:
            return None
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=parent)
        return os.open(name, OPEN_FOLDER & ~os.O_NOFOLLOW, dir_fd=parent)
    try:
        return _open_folder(name, parent)
    except FileNotFoundError:
        if not create:
            return None
    if parent is None:  # the target itself: the user chose its path
        os.makedirs(name, exist_ok=True)
    else:
        with contextlib.suppress(FileExistsError):  # made meanwhile, or a symlink: refused
            os.mkdir(name, 0o777, dir_fd=parent)
    return _open_folder(name, parent)


def _open_folder(name: str, parent: int | None) -> int:
    """Open the folder ``name`` in ``parent`` without following it; :class:`_Symlink` when it
    is a symlink (Linux says ENOTDIR for that, others ELOOP)."""
    try:
        return os.open(name, OPEN_FOLDER, dir_fd=parent)
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        try:
            mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
        except OSError:
            raise exc from None
        if stat.S_ISLNK(mode):
            raise _Symlink(name) from None
        raise


def remove_empty(folders: TargetFolders, parts: Parts, verb: str) -> None:
    """Remove the folder ``parts`` and then each folder above it that is empty, up to (not
    including) the target, each relative to its parent's descriptor: a symlink is never
    removed through, a folder that is not empty stops it."""
    for depth in range(len(parts), 0, -1):
        parent = folders.hold(parts[: depth - 1], create=False, verb=verb)
        if parent is None:
            return
        with parent:
            try:
                os.rmdir(parts[depth - 1], dir_fd=parent.fd)
            except OSError as exc:
                if exc.errno in NOT_REMOVABLE:
                    return
                raise
        folders.forget(parts[:depth])


def remove_files(top: int, wanted: Callable[[str], bool]) -> int:
    """Unlink every file named ``wanted`` in the folder ``top`` and the folders below it;
    returns how many. Walks by descriptors: each folder is opened relative to its parent with
    ``O_NOFOLLOW``, so a folder swapped for a symlink during the walk is skipped, never
    entered, and every unlink is relative to a folder that is really below ``top``. At most
    one descriptor per level is open."""
    removed = 0
    frames: list[tuple[int, list[str]]] = []  # (open folder, its folders not entered yet)
    fd: int | None = os.dup(top)
    try:
        while fd is not None:
            folders: list[str] = []
            frames.append((fd, folders))
            with os.scandir(fd) as entries:
                for entry in entries:
                    try:
                        is_folder = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    if is_folder:
                        folders.append(entry.name)
                    elif wanted(entry.name):
                        try:
                            os.unlink(entry.name, dir_fd=fd)
                        except FileNotFoundError:
                            continue
                        removed += 1
            fd = None
            while frames and fd is None:
                parent, pending = frames[-1]
                if not pending:
                    os.close(frames.pop()[0])
                    continue
                try:
                    fd = os.open(pending.pop(), OPEN_FOLDER, dir_fd=parent)
                except OSError:  # gone, or swapped for a symlink or a file: not entered
                    continue
    finally:  # (every open descriptor is on the stack of frames)
        for parent, _ in frames:
            os.close(parent)
    return removed


class PartNames:
    """Unpredictable names for part files (12 hex digits, as ``secrets.token_hex(6)``), from
    ``os.urandom`` read 6 KiB at a time: one system call per 1,024 files, not per file."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0

    def next(self) -> str:
        with self._lock:
            if self._at >= len(self._pool):
                self._pool, self._at = os.urandom(6 * 1024), 0
            raw = self._pool[self._at : self._at + 6]
            self._at += 6
        return f"{PART_MARK}{raw.hex()}{PART_SUFFIX}"


part_names = PartNames()  # shared by every local driver of the process


def _close_all(entries: OrderedDict[Parts, _Entry], lock: threading.Lock) -> None:
    with lock:
        while entries:
            _, entry = entries.popitem()
            entry.forgotten = True
            if entry.users == 0:
                os.close(entry.fd)
