"""Test helper: rewriting a master the way `unzip -o`, `cp --preserve` or `touch -r` do, with
other bytes over the same inode and its old mtime put back, so that only the ctime tells."""

from __future__ import annotations

import os
import time
from pathlib import Path


def rewrite_in_place(path: str | Path, content: bytes) -> None:
    """Write ``content`` over the file's first bytes (the same size, if ``content`` has it),
    then put its old atime and mtime back. Retries the restore until the ctime has moved: on a
    coarse clock two changes within one tick share a ctime, which is the racily clean case
    (never cached), not the one a test of the cache key means."""
    before = os.stat(path)
    with open(path, "r+b") as handle:
        handle.write(content)
    deadline = time.monotonic() + 5
    while True:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.stat(path)
        if after.st_ctime_ns != before.st_ctime_ns:
            break
        assert time.monotonic() < deadline, "the ctime never moved"
        time.sleep(0.005)
    assert (after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_dev,
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
