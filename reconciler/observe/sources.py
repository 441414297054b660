"""Source observation: the sha256, size and identity of every master file, with a hash cache.

Called by :mod:`reconciler.plan.planner` before it plans (and by explain, for one asset). A
file is read only when the hash cache (the state file's ``file_hashes`` table and the cache
folder of :mod:`reconciler.cache`) has no entry with the same (path, device, inode, size,
mtime_ns, ctime_ns). Small misses are read in the calling thread, large ones in parallel
threads (``hashlib.file_digest`` releases the GIL while it hashes).

The mtime alone does not vouch for the bytes: anyone may set it back (``touch -r``,
``cp --preserve``, ``unzip -o`` of a reproducible archive) after rewriting a file in place with
other bytes of the same size. The inode change time (ctime) cannot be set by a user (short of
setting the system clock); every write, and every change of the mtime, moves it to the
present. So any change to a file after it was hashed shows in its ctime, provided the ctime
then lay in an earlier clock tick than the change. An entry whose mtime or ctime is within
:data:`RACY_SECONDS` of the moment it was hashed is therefore not cached, because a change in
the same tick could leave both as they were (git calls these "racily clean"); it is hashed
again next time.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from reconciler.observe.masters import UnsafeMaster, open_master

RACY_SECONDS = 2.0  # no cache entry for a file whose mtime or ctime is this recent
ENTRY_SIZE = 6  # the length of a cache entry; entries of any other shape are misses


class CacheEntry(NamedTuple):
    """(device, inode, size, mtime_ns, ctime_ns, sha256). Caches may hold plain 6-tuples of
    the same shape: 100,000 of them load faster without building objects. An entry of another
    shape (the 5-tuples without ctime_ns that caches held before) is a miss."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    sha256: str


@dataclass(slots=True)  # not frozen: frozen __init__ is 8x slower per object
class Observation:
    """What a master file is now: its size and content hash, or why it could not be read."""

    path: str
    size: int = 0
    sha256: str | None = None
    error: str | None = None
    device: int = 0
    inode: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    cached: bool = False


@dataclass
class Observed:
    """What one observation found: each master's sha256 and identity, the cache entries worth
    recording, and how many masters had to be read (0: the cache knew them all)."""

    files: dict[str, Observation] = field(default_factory=dict)
    new_cache: dict[str, CacheEntry] = field(default_factory=dict)  # entries worth recording
    hashed_files: int = 0


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file, read in a stream."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def observe(
    paths: Iterable[str],
    cache: Mapping[str, CacheEntry],
    root: str,
    workers: int | None = None,
    more: Callable[[list[str]], Mapping[str, CacheEntry]] | None = None,
) -> Observed:
    """Stat every path; hash those the cache cannot vouch for. Files are read only through
    :func:`reconciler.observe.masters.open_master`: regular files inside ``root`` (the media root's
    real path), never through a symlink that leaves it. ``more``: a second cache, asked only
    for the paths the first could not vouch for (the state file's, which then need not be
    loaded whole when the first knows every master)."""
    result = Observed()
    todo: list[tuple[str, os.stat_result]] = []
    for path in dict.fromkeys(paths):  # each file once, in order
        try:
            st = os.stat(path)
        except OSError as exc:
            result.files[path] = Observation(path, error=_stat_error(exc))
            continue
        if not stat.S_ISREG(st.st_mode):  # a FIFO is never opened: it could block forever
            result.files[path] = Observation(path, error="is not a regular file")
            continue
        if not _vouched(result, path, st, cache.get(path)):
            todo.append((path, st))
    if todo and more is not None:
        second = more([path for path, _ in todo])
        todo = [(path, st) for path, st in todo if not _vouched(result, path, st, second.get(path))]
    if todo:
        _hash_all(result, todo, root, workers)
    return result


def _hash_all(
    result: Observed, todo: list[tuple[str, os.stat_result]], root: str, workers: int | None
) -> None:
    """Hash the masters no cache could vouch for, into ``result``."""
    # taken before any file is read: a file whose mtime and ctime are both older than this
    # was not changed in the clock tick in which it is read
    settled_ns = time.time_ns() - int(RACY_SECONDS * 1e9)

    def record(path: str, st: os.stat_result, digest: str | None, error: str | None) -> None:
        if error is not None or digest is None:
            result.files[path] = Observation(path, error=error)
            return
        result.files[path] = Observation(
            path, st.st_size, digest, None, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns
        )
        result.hashed_files += 1
        if st.st_mtime_ns < settled_ns and st.st_ctime_ns < settled_ns:
            result.new_cache[path] = CacheEntry(
                st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest
            )

    # Large files go to threads (hashlib releases the GIL while it hashes big buffers); small
    # ones are read here, one after another: for a 2 KB file the cost is the open and read
    # calls, and handing 100,000 of them between threads was measured 5x slower than this loop
    large = [item for item in todo if item[1].st_size > SMALL_FILE]
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
        pending = [pool.submit(_hash_large, path, st, root) for path, st in large]
        for path, st in todo:
            if st.st_size <= SMALL_FILE:
                record(path, st, *_hash_small(path, st, root))
        for (path, st), future in zip(large, pending, strict=True):
            record(path, st, *future.result())


def _vouched(result: Observed, path: str, st: os.stat_result, hit: object) -> bool:
    """Record the cached hash of ``path`` when the cache entry ``hit`` is for the file as
    it is now (same device, inode, size, mtime and ctime)."""
    if not (
        isinstance(hit, tuple)
        and len(hit) == ENTRY_SIZE
        and hit[:5] == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    ):
        return False
    result.files[path] = Observation(
        path, st.st_size, hit[5], None, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns,
        cached=True,
    )  # fmt: skip
    return True


def _stat_error(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symlink loop"
    return exc.strerror or str(exc)


SMALL_FILE = 1 << 20  # read in one call and hashed in the calling thread
_CHANGED = "the file changed while it was being read; try again"


def _same_file(before: os.stat_result, after: os.stat_result) -> bool:
    """Whether nothing about the file changed between two stats, as far as a cache key sees:
    a rewrite whose mtime was set back still moves the ctime."""
    return (
        before.st_dev,
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
        before.st_ctime_ns,
    ) == (after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns)


def _hash_small(path: str, st: os.stat_result, root: str) -> tuple[str | None, str | None]:
    """(sha256, None) or (None, why) for a file stat'ed as ``st`` before."""
    try:
        master = open_master(path, root)
    except UnsafeMaster as exc:
        return None, exc.reason
    fd = master.fd
    try:
        chunks: list[bytes] = []
        want = st.st_size + 1  # one byte more than expected, to notice a file that grew
        while want > 0 and (chunk := os.read(fd, want)):
            chunks.append(chunk)
            want -= len(chunk)
        after = os.fstat(fd)  # the same file (inode) that was read, unchanged while read
    except OSError as exc:
        return None, exc.strerror or str(exc)
    finally:
        master.close()
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if len(data) != st.st_size or not _same_file(st, after):
        return None, _CHANGED
    return hashlib.sha256(data).hexdigest(), None


def _hash_large(path: str, st: os.stat_result, root: str) -> tuple[str | None, str | None]:
    try:
        master = open_master(path, root)
    except UnsafeMaster as exc:
        return None, exc.reason
    try:
        with os.fdopen(master.fd, "rb", closefd=False) as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        after = os.fstat(master.fd)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    finally:
        master.close()
    if not _same_file(st, after):
        return None, _CHANGED
    return digest, None


def cacheable(observed: Observed) -> dict[str, CacheEntry]:
    """Every observation worth remembering: the cache's own entries that were found to hold,
    and the files hashed now that were not racily clean when they were read
    (:attr:`Observed.new_cache`). A file judged racily clean at the moment it was read stays
    out, however long ago that moment is by now."""
    entries = {
        path: CacheEntry(o.device, o.inode, o.size, o.mtime_ns, o.ctime_ns, o.sha256)
        for path, o in observed.files.items()
        if o.cached and o.sha256 is not None
    }
    entries.update(observed.new_cache)
    return entries
