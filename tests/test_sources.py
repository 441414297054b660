"""Source observation: streaming sha256, the (path, device, inode, size, mtime_ns) cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from reconciler.sources import (
    SMALL_FILE,
    CacheEntry,
    _hash_large,
    _hash_small,
    observe,
    sha256_file,
)

OLD = 10**18  # an mtime far enough in the past to be cacheable


def make(tmp_path: Path, name: str, content: bytes, mtime: int | None = OLD) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))
    return str(path)


def test_sha256_is_the_full_content_hash(tmp_path: Path) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)
    path = make(tmp_path, "big.bin", content)
    assert sha256_file(path) == hashlib.sha256(content).hexdigest()


def test_many_files_are_hashed_and_cacheable(tmp_path: Path) -> None:
    paths = [make(tmp_path, f"f{i}", f"content {i}".encode()) for i in range(50)]
    seen = observe(paths, {}, str(tmp_path))
    assert seen.hashed_files == 50
    for i, path in enumerate(paths):
        assert seen.files[path].sha256 == hashlib.sha256(f"content {i}".encode()).hexdigest()
    assert set(seen.new_cache) == set(paths)


def test_small_and_large_files_in_one_observation(tmp_path: Path) -> None:
    small = os.urandom(SMALL_FILE)  # the largest size read in one call
    large = os.urandom(SMALL_FILE + 1)  # the smallest size read by a thread
    paths = [
        make(tmp_path, "small", small),
        make(tmp_path, "large", large),
        make(tmp_path, "e", b""),
    ]
    seen = observe(paths, {}, str(tmp_path))
    assert [seen.files[p].sha256 for p in paths] == [
        hashlib.sha256(c).hexdigest() for c in (small, large, b"")
    ]
    assert seen.hashed_bytes == 2 * SMALL_FILE + 1


@pytest.mark.parametrize("hasher", [_hash_small, _hash_large])
@pytest.mark.parametrize("change", ["grown", "rewritten", "replaced"])
def test_a_file_that_changes_after_its_stat_is_not_hashed(
    tmp_path: Path, hasher, change: str
) -> None:
    path = make(tmp_path, "a", b"x" * 4000)
    before = os.stat(path)
    if change == "grown":
        with open(path, "ab") as handle:
            handle.write(b"more")
    elif change == "rewritten":  # same size, new mtime
        make(tmp_path, "a", b"y" * 4000, mtime=OLD + 1)
    else:  # another file renamed over it: a new inode
        os.replace(make(tmp_path, "b", b"x" * 4000), path)
    digest, error = hasher(path, before, str(tmp_path))
    assert digest is None and error is not None and "changed while it was being read" in error


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    path = make(tmp_path, "a", b"hello")
    cache = observe([path], {}, str(tmp_path)).new_cache
    again = observe([path], cache, str(tmp_path))
    assert again.hashed_files == 0 and again.files[path].cached


def test_the_cache_is_keyed_by_size_mtime_and_inode(tmp_path: Path) -> None:
    path = make(tmp_path, "a", b"hello")
    entry = observe([path], {}, str(tmp_path)).new_cache[path]
    lying = {path: CacheEntry(entry.device, entry.inode, entry.size, entry.mtime_ns, "0" * 64)}
    assert (
        observe([path], lying, str(tmp_path)).files[path].sha256 == "0" * 64
    )  # trusted when all match

    # an editor's atomic save: same size, same mtime, but a new inode
    replacement = make(tmp_path, "b", b"HELLO")
    os.replace(replacement, path)
    assert os.stat(path).st_ino != entry.inode
    assert (
        observe([path], lying, str(tmp_path)).files[path].sha256
        == hashlib.sha256(b"HELLO").hexdigest()
    )

    # same inode and size, another mtime
    same_inode = {path: CacheEntry(entry.device, os.stat(path).st_ino, 5, OLD, "0" * 64)}
    assert observe([path], same_inode, str(tmp_path)).files[path].sha256 == "0" * 64
    os.utime(path, ns=(OLD + 1, OLD + 1))
    assert (
        observe([path], same_inode, str(tmp_path)).files[path].sha256
        == hashlib.sha256(b"HELLO").hexdigest()
    )


def test_a_racily_clean_file_is_not_cached(tmp_path: Path) -> None:
    path = make(tmp_path, "new", b"just written", mtime=None)
    seen = observe([path], {}, str(tmp_path))
    assert seen.files[path].sha256 is not None
    assert path not in seen.new_cache


def test_a_missing_file_is_an_observation_error(tmp_path: Path) -> None:
    seen = observe([str(tmp_path / "nope")], {}, str(tmp_path))
    observation = seen.files[str(tmp_path / "nope")]
    assert observation.sha256 is None and "No such file" in (observation.error or "")
