"""Caches kept outside the state file, so that an unchanged library costs little to plan again.

* **hashes**: the sha256 of master files keyed by (path, device, inode, size, mtime_ns,
  ctime_ns), one file per media root. The state file has its own hash cache, written only by
  commands that may write state; this one is also written by dry runs, which may not, so that
  a second dry run in CI or on a laptop reads no master twice. Entries are the plain tuples of
  :class:`reconciler.observe.sources.CacheEntry`; an entry of another shape (the 5-tuples without
  ctime_ns that older versions wrote into the same file) is a miss, and the file is replaced
  whole the next time a master is hashed.
* **manifests**: parsed manifest documents by the sha256 of the file's bytes, one folder per
  manifests folder, so that unchanged files are not parsed again.
* **plans**: the last plan made for one set of paths and options, with the signature of
  everything it was made from (see :mod:`reconciler.plan.reuse`), so that a plan of an
  unchanged world is answered without planning again.

The cache lives in ``$RECONCILE_CACHE_DIR``, else in the user cache folder of the platform as
``platformdirs`` knows it: ``$XDG_CACHE_HOME/reconcile`` or ``~/.cache/reconcile`` on Linux,
``~/Library/Caches/reconcile`` on macOS, ``reconcile/Cache`` under ``%LOCALAPPDATA%`` on
Windows. The commands that use it take ``--no-cache``, which makes them use ``Cache(None)``:
nothing is read from it or written to it. Everything in it may be deleted at any time; a
missing, corrupt or foreign entry is simply ignored and rebuilt. Entries are written
atomically (temporary file and rename), so two processes never read half a file. Values are
plain data stored with ``marshal``, which cannot carry code.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import platformdirs

from reconciler.observe.sources import CacheEntry

FORMAT = "v1"


def default_folder() -> Path:
    """``$RECONCILE_CACHE_DIR`` when set, else the platform's user cache folder."""
    explicit = os.environ.get("RECONCILE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(platformdirs.user_cache_dir("reconcile", appauthor=False))


def _key(folder: Path) -> str:
    return hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:24]


class Cache:
    """One cache folder. ``Cache(None)`` is a cache that never remembers anything."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None

    # -- hashes ---------------------------------------------------------------------------
    def hashes(self, media_root: Path) -> dict[str, CacheEntry]:
        """The hash cache of this media root as stored, or an empty one. Its entries are not
        checked here:
        :func:`~reconciler.observe.sources.observe` takes any entry whose shape is not a
        :class:`~reconciler.observe.sources.CacheEntry` for a miss, which spares a pass over 100,000
        entries that are almost always right."""
        raw = self._read(self._hash_file(media_root))
        return raw if isinstance(raw, dict) else {}  # observe checks each entry's shape

    def save_hashes(self, media_root: Path, entries: dict[str, CacheEntry]) -> None:
        """Replace this media root's hash cache with ``entries``, atomically."""
        self._write(self._hash_file(media_root), {p: tuple(e) for p, e in entries.items()})

    def _hash_file(self, media_root: Path) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / "hashes" / f"{FORMAT}-{_key(media_root)}.marshal"

    # -- manifests ------------------------------------------------------------------------
    def manifest(self, manifests_dir: Path, digest: str) -> Any:
        """The documents cached for a manifest file with these bytes, or None."""
        folder = self._manifest_folder(manifests_dir)
        return None if folder is None else self._read(folder / f"{digest}.marshal")

    def save_manifest(self, manifests_dir: Path, digest: str, documents: Any) -> None:
        folder = self._manifest_folder(manifests_dir)
        if folder is not None:
            self._write(folder / f"{digest}.marshal", documents)

    def keep_manifests(self, manifests_dir: Path, digests: set[str]) -> None:
        """Forget the entries of files that no longer exist in this manifests folder."""
        folder = self._manifest_folder(manifests_dir)
        if folder is None or not folder.is_dir():
            return
        for entry in folder.iterdir():
            if entry.suffix == ".marshal" and entry.stem not in digests:
                entry.unlink(missing_ok=True)

    def _manifest_folder(self, manifests_dir: Path) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / "manifests" / f"{FORMAT}-{_key(manifests_dir)}"

    # -- plans ----------------------------------------------------------------------------
    def plan(self, key: str) -> Any:
        """The last plan made for the inputs ``key`` names, as stored, or None (see
        :mod:`reconciler.plan.reuse`, which checks its shape and its key). A plan is shown
        as this user's own, so only an entry this user wrote is read: a regular file owned by
        them that no one else may write (a cache folder in /tmp may be another user's)."""
        if self.folder is None:
            return None
        try:
            fd = os.open(self._plan_file(key), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return None
            with os.fdopen(os.dup(fd), "rb") as handle:
                return marshal.loads(handle.read())
        except (OSError, EOFError, ValueError, TypeError):
            return None
        finally:
            os.close(fd)

    def save_plan(self, key: str, entry: Any) -> None:
        if self.folder is not None:
            self._write(self._plan_file(key), entry)

    def _plan_file(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / "plans" / f"{FORMAT}-{key[:32]}.marshal"

    # -- files ----------------------------------------------------------------------------
    @staticmethod
    def _read(path: Path | None) -> Any:
        if path is None:
            return None
        try:
            # marshal.loads on the whole file: marshal.load on a file object reads in small
            # pieces and is five times slower on a 15 MB hash cache
            return marshal.loads(path.read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            return None

    @staticmethod
    def _write(path: Path | None, value: Any) -> None:
        if path is None:
            return
        temporary = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(marshal.dumps(value))
            os.replace(temporary, path)
        except (OSError, ValueError):  # a cache that cannot be written is a slower next run
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
