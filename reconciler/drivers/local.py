"""The ``local`` driver: a folder (a NAS mount, a shared disk) as a platform.

An upload copies the payload's descriptor into a temporary file beside its destination
(kernel-side copy where the OS offers it) and reads back what landed; only when that
read-back is exactly the expected bytes is the file renamed over the destination, in one
atomic step. A part file that does not match is deleted, as rclone does, so a master
rewritten during an update never replaces the good copy. A crash leaves at most a
``.reconcile-*.part`` file (a short name of its own, so that a destination name of any legal
length fits), which :meth:`LocalDriver.cleanup` removes; never a half-written object under its
final name.

Nothing below the target is named by its path: folders are opened one component at a time
from the target's descriptor without following symlinks, and files are made, renamed, read and
unlinked relative to their folder (:mod:`reconciler.drivers.local_paths`), so a folder that
someone swapped for a symlink never leads a write, a read or a delete outside the target.

Finding a file by its key, listing the target for discovery and moving a file to a new key
(adoption) are in :mod:`reconciler.drivers.local_adopt`.

Like cp and rclone, it leaves flushing to disk to the kernel: a killed process loses nothing
that it wrote. With ``fsync: true`` on the Platform, every file and its folder are flushed
before the rename is reported, for durability across a power cut (at a large cost in speed).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

from reconciler.drivers.base import (
    Progress,
    RemoteObject,
    Uploaded,
)
from reconciler.drivers.local_adopt import FolderAdoption
from reconciler.drivers.local_paths import (
    TargetFolders,
    is_part,
    key_parts,
    os_failure,
    part_names,
    remove_empty,
    remove_files,
)
from reconciler.model import HealthStatus, Platform
from reconciler.observe.payload import NotLanded, Payload, ReplacedMeanwhile

CHUNK = 8 * 1024 * 1024


class LocalDriver(FolderAdoption):
    """A folder as a platform: the object at ``a/b.mp4`` is the file ``<target>/a/b.mp4``.

    The target is resolved once, when the driver is made (the user may name it through a
    symlink); below it nothing is reached by path: every folder is opened from the target's
    descriptor without following symlinks (see :mod:`reconciler.drivers.local_paths`)."""

    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        assert platform.target is not None, "validation guarantees a local target"
        self.root = Path(os.path.realpath(platform.target))
        self.fsync = bool(platform.driver_config.get("fsync", False))
        # the objects' URLs: the target's, then the key percent-encoded as Path.as_uri does it
        uri = self.root.as_uri()
        self._root_uri = uri if uri.endswith("/") else uri + "/"
        self.folders = TargetFolders(
            self.root, follow_symlinks=bool(platform.driver_config.get("follow_symlinks", False))
        )

    def upload(
        self, payload: Payload, key: str, metadata: dict[str, Any], progress: Progress | None = None
    ) -> Uploaded:
        parts = key_parts(key)
        try:
            folder = self.folders.hold(parts[:-1], create=True, verb="written")
        except OSError as exc:
            raise os_failure(exc, f"cannot create {self.path(parts[:-1])}") from None
        assert folder is not None, "made when missing"
        with folder:
            size, landed = self._write(payload, key, parts, folder.fd, progress)
        return Uploaded(
            platform_asset_id=key,
            url=self._root_uri + quote_from_bytes(os.fsencode(key)),
            remote_checksum=landed,
            details={"size": size},
        )

    def _write(
        self,
        payload: Payload,
        key: str,
        parts: tuple[str, ...],
        folder: int,
        progress: Progress | None,
    ) -> tuple[int, str]:
        """Copy the payload into a part file in ``folder`` (the open descriptor of the key's
        folder), read it back, and rename it to the key's name only when it holds exactly the
        expected bytes; returns (size, sha256) of what landed."""
        # a short name of its own, so that a destination name of any legal length fits
        part = part_names.next()
        created = committed = False
        try:
            out = os.open(
                part, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=folder
            )
            created = True
            try:
                size, landed = _copy_and_read_back(payload.fd, out, progress, payload.size)
                if self.fsync:
                    os.fsync(out)
            finally:
                os.close(out)
            if landed != payload.expected or size != payload.size:  # never renamed into place
                raise NotLanded(
                    f"the copy of {key} written to {self.platform.code} does not match what "
                    f"was sent ({size} bytes, sha256 {landed[:12]}...); it was discarded",
                    landed,
                )
            _still(payload.details.get("replaces"), parts[-1], folder, lambda: self.path(parts))
            os.replace(part, parts[-1], src_dir_fd=folder, dst_dir_fd=folder)
            committed = True
            if self.fsync:
                os.fsync(folder)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and not created:  # the folder was removed
                self.folders.forget(parts[:-1])  # walked again by a retry
            raise os_failure(exc, f"writing {self.path(parts)}") from None
        finally:
            if created and not committed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part, dir_fd=folder)
        return size, landed

    def stat(self, key: str, size: int | None = None) -> RemoteObject | None:
        """What is at ``key``: a regular file, hashed through a descriptor; anything else
        there (a symlink, a folder, a FIFO) is reported as an object of unknown content and
        never followed or read. A symlinked folder on the way is a PermanentError."""
        parts = key_parts(key)
        try:
            folder = self.folders.hold(parts[:-1], create=False, verb="read")
            if folder is None:
                return None
            with folder:
                fd = os.open(
                    parts[-1],
                    os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                    dir_fd=folder.fd,
                )
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):
                return RemoteObject(checksum=None, details={"kind": "not a regular file"})
            raise os_failure(exc, f"reading {self.path(parts)}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return RemoteObject(checksum=None, details={"kind": "not a regular file"})
            if size is not None and st.st_size != size:  # other bytes, whatever they are
                return RemoteObject(checksum=None, size=st.st_size)
            digest = _digest(fd, size_hint=st.st_size)
            if identity(os.fstat(fd)) != identity(st):  # written to while it was read
                return RemoteObject(checksum=None, size=st.st_size)
            return RemoteObject(digest, st.st_size, {"identity": identity(st)})
        except OSError as exc:
            raise os_failure(exc, f"reading {self.path(parts)}") from None
        finally:
            os.close(fd)

    def path(self, parts: tuple[str, ...]) -> Path:
        """Where ``parts`` is below the target, for messages (never opened by this path)."""
        return self.root.joinpath(*parts)

    def delete(self, key: str) -> None:
        """Unlink ``key`` (a symlink there is removed itself, never followed) and then the
        folders it leaves empty, up to the target."""
        parts = key_parts(key)
        path = self.root.joinpath(*parts)
        try:
            folder = self.folders.hold(parts[:-1], create=False, verb="deleted")
            if folder is None:
                return
            with folder, contextlib.suppress(FileNotFoundError):
                os.unlink(parts[-1], dir_fd=folder.fd)
            remove_empty(self.folders, parts[:-1], verb="deleted")
        except OSError as exc:
            raise os_failure(exc, f"deleting {path}") from None

    def health_check(self) -> tuple[str, str]:
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            return HealthStatus.DOWN, f"{probe} is not a folder"
        if not os.access(probe, os.W_OK | os.X_OK):
            return HealthStatus.DOWN, f"{probe} is not writable"
        return HealthStatus.HEALTHY, f"{self.root} is writable"

    def cleanup(self) -> int:
        """Remove the part files of interrupted uploads (``.reconcile-*.part``, and the
        ``.NAME.reconcile-*.part`` names earlier versions used), walking the target by
        descriptors: a folder swapped for a symlink is not entered."""
        try:
            top = self.folders.hold((), create=False, verb="deleted")
        except NotADirectoryError:
            return 0
        if top is None:
            return 0
        with top:
            return remove_files(top.fd, is_part)

    def finish(self) -> None:
        """Close the folder descriptors (they are opened again if the driver is used again)."""
        self.folders.close()
        super().finish()


def _copy(
    src: int,
    out: int,
    progress: Progress | None,
    start: int = 0,
    limit: int | None = None,
    landed: Callable[[int], None] | None = None,
    expected: int | None = None,
) -> int:
    """Copy ``src`` from offset ``start`` to the current position of ``out``, in the kernel
    where possible (copy_file_range). The source is read at explicit offsets, never through
    its file position, so a retry on the same descriptor starts where it should. Stops after
    ``limit`` bytes when given, and after a short copy that brings the total to exactly
    ``expected`` bytes (no further call to find the end: whatever the source holds beyond,
    the read-back decides whether what landed is the expected bytes); reports the total sent
    to ``progress`` and ``landed`` after each chunk."""
    sent = 0
    use_kernel = hasattr(os, "copy_file_range")
    while limit is None or sent < limit:
        want = CHUNK if limit is None else min(CHUNK, limit - sent)
        if use_kernel:
            try:
                n = os.copy_file_range(src, out, want, start + sent)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                use_kernel = False
                continue
        else:
            block = os.pread(src, want, start + sent)
            n = len(block)
            view = memoryview(block)
            while view:
                view = view[os.write(out, view) :]
        if n == 0:
            break
        sent += n
        if landed is not None:
            landed(start + sent)
        if progress is not None:
            progress(start + sent)
        if n < want and sent == expected:
            break
    return sent


def _copy_and_read_back(
    src: int, out: int, progress: Progress | None, expected: int | None = None
) -> tuple[int, str]:
    """Copy, then hash what landed by reading it back through the same file (``expected``:
    the size the payload should have, which saves a small file's copy a call to find its
    end).

    For a file of more than one chunk the read-back runs in a second thread, a chunk behind
    the copy, so that hashing a 1 GiB file overlaps copying it (hashlib and the kernel copy
    both release the GIL). Either way the hash covers the whole file as it is on the target,
    up to its end."""
    first = _copy(src, out, progress, limit=CHUNK, expected=expected)
    if first < CHUNK:  # the whole file was one chunk: nothing to overlap
        return first, _digest(out, size_hint=first, short_is_end=True)
    digest = hashlib.sha256()
    written: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    failure: list[BaseException] = []

    def read_back() -> None:
        offset = 0
        try:
            while (upto := written.get()) is not None:
                if upto < 0:  # the copy failed: stop
                    return
                while offset < upto:
                    block = os.pread(out, min(CHUNK, upto - offset), offset)
                    if not block:
                        break
                    digest.update(block)
                    offset += len(block)
            _digest(out, offset, digest)  # to the end: whatever else the file holds
        except BaseException as exc:  # reported by the copying thread
            failure.append(exc)

    reader = threading.Thread(target=read_back, name="read-back", daemon=True)
    reader.start()
    written.put(first)
    copied = False
    try:
        size = first + _copy(src, out, progress, start=first, landed=written.put)
        copied = True
    finally:
        written.put(None if copied else -1)
        reader.join()
    if failure:
        raise failure[0]
    return size, digest.hexdigest()


def _digest(
    fd: int,
    offset: int = 0,
    digest: Any = None,
    size_hint: int = CHUNK,
    short_is_end: bool = False,
) -> str:
    """sha256 of a file read through an open descriptor, from ``offset`` (continuing
    ``digest``) to its end. ``size_hint``: the expected size, so that a small file is not
    read into a buffer of a whole chunk (allocating 8 MiB per 40 KB file cost more than the
    read). ``short_is_end``: a read of fewer bytes than asked is the end, with no read to
    confirm it (for the part file this driver wrote: a regular file on a local or network
    file system returns a short read only at its end)."""
    digest = digest if digest is not None else hashlib.sha256()
    want = min(CHUNK, size_hint + 1)  # one byte more: a read that fills it is not the end
    while True:
        block = os.pread(fd, want, offset)
        if short_is_end and 0 < len(block) < want:
            digest.update(block)
            return digest.hexdigest()
        # a short read is normally the end; the next read, which must say so, stays small
        want = CHUNK if len(block) == want else 64 * 1024
        if not block:
            return digest.hexdigest()
        digest.update(block)
        offset += len(block)


def identity(st: os.stat_result) -> list[int]:
    """What tells one version of a file from another without reading it."""
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _still(replaces: Any, name: str, folder: int, dest: Callable[[], Path]) -> None:
    """Just before the rename: the object at the key is still the one the job checked when it
    began (``replaces``: its identity, or "absent"), or :class:`ReplacedMeanwhile`. One that
    was removed meanwhile is simply made again."""
    if replaces is None:
        return
    try:
        now: Any = identity(os.stat(name, dir_fd=folder, follow_symlinks=False))
    except FileNotFoundError:
        return
    if now != replaces:
        raise ReplacedMeanwhile(
            f"{dest()} was changed on the platform while the update was being made; it was "
            "left as it is"
        )
