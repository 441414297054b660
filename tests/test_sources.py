"""Source observation: streaming sha256, the (path, device, inode, size, mtime_ns, ctime_ns)
cache, and the racily clean rule."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from rewrites import rewrite_in_place

from reconciler.observe import sources
from reconciler.observe.sources import (
    SMALL_FILE,
    CacheEntry,
    _hash_large,
    _hash_small,
    cacheable,
    observe,
    sha256_file,
)

OLD = 10**18  # an mtime far in the past (2001), as an archive or `cp --preserve` leaves it


def make(tmp_path: Path, name: str, content: bytes, mtime: int | None = OLD) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))
    return str(path)


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """No racily clean window: a file counts as settled as soon as it is written. A test
    cannot make a ctime old (no one can set it), and waiting RACY_SECONDS in every test that
    wants a cache entry would be slow; the tests of the rule itself keep the real window."""
    monkeypatch.setattr(sources, "RACY_SECONDS", 0.0)


def test_sha256_is_the_full_content_hash(tmp_path: Path) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)
    path = make(tmp_path, "big.bin", content)
    assert sha256_file(path) == hashlib.sha256(content).hexdigest()


def test_many_files_are_hashed_and_cacheable(tmp_path: Path, settled: None) -> None:
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
    assert seen.hashed_files == 3  # every one read: none came from the cache
    assert not any(seen.files[p].cached for p in paths)


@pytest.mark.parametrize("hasher", [_hash_small, _hash_large])
@pytest.mark.parametrize("change", ["grown", "rewritten", "replaced", "mtime restored"])
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
    elif change == "mtime restored":  # same inode, size and mtime: only the ctime tells
        rewrite_in_place(path, b"z" * 4000)
    else:  # another file renamed over it: a new inode
        os.replace(make(tmp_path, "b", b"x" * 4000), path)
    digest, error = hasher(path, before, str(tmp_path))
    assert digest is None and error is not None and "changed while it was being read" in error


def test_an_unchanged_file_is_not_read_again(tmp_path: Path, settled: None) -> None:
    path = make(tmp_path, "a", b"hello")
    cache = observe([path], {}, str(tmp_path)).new_cache
    again = observe([path], cache, str(tmp_path))
    assert again.hashed_files == 0 and again.files[path].cached


def test_the_cache_is_keyed_by_inode_size_mtime_and_ctime(tmp_path: Path, settled: None) -> None:
    path = make(tmp_path, "a", b"hello")
    entry = observe([path], {}, str(tmp_path)).new_cache[path]
    assert entry.ctime_ns == os.stat(path).st_ctime_ns
    lying = {path: entry._replace(sha256="0" * 64)}
    assert (
        observe([path], lying, str(tmp_path)).files[path].sha256 == "0" * 64
    )  # trusted when all match
    assert observe([path], {path: entry._replace(ctime_ns=1)}, str(tmp_path)).hashed_files == 1

    # an editor's atomic save: same size, same mtime, but a new inode
    replacement = make(tmp_path, "b", b"HELLO")
    os.replace(replacement, path)
    assert os.stat(path).st_ino != entry.inode
    assert (
        observe([path], lying, str(tmp_path)).files[path].sha256
        == hashlib.sha256(b"HELLO").hexdigest()
    )

    # same inode and size, another mtime
    now = os.stat(path)
    same_inode = {path: CacheEntry(entry.device, now.st_ino, 5, OLD, now.st_ctime_ns, "0" * 64)}
    assert observe([path], same_inode, str(tmp_path)).files[path].sha256 == "0" * 64
    os.utime(path, ns=(OLD + 1, OLD + 1))
    assert (
        observe([path], same_inode, str(tmp_path)).files[path].sha256
        == hashlib.sha256(b"HELLO").hexdigest()
    )


def test_a_same_size_rewrite_with_its_mtime_restored_is_read_again(
    tmp_path: Path, settled: None
) -> None:
    path = make(tmp_path, "a", b"A" * 4096)
    cache = observe([path], {}, str(tmp_path)).new_cache
    assert observe([path], cache, str(tmp_path)).files[path].cached
    rewrite_in_place(path, b"B" * 4096)
    again = observe([path], cache, str(tmp_path))
    assert again.hashed_files == 1 and not again.files[path].cached
    assert again.files[path].sha256 == hashlib.sha256(b"B" * 4096).hexdigest()
    assert again.new_cache[path].ctime_ns == os.stat(path).st_ctime_ns != cache[path].ctime_ns


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("old", id="5-tuple without ctime"),
        pytest.param(None, id="None"),
        pytest.param("0" * 64, id="a string"),
        pytest.param([0, 0, 0, 0, 0, "0" * 64], id="a list"),
    ],
)
def test_an_entry_of_another_shape_is_a_miss(tmp_path: Path, settled: None, entry) -> None:
    path = make(tmp_path, "a", b"hello")
    st = os.stat(path)
    if entry == "old":  # what caches held before ctime_ns: it would match in every field
        entry = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "0" * 64)
    seen = observe([path], {path: entry}, str(tmp_path))
    assert seen.hashed_files == 1 and not seen.files[path].cached
    assert seen.files[path].sha256 == hashlib.sha256(b"hello").hexdigest()
    assert seen.new_cache[path] == CacheEntry(
        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, seen.files[path].sha256
    )


def test_a_racily_clean_file_is_not_cached(tmp_path: Path) -> None:
    path = make(tmp_path, "new", b"just written", mtime=None)
    seen = observe([path], {}, str(tmp_path))
    assert seen.files[path].sha256 is not None
    assert path not in seen.new_cache


def test_an_old_mtime_does_not_make_a_fresh_file_settled(tmp_path: Path) -> None:
    """Its mtime was set back (an archive's date), but its ctime is now: a change in this same
    tick, with the mtime set back again, would go unseen, so the file is not cached yet."""
    path = make(tmp_path, "unzipped", b"just extracted", mtime=OLD)
    seen = observe([path], {}, str(tmp_path))
    assert seen.files[path].sha256 is not None
    assert path not in seen.new_cache and cacheable(seen) == {}


def test_a_file_is_cached_once_its_ctime_has_settled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "RACY_SECONDS", 0.2)
    path = make(tmp_path, "a", b"hello", mtime=OLD)
    assert path not in observe([path], {}, str(tmp_path)).new_cache
    time.sleep(0.3)
    assert path in observe([path], {}, str(tmp_path)).new_cache


def test_cacheable_keeps_hits_and_settled_files_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that was racily clean when it was read stays out, even once the window has
    passed by the time the cache is written: it may have changed unseen while it was read."""
    monkeypatch.setattr(sources, "RACY_SECONDS", 0.2)
    hit, settled_file = make(tmp_path, "hit", b"cached"), make(tmp_path, "old", b"settled")
    time.sleep(0.3)
    entry = observe([hit], {}, str(tmp_path)).new_cache[hit]
    fresh = make(tmp_path, "fresh", b"racily clean")
    seen = observe([hit, settled_file, fresh], {hit: entry}, str(tmp_path))
    assert seen.files[hit].cached and seen.hashed_files == 2
    time.sleep(0.3)  # the window has passed for "fresh" too, but not when it was read
    assert cacheable(seen) == {hit: entry, settled_file: seen.new_cache[settled_file]}


def test_a_missing_file_is_an_observation_error(tmp_path: Path) -> None:
    seen = observe([str(tmp_path / "nope")], {}, str(tmp_path))
    observation = seen.files[str(tmp_path / "nope")]
    assert observation.sha256 is None and "No such file" in (observation.error or "")
