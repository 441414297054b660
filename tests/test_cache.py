"""The caches outside the state file: what they spare, and that they can never do harm."""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cli_process import reconcile
from planning import World
from rewrites import rewrite_in_place

import reconciler.manifests.load as load_module
from reconciler.cache import Cache, default_folder
from reconciler.manifests.validate import validate_tree
from reconciler.observe import sources
from reconciler.plan.planner import make_plan


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    world = World(tmp_path).platform("CDN").rule("R", "CDN")
    for i in range(5):
        world.asset(f"VID-{i}", f"content {i}".encode())
    world.manifests()
    for path in world.media.iterdir():  # an mtime long ago, as an archive leaves it
        os.utime(path, ns=(10**18, 10**18))
    # their ctime is now, and no one can set it back: without a racily clean window they are
    # cached at once instead of RACY_SECONDS from now
    monkeypatch.setattr(sources, "RACY_SECONDS", 0.0)
    return world


def test_a_second_dry_run_reads_no_master_again(world: World, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    manifests = world.manifests()
    first = make_plan(manifests, world.store, cache=cache)
    assert first.observed.hashed_files == 5
    second = make_plan(manifests, world.store, cache=cache)
    assert second.observed.hashed_files == 0
    assert [a.checksum for a in second.actions] == [a.checksum for a in first.actions]
    assert not world.store.path.exists()  # still a dry run: no state file


def test_a_changed_master_is_read_again(world: World, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    manifests = world.manifests()
    make_plan(manifests, world.store, cache=cache)
    world.write_file("vid-3.mp4", b"changed content")
    again = make_plan(manifests, world.store, cache=cache)
    assert again.observed.hashed_files == 1


def test_a_same_size_rewrite_with_its_mtime_restored_is_read_again(
    world: World, tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "cache")
    manifests = world.manifests()
    make_plan(manifests, world.store, cache=cache)
    rewrite_in_place(world.media / "vid-3.mp4", b"CONTENT 3")
    again = make_plan(manifests, world.store, cache=cache)
    assert again.observed.hashed_files == 1
    (vid3,) = [a for a in again.actions if a.asset == "VID-3"]
    assert vid3.checksum == hashlib.sha256(b"CONTENT 3").hexdigest()
    assert make_plan(manifests, world.store, cache=cache).observed.hashed_files == 0


def test_hash_entries_from_before_ctime_are_misses(world: World, tmp_path: Path) -> None:
    """A cache folder written by a version whose entries had no ctime_ns: every entry is a
    miss (even one that would match and lies about the sha256), and the file is rewritten in
    the new shape."""
    cache = Cache(tmp_path / "cache")
    manifests = world.manifests()
    old_shape = {}
    for path in sorted(world.media.iterdir()):
        st = path.stat()
        old_shape[str(path)] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "0" * 64)
    hash_file = cache._hash_file(manifests.media_root)
    assert hash_file is not None
    hash_file.parent.mkdir(parents=True)
    hash_file.write_bytes(marshal.dumps(old_shape))
    plan = make_plan(manifests, world.store, cache=cache)
    assert plan.observed.hashed_files == 5
    assert sorted(a.checksum for a in plan.actions) == sorted(
        hashlib.sha256(f"content {i}".encode()).hexdigest() for i in range(5)
    )
    rewritten = cache.hashes(manifests.media_root)
    assert set(rewritten) == set(old_shape)
    assert all(len(entry) == len(sources.CacheEntry._fields) for entry in rewritten.values())
    assert make_plan(manifests, world.store, cache=cache).observed.hashed_files == 0


def test_unchanged_manifests_are_not_parsed_again(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Cache(tmp_path / "cache")
    first = validate_tree(world.manifests_dir, world.media, cache=cache)
    parsed: list[str] = []
    original = load_module.parse
    monkeypatch.setattr(
        load_module,
        "parse",
        lambda data, display, *a, **k: parsed.append(display) or original(data, display, *a, **k),
    )
    second = validate_tree(world.manifests_dir, world.media, cache=cache)
    assert parsed == []
    assert second.counts == first.counts
    assert set(second.manifest_set.assets) == set(first.manifest_set.assets)
    (world.manifests_dir / "more.yaml").write_text(
        "apiVersion: mediasync/v1\nkind: Platform\nmetadata: {code: S3}\n"
        "spec: {platform_name: S, platform_type: cdn, driver: local, target: ../s3}\n"
    )
    third = validate_tree(world.manifests_dir, world.media, cache=cache)
    assert [Path(p).name for p in parsed] == ["more.yaml"]
    assert "S3" in third.manifest_set.platforms


def test_a_corrupt_cache_is_ignored(world: World, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    manifests = world.manifests()
    make_plan(manifests, world.store, cache=cache)
    validate_tree(world.manifests_dir, world.media, cache=cache)
    for path in (tmp_path / "cache").rglob("*.marshal"):
        path.write_bytes(b"\x00garbage")
    result = validate_tree(world.manifests_dir, world.media, cache=cache)
    assert result.ok and len(result.manifest_set.assets) == 5
    assert make_plan(manifests, world.store, cache=cache).observed.hashed_files == 5


def test_problems_are_never_cached(world: World, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    (world.manifests_dir / "bad.yaml").write_text("a: [\n")
    for _ in range(2):
        result = validate_tree(world.manifests_dir, world.media, cache=cache)
        assert [p.error for p in result.errors] == ["yaml-syntax"]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_a_run_writes_its_cache_in_reconcile_cache_dir_unless_no_cache(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "user-cache"
    monkeypatch.setenv("RECONCILE_CACHE_DIR", str(folder))
    for command in (["--dry-run"], ["plan"], []):  # [] is an apply, which also hashes
        done = reconcile(*command, *world.cli_args(), "--no-cache")
        assert done.returncode == 0, done.stderr
        assert not folder.exists()
    done = reconcile("--dry-run", *world.cli_args())
    assert done.returncode == 0, done.stderr
    assert _files(folder / "manifests"), "a dry run without --no-cache caches the manifests"


def test_no_cache_reads_nothing_from_the_cache(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache whose every entry is garbage of the right name changes nothing with --no-cache,
    and is neither read nor replaced."""
    folder = tmp_path / "user-cache"
    monkeypatch.setenv("RECONCILE_CACHE_DIR", str(folder))
    assert reconcile("--dry-run", *world.cli_args()).returncode == 0
    entries = _files(folder)
    assert entries
    for entry in entries:  # documents that would plan nothing if they were read
        entry.write_bytes(marshal.dumps([]))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in entries}
    done = reconcile("--dry-run", *world.cli_args(), "--no-cache", "--output", "json")
    assert done.returncode == 0, done.stderr
    # the manifests were parsed from their files: five assets to create, not none
    assert [a["action"] for a in json.loads(done.stdout)["actions"]] == ["create"] * 5
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in _files(folder)} == before


def test_the_user_cache_folder_comes_from_platformdirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without RECONCILE_CACHE_DIR: $XDG_CACHE_HOME/reconcile when it is set, else the
    platform's own folder under the home directory."""
    monkeypatch.delenv("RECONCILE_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    own = {"darwin": "Library/Caches/reconcile"}.get(sys.platform, ".cache/reconcile")
    assert default_folder() == tmp_path / "home" / own
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert default_folder() == tmp_path / "xdg" / "reconcile"
    monkeypatch.setenv("RECONCILE_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_folder() == tmp_path / "explicit"


def test_a_dry_run_without_reconcile_cache_dir_caches_under_xdg_cache_home(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECONCILE_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    done = reconcile("--dry-run", *world.cli_args())
    assert done.returncode == 0, done.stderr
    if sys.platform.startswith("linux"):
        assert _files(tmp_path / "xdg" / "reconcile" / "manifests")
    else:
        assert _files(default_folder() / "manifests")


@pytest.mark.parametrize("no_cache", [True, False])
def test_watch_with_no_cache_writes_no_cache(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_cache: bool
) -> None:
    folder = tmp_path / "user-cache"
    monkeypatch.setenv("RECONCILE_CACHE_DIR", str(folder))
    command = [sys.executable, "-m", "reconciler", "watch", *world.cli_args()]
    command += ["--interval", "3600", "--log-format", "json"]
    watch = subprocess.Popen(
        command + (["--no-cache"] if no_cache else []), stdout=subprocess.PIPE, text=True
    )
    timer = threading.Timer(60, watch.kill)  # a watch that never logs a cycle fails, not hangs
    timer.start()
    try:
        assert watch.stdout is not None
        events = (json.loads(line)["event"] for line in watch.stdout)
        assert "cycle" in events, "the watch stopped before its first cycle"
        watch.send_signal(signal.SIGTERM)
        assert watch.wait(15) == 0
    finally:
        timer.cancel()
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert folder.exists() is not no_cache
