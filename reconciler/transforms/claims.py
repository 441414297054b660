"""Claims on renditions: a rendition is claimed before it is made, so that of all the threads,
processes and hosts sharing one rendition cache folder only one makes it; the others wait,
then find it made.

A claim is two locks taken in order: this process's ``threading.Lock`` for the id, then an
exclusive ``flock(2)`` on ``claims/<id>.lock`` in the cache folder (created mode 0600, never
through a symbolic link). The kernel drops a flock when its process dies, even by SIGKILL, so
a dead claimer never blocks anyone. On NFS, Linux maps flock to whole-file byte-range locks
(NFSv4 locks, or NLM on v3), which every client sharing the folder sees. Those are held per
process, not per descriptor, so the thread lock comes first: a process never opens a claim
file twice at once (closing a second descriptor would drop the first's lock).

A claim held elsewhere is waited for by polling (so a wait can be interrupted) for at most
:data:`CLAIM_PATIENCE`, then :class:`TransformError` names the rendition. Claim files are
left behind as empty files; :meth:`Claims.sweep` removes those of absent renditions, only
while holding them, and a holder checks after locking that its file is still the one at the
path (one removed meanwhile is claimed again through the new file).
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler.transforms import TransformError

CLAIM_PATIENCE = 30 * 60  # seconds a claim held elsewhere is waited for
POLL_SECONDS = 0.2


class Claims:
    """The claims on the renditions of one cache folder (``<folder>/claims/``)."""

    def __init__(self, cache_folder: Path) -> None:
        self.folder = cache_folder / "claims"
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, rid: str, wait: bool = True) -> Iterator[bool]:
        """Hold the claim on ``rid`` for the ``with`` block: yields True once it is held.
        With ``wait=False`` yields False at once when anyone else holds it. Raises
        :class:`TransformError` when it is still held after :data:`CLAIM_PATIENCE`, or its
        claim file cannot be opened safely."""
        deadline = time.monotonic() + CLAIM_PATIENCE if wait else None
        with self._guard:
            lock = self._locks.setdefault(rid, threading.Lock())
        if not (lock.acquire(timeout=CLAIM_PATIENCE) if wait else lock.acquire(blocking=False)):
            if wait:
                raise self._held(rid)
            yield False
            return
        try:
            fd = self._take(rid, deadline)
            if fd is None:
                yield False
                return
            try:
                yield True
            finally:
                os.close(fd)  # releases the flock
        finally:
            lock.release()

    def sweep(self, keep: set[str]) -> None:
        """Remove the claim files of renditions not in ``keep`` that nobody holds."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        for name in names:
            rid = name.removesuffix(".lock")
            if rid == name or rid in keep:
                continue
            try:
                with self.hold(rid, wait=False) as held:
                    if held:
                        (self.folder / name).unlink()
            except (OSError, TransformError):
                pass  # in use, or not a claim file we made: left alone

    def _take(self, rid: str, deadline: float | None) -> int | None:
        """A descriptor of the claim file at the path now, flocked exclusively; None when it
        is held elsewhere and ``deadline`` is None."""
        while True:
            fd = self._open(rid)
            try:
                held = self._flock(fd, rid, deadline)
                if held and self._current(fd, rid):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            if not held or deadline is None:
                return None
            if time.monotonic() >= deadline:
                raise self._held(rid)
            # swept while this waited for it: claim the file now at the path

    def _flock(self, fd: int, rid: str, deadline: float | None) -> bool:
        """Whether the exclusive flock on ``fd`` was taken: at once, or (polling) before the
        deadline; after the deadline, :class:`TransformError`."""
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if deadline is None:
                    return False
                if time.monotonic() >= deadline:
                    raise self._held(rid) from None
                time.sleep(POLL_SECONDS)
            except OSError as exc:  # no locks on this file system (ENOLCK)
                raise self._refused(rid, exc) from None

    def _current(self, fd: int, rid: str) -> bool:
        """Whether ``fd`` is still the file at the claim's path (not removed by a sweep)."""
        try:
            there = os.stat(self.folder / f"{rid}.lock", follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)

    def _open(self, rid: str) -> int:
        """The claim file of ``rid``, opened for writing (NFS grants an exclusive lock only
        on such a descriptor), created if missing; never through a symbolic link, neither
        the file nor the claims folder."""
        try:
            os.mkdir(self.folder, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise self._refused(rid, exc) from None
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            folder = os.open(self.folder, flags)
        except OSError as exc:
            raise self._refused(rid, exc) from None
        try:
            _make_private(folder)
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(f"{rid}.lock", flags, 0o600, dir_fd=folder)
        except OSError as exc:
            raise self._refused(rid, exc) from None
        finally:
            os.close(folder)

    def _held(self, rid: str) -> TransformError:
        return TransformError(
            f"rendition {rid} is still claimed by another job or worker after "
            f"{CLAIM_PATIENCE / 60:g} minutes ({self.folder / f'{rid}.lock'}): it is being made "
            "elsewhere, or its maker is stuck; try again later"
        )

    def _refused(self, rid: str, exc: OSError) -> TransformError:
        why = (
            "it or the claims folder is a symbolic link, which is never followed"
            if exc.errno == errno.ELOOP or self.folder.is_symlink()  # ENOTDIR for the folder
            else exc.strerror or str(exc)
        )
        return TransformError(
            f"cannot claim rendition {rid} through {self.folder / f'{rid}.lock'}: {why}"
        )


def _make_private(folder: int) -> None:
    """The claims folder readable by its owner only, as the cache folder is."""
    mode = os.fstat(folder)
    if mode.st_uid == os.getuid() and mode.st_mode & 0o077:
        os.fchmod(folder, 0o700)
