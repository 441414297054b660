"""Source observation: the sha256, size and identity of every master file, with a hash cache.

Called by :mod:`reconciler.plan` before it plans. A file is read only when the cache (kept in
the state file's ``file_hashes`` table) has no entry with the same (path, device, inode, size,
mtime_ns); misses are hashed in parallel threads (``hashlib.file_digest`` releases the GIL
while it reads). An entry whose mtime is within :data:`RACY_SECONDS` of the moment it was
hashed is not cached, because a write in the same clock tick could change the content without
changing the mtime (git calls these "racily clean").
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

RACY_SECONDS = 2.0


class CacheEntry(NamedTuple):
    """(device, inode, size, mtime_ns, sha256). Caches may hold plain 5-tuples of the same
    shape: 100,000 of them load faster without building objects."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Observation:
    """What a master file is now: its size and content hash, or why it could not be read."""

    path: str
    size: int = 0
    sha256: str | None = None
    error: str | None = None
    device: int = 0
    inode: int = 0
    mtime_ns: int = 0
    cached: bool = False


@dataclass
class Observed:
    files: dict[str, Observation] = field(default_factory=dict)
    new_cache: dict[str, CacheEntry] = field(default_factory=dict)  # entries worth recording
    hashed_files: int = 0
    hashed_bytes: int = 0


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file, read in a stream."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def observe(
    paths: Iterable[str], cache: dict[str, CacheEntry], workers: int | None = None
) -> Observed:
    """Stat every path; hash those the cache cannot vouch for."""
    result = Observed()
    todo: list[tuple[str, os.stat_result]] = []
    for path in dict.fromkeys(paths):  # each file once, in order
        try:
            st = os.stat(path)
        except OSError as exc:
            result.files[path] = Observation(path, error=exc.strerror or str(exc))
            continue
        hit = cache.get(path)
        if (
            isinstance(hit, tuple)
            and len(hit) == 5
            and hit[:4] == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        ):
            result.files[path] = Observation(
                path,
                st.st_size,
                hit[4],
                None,
                st.st_dev,
                st.st_ino,
                st.st_mtime_ns,
                cached=True,
            )
        else:
            todo.append((path, st))
    if not todo:
        return result
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    # a few large batches, not one task per file: 100,000 tiny files would otherwise spend
    # more time in the pool's bookkeeping than in reading
    size = max(1, min(256, len(todo) // (workers * 4) or 1))
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    now_ns = time.time_ns()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for batch in pool.map(_hash_batch, batches):
            for path, st, digest, error in batch:
                if error is not None or digest is None:
                    result.files[path] = Observation(path, error=error)
                    continue
                result.files[path] = Observation(
                    path, st.st_size, digest, None, st.st_dev, st.st_ino, st.st_mtime_ns
                )
                result.hashed_files += 1
                result.hashed_bytes += st.st_size
                if now_ns - st.st_mtime_ns > RACY_SECONDS * 1e9:
                    result.new_cache[path] = CacheEntry(
                        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, digest
                    )
    return result


def _hash_batch(
    batch: list[tuple[str, os.stat_result]],
) -> list[tuple[str, os.stat_result, str | None, str | None]]:
    return [_hash_one(item) for item in batch]


def _hash_one(
    item: tuple[str, os.stat_result],
) -> tuple[str, os.stat_result, str | None, str | None]:
    path, st = item
    try:
        digest = sha256_file(path)
        after = os.stat(path)
    except OSError as exc:
        return path, st, None, exc.strerror or str(exc)
    if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        return path, st, None, "the file changed while it was being read; try again"
    return path, st, digest, None


def cacheable(observed: Observed) -> dict[str, CacheEntry]:
    """Every observation worth remembering: read successfully and not racily clean."""
    now_ns = time.time_ns()
    return {
        path: CacheEntry(o.device, o.inode, o.size, o.mtime_ns, o.sha256)
        for path, o in observed.files.items()
        if o.sha256 is not None and now_ns - o.mtime_ns > RACY_SECONDS * 1e9
    }
