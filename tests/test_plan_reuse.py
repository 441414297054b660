"""A dry run of an unchanged world answers from the last plan; any change plans again.

The plan is kept in the user cache with the signature of everything it was made from (the
manifests folder, the media root, the state file, this program). These tests make a plan
through the use cases the CLI calls (look before loading, reuse, else load and plan), change
one input at a time, and check that the kept plan is never served for a changed world: a
master's bytes (same size, mtime put back), a new file an AssetSet matches, a manifest, the
state (after an apply), a symlink's target, a master made unreadable, the --prune option.
A kept plan gets the schedules, narrowing and guards of now. Subprocess runs check the CLI
end to end: the same output and exit codes as planning again, no traceback on a corrupt entry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from planning import World

from reconciler import ops
from reconciler.cache import Cache
from reconciler.errors import UsageError
from reconciler.plan import reuse
from reconciler.plan.actions import Plan


@pytest.fixture(autouse=True)
def settled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worlds made a moment ago count as settled (the racy rule has its own test)."""
    monkeypatch.setattr(reuse, "RACY_SECONDS", 0.0)


def library(tmp_path: Path, include: str = "lib/*.jpg", **platform: object) -> World:
    """Two declared assets and an AssetSet over lib/, on one local platform."""
    world = World(tmp_path).platform("CDN", **platform).rule("R", "CDN")
    world.asset("VID-A", b"alpha").asset("VID-B", b"bravo")
    (world.media / "lib").mkdir()
    (world.media / "lib" / "one.jpg").write_bytes(b"one")
    world._doc(
        "AssetSet",
        "LIB",
        {"include": include, "asset_type": "image", "category": "c",
         "code_template": "IMG-{stem}"},
    )  # fmt: skip
    world.manifests()
    return world


def where(world: World) -> ops.Workspace:
    return ops.Workspace(world.manifests_dir, world.media, world.store.path)


def dry_run(world: World, cache: Cache, **options: object) -> tuple[Plan, bool]:
    """What `reconcile --dry-run` does: (the plan, whether it was the kept one)."""
    place, chosen = where(world), ops.Options(**options)  # type: ignore[arg-type]
    seen = ops.look(place, chosen, cache)
    kept = ops.reused_plan(seen, place, chosen, cache)
    if kept is not None:
        return kept, True
    loaded = ops.load(place, cache)
    assert loaded.manifest_set is not None, [p.format() for p in loaded.problems]
    return ops.plan(loaded.manifest_set, place, chosen, cache, seen), False


def digest(plan: Plan) -> list[tuple[str, str, str, str | None]]:
    return sorted((a.action, a.asset, a.platform, a.checksum) for a in plan.actions)


def test_an_unchanged_world_is_answered_by_the_kept_plan(tmp_path: Path) -> None:
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    first, reused = dry_run(world, cache)
    assert not reused and len(first.changes) == 3
    again, reused = dry_run(world, cache)
    assert reused
    assert digest(again) == digest(first)
    assert [a.to_dict() for a in again.actions] == [a.to_dict() for a in first.actions]
    assert again.state_fingerprint == first.state_fingerprint
    assert again.destinations == first.destinations and again.notes == first.notes


def test_without_a_cache_nothing_is_kept(tmp_path: Path) -> None:
    world = library(tmp_path)
    assert not dry_run(world, Cache(None))[1]
    assert not dry_run(world, Cache(None))[1]


def _same_size_new_bytes(world: World) -> None:
    path = world.media / "vid-a.mp4"
    before = path.stat()
    path.write_bytes(b"ALPHA")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime put back


def _new_matching_file(world: World) -> None:
    (world.media / "lib" / "two.jpg").write_bytes(b"two")


def _edited_manifest(world: World) -> None:
    world.asset("VID-C", b"charlie")
    world.manifests()


def _retargeted_symlink(world: World) -> None:
    link = world.media / "lib" / "one.jpg"
    (world.media / "lib" / "other.bin").write_bytes(b"one")  # not matched, same bytes
    link.unlink()
    link.symlink_to("other.bin")


CHANGES = {
    "same size, new bytes, mtime put back": _same_size_new_bytes,
    "a new file the AssetSet matches": _new_matching_file,
    "an edited manifest": _edited_manifest,
    "a file replaced by a symlink": _retargeted_symlink,
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_any_change_to_manifests_or_masters_plans_again(tmp_path: Path, change: str) -> None:
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    dry_run(world, cache)
    assert dry_run(world, cache)[1]
    CHANGES[change](world)
    fresh, reused = dry_run(world, cache)
    assert not reused
    expected = world.plan()
    assert digest(fresh) == digest(expected)


def test_a_master_made_unreadable_plans_again(tmp_path: Path) -> None:
    """The mode is in the signature (even where root could still read the file)."""
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    dry_run(world, cache)
    (world.media / "vid-b.mp4").chmod(0)
    assert not dry_run(world, cache)[1]


def test_a_write_to_the_state_plans_again(tmp_path: Path) -> None:
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    first, _ = dry_run(world, cache)
    world.applied()  # records every placement synced
    after, reused = dry_run(world, cache)
    assert not reused
    assert len(first.changes) == 3 and after.changes == []
    assert dry_run(world, cache)[1]  # and that plan is kept in its turn


def test_prune_is_another_plan(tmp_path: Path) -> None:
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    dry_run(world, cache)
    assert not dry_run(world, cache, prune=True)[1]
    assert dry_run(world, cache, prune=True)[1]
    assert dry_run(world, cache)[1]


def test_a_kept_plan_is_narrowed_and_checked_now(tmp_path: Path) -> None:
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    dry_run(world, cache)
    narrowed, reused = dry_run(world, cache, platform="CDN")
    assert reused and narrowed.platform == "CDN" and len(narrowed.changes) == 3
    with pytest.raises(UsageError, match="--rule RR: the manifests declare no such code"):
        dry_run(world, cache, rule="RR")


def test_a_kept_plan_waits_for_the_schedule_of_now(tmp_path: Path) -> None:
    world = World(tmp_path).platform("CDN").rule("R", "CDN", auto_sync=False)
    world.asset("VID-A", b"alpha").manifests()
    cache = Cache(tmp_path / "cache")
    first, _ = dry_run(world, cache)
    assert [a.waiting is not None for a in first.changes] == [True]
    forced, reused = dry_run(world, cache, rule="R")
    assert reused and [a.waiting for a in forced.changes] == [None]
    assert forced.created_at >= first.created_at


def test_manifests_with_warnings_are_planned_every_time(tmp_path: Path) -> None:
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    world._doc(
        "AssetSet",
        "EMPTY",
        {"include": "none/*.jpg", "asset_type": "image", "category": "c",
         "code_template": "N-{stem}"},
    )  # fmt: skip
    world.manifests()
    dry_run(world, cache)
    assert not dry_run(world, cache)[1]  # its warning is printed by validation each time


def test_a_world_touched_a_moment_ago_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reuse, "RACY_SECONDS", 2.0)
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    dry_run(world, cache)
    assert not dry_run(world, cache)[1]  # the files were written within the last 2 s
    time.sleep(2.1)
    dry_run(world, cache)
    assert dry_run(world, cache)[1]


def test_a_corrupt_or_foreign_entry_is_a_miss(tmp_path: Path) -> None:
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    dry_run(world, cache)
    (entry,) = (tmp_path / "cache" / "plans").iterdir()
    entry.write_bytes(b"\x00not marshal")
    assert not dry_run(world, cache)[1]
    key = ops.look(where(world), ops.Options(), cache).key
    cache.save_plan(key, {"format": reuse.FORMAT, "signature": "x", "actions": 3})
    assert not dry_run(world, cache)[1]
    seen = ops.look(where(world), ops.Options(), cache)
    cache.save_plan(seen.key, {"format": reuse.FORMAT, "signature": seen.signature})
    plan, reused = dry_run(world, cache)  # the right signature, the wrong shape
    assert not reused and len(plan.changes) == 3


def cli(world: World, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECONCILE_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "--dry-run", *world.cli_args(), *extra],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_the_cli_answers_the_same_from_a_kept_plan(tmp_path: Path) -> None:
    world = library(tmp_path)
    past = time.time() - 60  # settled: the racy rule holds in the subprocess
    for path in [*world.media.rglob("*"), *world.manifests_dir.rglob("*")]:
        os.utime(path, (past, past), follow_symlinks=False)
    time.sleep(2.1)  # ctime cannot be put back
    cache = tmp_path / "cache"
    runs = [cli(world, cache, "-o", "json", "--detailed-exitcode") for _ in range(2)]
    assert [r.returncode for r in runs] == [2, 2], runs[0].stderr
    first, second = (json.loads(r.stdout) for r in runs)
    for plan in (first, second):
        del plan["created_at"]
    assert first == second and first["summary"]["create"] == 3
    assert list((cache / "plans").iterdir())  # the second run had a kept plan to answer from
    (world.media / "lib" / "two.jpg").write_bytes(b"two")
    third = json.loads(cli(world, cache, "-o", "json").stdout)
    assert third["summary"]["create"] == 4
    for entry in (cache / "plans").iterdir():
        entry.write_bytes(b"garbage")
    broken = cli(world, cache)
    assert broken.returncode == 0 and "Traceback" not in broken.stderr


def test_the_tools_own_files_in_the_media_root_do_not_count(tmp_path: Path) -> None:
    """The default layout keeps the state beside the manifests; the lock file and the
    rendition cache change with every run, and must not make every plan a new one."""
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    world.store = type(world.store)(world.media / "state.duckdb", lock_timeout=5)
    dry_run(world, cache)
    assert dry_run(world, cache)[1]
    (world.media / "state.duckdb.lock").write_text("12345")
    (world.media / "renditions").mkdir()
    (world.media / "renditions" / "x").write_bytes(b"x")
    assert dry_run(world, cache)[1]
