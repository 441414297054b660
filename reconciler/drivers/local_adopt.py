"""Adopting what a ``local`` target already holds: finding a file by its key, listing every
file for discovery, and moving a file to a new key without copying its bytes.

:class:`FolderAdoption` is the part of :class:`~reconciler.drivers.local.LocalDriver` that
adoption calls (an import finds a key, discovery lists the target, a renamed master's copy is
moved). Like the rest of the driver it never names anything below the target by its path:
folders are held by descriptor (:class:`~reconciler.drivers.local_paths.TargetFolders`), the
listing walks them by descriptor without following a symlink, and a file is hashed only
through a descriptor opened with ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO never blocks it).

A move links the file under its new name (``linkat``, which fails when anything is there, so
an object at the new key is never replaced, even one made a moment before) and then unlinks
the old name; a file system without hard links gets a rename after checking that the new
name is free.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_from_bytes

from reconciler.drivers.base import Driver, Found, PermanentError
from reconciler.drivers.local_paths import (
    OPEN_FOLDER,
    Parts,
    TargetFolders,
    is_part,
    key_parts,
    os_failure,
    remove_empty,
)

# a file system that has no hard links says so with one of these
NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


class FolderAdoption(Driver):
    """Find, discover and move on a folder target (mixed into the local driver, which gives
    its target folder, its folders held by descriptor, its fsync option and its ``stat``)."""

    keys_are_paths = True
    root: Path
    folders: TargetFolders
    fsync: bool
    _root_uri: str

    def id_problem(self, remote_id: str) -> str | None:
        try:
            key_parts(remote_id)
        except PermanentError as exc:
            return str(exc)
        return None

    def find(self, remote_id: str) -> Found | None:
        """The regular file at the key ``remote_id`` (relative to the target,
        '/'-separated), hashed through a descriptor; None when nothing is there. A key that
        would leave the target, a symlinked folder on the way, or something there that is
        not a regular file (a symlink, a folder, a FIFO) is a PermanentError."""
        parts = key_parts(remote_id)
        found = self.stat(remote_id)
        if found is None:
            return None
        if found.details.get("kind") == "not a regular file":
            raise PermanentError(
                f"{self.root.joinpath(*parts)} on {self.platform.code} is not a regular file"
            )
        return Found(remote_id, remote_id, found.checksum, found.size, self._file_url(remote_id))

    def discover(self) -> Iterator[Found]:
        """Every regular file below the target, in key order, with its sha256 and size (None
        for a file that cannot be read); the driver's own part files, symlinks, FIFOs and
        anything else that is not a regular file are left out, and a folder that is a symlink
        is not entered."""
        for key in self._keys():
            try:
                found = self.stat(key)
            except PermanentError:  # there, but it cannot be read: its content is unknown
                yield Found(key, key, None, None, self._file_url(key))
                continue
            if found is None or found.details.get("kind") == "not a regular file":
                continue  # removed or replaced since it was listed
            yield Found(key, key, found.checksum, found.size, self._file_url(key))

    def _keys(self) -> list[str]:
        """The keys of the regular files below the target, sorted, found by walking the
        folders by descriptor (each opened relative to its parent with ``O_NOFOLLOW``)."""
        try:
            top = self.folders.hold((), create=False, verb="read")
        except NotADirectoryError:
            return []
        except OSError as exc:
            raise os_failure(exc, f"listing {self.root}") from None
        if top is None:
            return []
        keys: list[str] = []
        with top:
            pending: list[tuple[int, Parts]] = [(os.dup(top.fd), ())]
            parts: Parts = ()
            try:
                while pending:
                    fd, parts = pending.pop()
                    try:
                        for name in _list(fd, parts, keys):
                            with contextlib.suppress(OSError):  # gone, or a symlink: skipped
                                opened = os.open(name, OPEN_FOLDER, dir_fd=fd)
                                pending.append((opened, (*parts, name)))
                    finally:
                        os.close(fd)
            except OSError as exc:
                raise os_failure(exc, f"listing {self.root.joinpath(*parts)}") from None
            finally:
                for fd, _ in pending:
                    os.close(fd)
        return sorted(keys)

    def move(self, old_key: str, new_key: str) -> None:
        """Move the file at ``old_key`` to ``new_key`` on the target without copying it: a
        hard link under the new name, then the old name unlinked (a rename where the file
        system has no hard links). Never replaces what is at ``new_key``; removes the folders
        the move left empty."""
        old, new = key_parts(old_key), key_parts(new_key)
        where, there = self.root.joinpath(*old), self.root.joinpath(*new)
        if old == new:
            raise PermanentError(f"{where} on {self.platform.code} is already at {new_key}")
        try:
            source = self.folders.hold(old[:-1], create=False, verb="moved")
            if source is None:
                raise PermanentError(f"{where} is not on {self.platform.code}: nothing to move")
            with source:
                try:
                    before = os.stat(old[-1], dir_fd=source.fd, follow_symlinks=False)
                except FileNotFoundError:
                    raise PermanentError(
                        f"{where} is not on {self.platform.code}: nothing to move"
                    ) from None
                if not stat.S_ISREG(before.st_mode):
                    raise PermanentError(f"{where} on {self.platform.code} is not a regular file")
                target = self.folders.hold(new[:-1], create=True, verb="written")
                assert target is not None, "made when missing"
                with target:
                    self._place(old[-1], source.fd, new[-1], target.fd, there)
                    if self.fsync:
                        os.fsync(target.fd)
                        os.fsync(source.fd)
            remove_empty(self.folders, old[:-1], verb="moved")
        except OSError as exc:
            raise os_failure(exc, f"moving {where} to {there} on {self.platform.code}") from None

    def _place(self, name: str, src: int, new: str, dst: int, there: Path) -> None:
        """Give the file ``name`` of folder ``src`` the name ``new`` in folder ``dst``, never
        over anything already there, and take its old name away."""
        taken = PermanentError(
            f"{there} already holds an object on {self.platform.code}; it was left as it is "
            "and nothing was moved"
        )
        try:
            os.link(name, new, src_dir_fd=src, dst_dir_fd=dst, follow_symlinks=False)
        except FileExistsError:
            raise taken from None
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise PermanentError(
                    f"{there} is on another file system than the object it was to be moved "
                    f"from on {self.platform.code}; nothing was moved"
                ) from None
            if exc.errno not in NO_LINKS:
                raise
            with contextlib.suppress(FileNotFoundError):
                os.stat(new, dir_fd=dst, follow_symlinks=False)
                raise taken from None
            os.rename(name, new, src_dir_fd=src, dst_dir_fd=dst)
            return
        # the old name goes only while it is still the file that was linked (not one put
        # there meanwhile)
        linked = os.stat(new, dir_fd=dst, follow_symlinks=False)
        with contextlib.suppress(FileNotFoundError):
            now = os.stat(name, dir_fd=src, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (linked.st_dev, linked.st_ino):
                os.unlink(name, dir_fd=src)

    def _file_url(self, key: str) -> str:
        """The object's URL, as an upload gives it: the target's, then the key
        percent-encoded as Path.as_uri does it."""
        return self._root_uri + quote_from_bytes(os.fsencode(key))


def _list(fd: int, parts: Parts, keys: list[str]) -> list[str]:
    """Add the keys of the regular files in the open folder ``fd`` (at ``parts``) to
    ``keys``, but part files; returns the names of its folders (symlinks are neither)."""
    folders: list[str] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.name)
                elif entry.is_file(follow_symlinks=False) and not is_part(entry.name):
                    keys.append("/".join((*parts, entry.name)))
            except OSError:
                continue
    return folders
