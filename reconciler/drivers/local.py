"""The ``local`` driver: a folder (a NAS mount, a shared disk) as a platform.

An upload copies the master into a temporary file beside its destination (kernel-side copy
where the OS offers it), flushes it to disk, renames it over the destination in one atomic
step, and then reads back what landed to compute the checksum it reports. A crash leaves at
most a ``.*.reconcile-*.part`` file, which :meth:`LocalDriver.cleanup` removes; never a
half-written object under its final name.
"""

from __future__ import annotations

import errno
import os
import secrets
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
from reconciler.models import Platform
from reconciler.sources import sha256_file

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

    def path_of(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not str(path).startswith(str(self.root.resolve()) + os.sep):
            raise PermanentError(f"the key {key} would leave the target folder")
        return path

    def upload(
        self, source: Path, key: str, metadata: dict[str, Any], progress: Progress | None = None
    ) -> Uploaded:
        dest = self.path_of(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_failure(exc, f"cannot create {dest.parent}") from None
        part = dest.with_name(f".{dest.name}{PART_MARK}{secrets.token_hex(4)}{PART_SUFFIX}")
        try:
            try:
                src = open(source, "rb")  # noqa: SIM115 - closed below, errors told apart
            except FileNotFoundError:
                raise PermanentError(f"the master file {source} has vanished") from None
            except OSError as exc:
                raise PermanentError(
                    f"cannot read the master file {source}: {exc.strerror}"
                ) from None
            with src, open(part, "wb") as out:
                _copy(src, out, progress)
                out.flush()
                os.fsync(out.fileno())
            os.replace(part, dest)
            _fsync_dir(dest.parent)
            landed = sha256_file(dest)
        except OSError as exc:
            raise os_failure(exc, f"writing {dest}") from None
        finally:
            if part.exists():
                part.unlink(missing_ok=True)
        return Uploaded(
            platform_asset_id=key,
            url=dest.as_uri(),
            remote_checksum=landed,
            details={"size": dest.stat().st_size},
        )

    def stat(self, key: str) -> RemoteObject | None:
        path = self.path_of(key)
        try:
            size = path.stat().st_size
            return RemoteObject(checksum=sha256_file(path), size=size)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise os_failure(exc, f"reading {path}") from None

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        try:
            path.unlink(missing_ok=True)
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
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
        removed = 0
        if not self.root.is_dir():
            return 0
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                if PART_MARK in name and name.endswith(PART_SUFFIX) and name.startswith("."):
                    Path(dirpath, name).unlink(missing_ok=True)
                    removed += 1
        return removed


def _copy(src: Any, out: Any, progress: Progress | None) -> None:
    """Copy in the kernel where possible (copy_file_range), reporting bytes as they go."""
    sent = 0
    in_fd, out_fd = src.fileno(), out.fileno()
    use_kernel = hasattr(os, "copy_file_range")
    while True:
        if use_kernel:
            try:
                n = os.copy_file_range(in_fd, out_fd, CHUNK)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                use_kernel = False
                continue
        else:
            block = src.read(CHUNK)
            n = len(block)
            if n:
                out.write(block)
        if n == 0:
            break
        sent += n
        if progress is not None:
            progress(sent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
