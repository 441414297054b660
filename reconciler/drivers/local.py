"""The ``local`` driver: a folder (a NAS mount, a shared disk) as a platform.

An upload copies the payload's descriptor into a temporary file beside its destination
(kernel-side copy where the OS offers it) and reads back what landed; only when that
read-back is exactly the expected bytes is the file renamed over the destination, in one
atomic step. A part file that does not match is deleted, as rclone does, so a master
rewritten during an update never replaces the good copy. A crash leaves at most a
``.reconcile-*.part`` file (a short name of its own, so that a destination name of any legal
length fits), which :meth:`LocalDriver.cleanup` removes; never a half-written object under its
final name.

Like cp and rclone, it leaves flushing to disk to the kernel: a killed process loses nothing
that it wrote. With ``fsync: true`` on the Platform, every file and its folder are flushed
before the rename is reported, for durability across a power cut (at a large cost in speed).
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.drivers.base import (
    DOWN,
    HEALTHY,
    Driver,
    PermanentError,
    Progress,
    RemoteObject,
    TemporaryError,
    Uploaded,
)
from reconciler.drivers.payload import NotLanded, Payload
from reconciler.models import Platform

PART_MARK = ".reconcile-"
PART_SUFFIX = ".part"
CHUNK = 8 * 1024 * 1024
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


class LocalDriver(Driver):
    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        assert platform.target is not None, "validation guarantees a local target"
        self.root = Path(platform.target)
        self.fsync = bool(platform.driver_config.get("fsync", False))
        self._folders: set[Path] = set()  # folders known to exist

    def path_of(self, key: str) -> Path:
        parts = key.split("/")
        if key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in key:
            raise PermanentError(f"the key {key} would leave the target folder")
        return self.root.joinpath(*parts)

    def upload(
        self, payload: Payload, key: str, metadata: dict[str, Any], progress: Progress | None = None
    ) -> Uploaded:
        dest = self.path_of(key)
        if dest.parent not in self._folders:
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise os_failure(exc, f"cannot create {dest.parent}") from None
            self._folders.add(dest.parent)
        # a short name of its own, so that a destination name of any legal length fits
        part = dest.with_name(f"{PART_MARK}{secrets.token_hex(6)}{PART_SUFFIX}")
        committed = False
        try:
            out = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                size, landed = _copy_and_read_back(payload.fd, out, progress)
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
            os.replace(part, dest)
            committed = True
            if self.fsync:
                _fsync_dir(dest.parent)
        except OSError as exc:
            raise os_failure(exc, f"writing {dest}") from None
        finally:
            if not committed:
                part.unlink(missing_ok=True)
        return Uploaded(
            platform_asset_id=key,
            url=dest.as_uri(),
            remote_checksum=landed,
            details={"size": size},
        )

    def stat(self, key: str, size: int | None = None) -> RemoteObject | None:
        """What is at ``key``: a regular file, hashed through a descriptor; anything else
        there (a symlink, a folder, a FIFO) is reported as an object of unknown content and
        never followed or read."""
        path = self.path_of(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):
                return RemoteObject(checksum=None, details={"kind": "not a regular file"})
            raise os_failure(exc, f"reading {path}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return RemoteObject(checksum=None, details={"kind": "not a regular file"})
            if size is not None and st.st_size != size:  # other bytes, whatever they are
                return RemoteObject(checksum=None, size=st.st_size)
            return RemoteObject(checksum=_digest(fd, size_hint=st.st_size), size=st.st_size)
        except OSError as exc:
            raise os_failure(exc, f"reading {path}") from None
        finally:
            os.close(fd)

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        try:
            path.unlink(missing_ok=True)
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                self._folders.discard(parent)
                parent = parent.parent
        except OSError as exc:
            raise os_failure(exc, f"deleting {path}") from None

    def health_check(self) -> tuple[str, str]:
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            return DOWN, f"{probe} is not a folder"
        if not os.access(probe, os.W_OK | os.X_OK):
            return DOWN, f"{probe} is not writable"
        return HEALTHY, f"{self.root} is writable"

    def cleanup(self) -> int:
        """Remove the part files of interrupted uploads (``.reconcile-*.part``, and the
        ``.NAME.reconcile-*.part`` names earlier versions used)."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                if PART_MARK in name and name.endswith(PART_SUFFIX) and name.startswith("."):
                    Path(dirpath, name).unlink(missing_ok=True)
                    removed += 1
        return removed


def _copy(
    src: int,
    out: int,
    progress: Progress | None,
    start: int = 0,
    limit: int | None = None,
    landed: Callable[[int], None] | None = None,
) -> int:
    """Copy ``src`` from offset ``start`` to the current position of ``out``, in the kernel
    where possible (copy_file_range). The source is read at explicit offsets, never through
    its file position, so a retry on the same descriptor starts where it should. Stops after
    ``limit`` bytes when given; reports the total sent to ``progress`` and ``landed`` after
    each chunk."""
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
    return sent


def _copy_and_read_back(src: int, out: int, progress: Progress | None) -> tuple[int, str]:
    """Copy, then hash what landed by reading it back through the same file.

    For a file of more than one chunk the read-back runs in a second thread, a chunk behind
    the copy, so that hashing a 1 GiB file overlaps copying it (hashlib and the kernel copy
    both release the GIL). Either way the hash covers the whole file as it is on the target,
    up to its end."""
    first = _copy(src, out, progress, limit=CHUNK)
    if first < CHUNK:  # the whole file was one chunk: nothing to overlap
        return first, _digest(out, size_hint=first)
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


def _digest(fd: int, offset: int = 0, digest: Any = None, size_hint: int = CHUNK) -> str:
    """sha256 of a file read through an open descriptor, from ``offset`` (continuing
    ``digest``) to its end. ``size_hint``: the expected size, so that a small file is not
    read into a buffer of a whole chunk (allocating 8 MiB per 40 KB file cost more than the
    read)."""
    digest = digest if digest is not None else hashlib.sha256()
    want = min(CHUNK, size_hint + 1)  # one byte more: a read that fills it is not the end
    while True:
        block = os.pread(fd, want, offset)
        # a short read is normally the end; the next read, which must say so, stays small
        want = CHUNK if len(block) == want else 64 * 1024
        if not block:
            return digest.hexdigest()
        digest.update(block)
        offset += len(block)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
