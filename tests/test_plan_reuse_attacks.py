"""Attacks on the kept plan: worlds where a dry run answered from the last plan although a
fresh plan (``--no-cache``) would have said something else at that moment.

Each test keeps a plan, changes what a plan depends on in a way the signature of the
manifests, the media root and the state file did not see (the roles of the two folders, the
spelling of a path, a secret file or a target folder outside both, ``$HOME``, a cache folder
inside the media root, the libraries that parse and diff, a symlink's hop outside the root,
the user), and compares the next dry run with a fresh plan. The last ones are about the
cache folder as another user may find it (an entry under another key, another user's entry,
a FIFO in place of an entry).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from planning import World
from test_plan_reuse import library as reuse_library
from test_plan_reuse import where

from reconciler import ops
from reconciler.cache import Cache
from reconciler.plan import reuse
from reconciler.render.formats import PLAN_RENDERERS
from reconciler.store.db import StateStore


@pytest.fixture(autouse=True)
def settled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worlds made a moment ago count as settled (subprocess runs settle their worlds)."""
    monkeypatch.setattr(reuse, "RACY_SECONDS", 0.0)


def library(root: Path, **platform: Any) -> World:
    return reuse_library(root, "lib/**/*.jpg", **platform)


def dry_run(place: ops.Workspace, cache: Cache, **options: Any) -> tuple[Any, bool]:
    """What `reconcile --dry-run` does: (the plan as JSON, or the problems of invalid
    manifests, or the error; whether it was the kept plan)."""
    chosen = ops.Options(**options)
    try:
        seen = ops.look(place, chosen, cache)
        kept = ops.reused_plan(seen, place, chosen, cache)
        if kept is not None:
            return shown(kept), True
        loaded = ops.load(place, cache)
        if loaded.manifest_set is None:
            return [p.format() for p in loaded.problems], False
        return shown(ops.plan(loaded.manifest_set, place, chosen, cache, seen)), False
    except Exception as exc:  # compared like any other answer
        return f"{type(exc).__name__}: {exc}", False


def shown(plan: Any) -> Any:
    out = json.loads(PLAN_RENDERERS["json"](plan, False))
    del out["created_at"]
    return out


def kept_then(place: ops.Workspace, cache: Cache) -> None:
    """Make a plan and check that the next dry run answers from it."""
    dry_run(place, cache)
    assert dry_run(place, cache)[1], "the plan was not kept"


def same_as_fresh(place: ops.Workspace, cache: Cache) -> Any:
    answer, _ = dry_run(place, cache)
    fresh, _ = dry_run(place, Cache(None))
    assert answer == fresh
    return fresh


# -- the key: which plan a world could be ------------------------------------------------------


def test_the_manifests_and_the_media_root_do_not_trade_places(tmp_path: Path) -> None:
    """--manifests A --media-root B and --manifests B --media-root A walk the same folders:
    the roles must be part of the key (the second is not even a valid pair here)."""
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    kept_then(where(world), cache)
    swapped = ops.Workspace(world.media, world.manifests_dir, world.store.path)
    fresh = same_as_fresh(swapped, cache)
    assert "no manifest files" in fresh


def test_a_state_path_spelled_otherwise_is_shown_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same state file by another name (relative, through a symlink) is the same world,
    but the plan names the state as the command was given it: a kept plan named it as the
    first command did."""
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    kept_then(where(world), cache)
    monkeypatch.chdir(tmp_path)
    relative = ops.Workspace(world.manifests_dir, world.media, Path("state/reconciler.duckdb"))
    fresh = same_as_fresh(relative, cache)
    assert fresh["state"] == "state/reconciler.duckdb"
    (tmp_path / "alias").symlink_to(tmp_path / "state")
    linked = ops.Workspace(Path("manifests"), Path("media"), Path("alias/reconciler.duckdb"))
    same_as_fresh(linked, cache)


# -- what the manifests reference outside both folders -----------------------------------------


def test_a_secret_symlink_outside_the_roots_retargeted_onto_a_master(tmp_path: Path) -> None:
    """A credential file is never published: which files those are is found by following
    the secret_file references, which may lead through a symlink outside both folders."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token-file").write_text("token")
    (secrets / "token").symlink_to(secrets / "token-file")
    world = library(tmp_path, auth={"secret_file": str(secrets / "token")})
    cache = Cache(tmp_path / "cache")
    kept_then(where(world), cache)
    (secrets / "token").unlink()
    (secrets / "token").symlink_to(world.media / "lib" / "one.jpg")  # a generated asset
    fresh = same_as_fresh(where(world), cache)
    assert fresh["summary"]["create"] == 2  # IMG-one is skipped, with a warning
    (secrets / "token").unlink()
    (secrets / "token").symlink_to(secrets / "token-file")
    kept_then(where(world), cache)  # (with the warning it was not kept)
    (secrets / "token").unlink()
    (secrets / "token").symlink_to(world.media / "vid-a.mp4")  # a declared asset
    fresh = same_as_fresh(where(world), cache)
    assert "is a credential file" in fresh[0]


def test_a_target_folder_led_into_the_media_root(tmp_path: Path) -> None:
    """No local target may lie inside the media root (copies would be read back as masters);
    the target ../out/cdn is outside both folders, and ``out`` a symlink."""
    world = library(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "elsewhere")
    cache = Cache(tmp_path / "cache")
    kept_then(where(world), cache)
    (tmp_path / "out").unlink()
    (tmp_path / "out").symlink_to(world.media)
    fresh = same_as_fresh(where(world), cache)
    assert "lies inside the media root" in fresh[0]


def test_home_is_what_a_tilde_means(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = library(tmp_path, target="~/out/cdn")
    cache = Cache(tmp_path / "cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    kept_then(where(world), cache)
    monkeypatch.setenv("HOME", str(world.media))
    fresh = same_as_fresh(where(world), cache)
    assert "lies inside the media root" in fresh[0]


# -- what the walk leaves out ------------------------------------------------------------------


def test_a_cache_folder_inside_the_media_root_hides_no_master(tmp_path: Path) -> None:
    """The cache folder is not the tool's own for validation (a file in it can be a master),
    so the walk may not leave it out either."""
    world = library(tmp_path)
    cache = Cache(world.media / "lib")  # RECONCILE_CACHE_DIR=media/lib
    dry_run(where(world), cache)
    (world.media / "lib" / "two.jpg").write_bytes(b"two")
    fresh = same_as_fresh(where(world), cache)
    assert fresh["summary"]["create"] >= 4


def test_a_symlinks_hop_outside_the_root_retargeted_to_a_hard_link(tmp_path: Path) -> None:
    """media/lib/one.jpg -> ../../hop -> media/store/one.bin is a master inside the root;
    the hop retargeted to a hard link of the same file outside the root leads outside it,
    though every stat the walk takes is the same."""
    world = library(tmp_path)
    (world.media / "store").mkdir()
    inside = world.media / "store" / "one.bin"
    inside.write_bytes(b"one")
    os.link(inside, tmp_path / "outside.bin")  # made before the plan: no ctime changes later
    hop = tmp_path / "hop"
    hop.symlink_to(inside)
    (world.media / "lib" / "one.jpg").unlink()
    (world.media / "lib" / "one.jpg").symlink_to(hop)
    cache = Cache(tmp_path / "cache")
    kept_then(where(world), cache)
    hop.unlink()
    hop.symlink_to(tmp_path / "outside.bin")
    fresh = same_as_fresh(where(world), cache)
    assert "outside the media root" in fresh[0]


# -- the program that plans -------------------------------------------------------------------


def test_the_libraries_that_parse_and_diff_are_part_of_the_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another PyYAML, DuckDB or wcmatch (a pip upgrade, another virtualenv running the same
    source with the same user cache) may parse, match or diff otherwise."""
    fake = tmp_path / "site" / "fakelib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("VERSION = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(reuse, "LIBRARIES", (*reuse.LIBRARIES, "fakelib"))
    world = library(tmp_path)
    before = ops.look(where(world), cache=Cache(tmp_path / "cache")).signature
    (fake / "__init__.py").unlink()
    (fake / "__init__.py").write_text("VERSION = 2\n")  # reinstalled
    assert ops.look(where(world), cache=Cache(tmp_path / "cache")).signature != before


def test_the_cli_answers_for_the_roles_it_was_given(tmp_path: Path) -> None:
    """End to end: the swapped pair exits 1 with the error a fresh plan gives."""
    world = library(tmp_path)
    past = time.time() - 60
    for path in [*tmp_path.rglob("*")]:
        os.utime(path, (past, past), follow_symlinks=False)
    time.sleep(2.1)  # settled for the racy rule of the subprocess
    env = {**os.environ, "RECONCILE_CACHE_DIR": str(tmp_path / "cache")}

    def cli(manifests: Path, media: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        args = ["--manifests", str(manifests), "--media-root", str(media)]
        return subprocess.run(
            [sys.executable, "-m", "reconciler", "--dry-run", *args,
             "--state", str(world.store.path), *extra],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip

    assert cli(world.manifests_dir, world.media).returncode == 0
    assert list((tmp_path / "cache" / "plans").iterdir())
    swapped = cli(world.media, world.manifests_dir)
    fresh = cli(world.media, world.manifests_dir, "--no-cache")
    assert (swapped.returncode, swapped.stdout, swapped.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )
    assert fresh.returncode == 1


def test_a_state_reached_through_a_symlink_names_the_symlink(tmp_path: Path) -> None:
    world = library(tmp_path)
    (tmp_path / "alias.duckdb").symlink_to(world.store.path)
    world.applied()
    cache = Cache(tmp_path / "cache")
    kept_then(where(world), cache)
    world.store = StateStore(tmp_path / "alias.duckdb", lock_timeout=5)
    assert same_as_fresh(where(world), cache)["state"] == str(tmp_path / "alias.duckdb")


def test_another_user_is_another_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Which masters can be read depends on who reads (a file only root may read is blocked
    for a user and planned for root), and `sudo -E reconcile --dry-run` finds the user's own
    cache: the user and groups are part of the key. (Not run as two users here: the test's
    interpreter may not be reachable by another user.)"""
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    kept_then(where(world), cache)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    assert not dry_run(where(world), cache)[1]


# -- the cache folder as another user may find it --------------------------------------------


def _entry_of(cache: Cache, place: ops.Workspace, **options: Any) -> Path:
    key = ops.look(place, ops.Options(**options), cache).key
    return cache._plan_file(key)


def test_an_entry_under_another_key_is_not_this_plan(tmp_path: Path) -> None:
    """The --prune plan and the plain one have the same signature (the option is in the key
    only): an entry moved or linked to the other's name (by anyone who can write the folder,
    such as a shared RECONCILE_CACHE_DIR=/tmp/...) must not answer for it."""
    world = library(tmp_path)
    world.applied()
    world.remove("Asset", "VID-B").manifests()  # its copy is an orphan; --prune deletes it
    cache = Cache(tmp_path / "cache")
    kept_then(where(world), cache)
    dry_run(where(world), cache, prune=True, force=True)
    plain, pruned = _entry_of(cache, where(world)), _entry_of(cache, where(world), prune=True)
    plain.unlink()
    os.link(pruned, plain)
    answer, _ = dry_run(where(world), cache)
    assert answer == dry_run(where(world), Cache(None))[0]
    assert answer["summary"]["delete"] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="gives a file to another user")
def test_an_entry_another_user_wrote_is_not_read(tmp_path: Path) -> None:
    """A cache folder another user can write (created by them first in /tmp): an entry they
    planted, made to match the signature (stat is all it takes), is not this user's plan."""
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    kept_then(where(world), cache)
    entry = _entry_of(cache, where(world))
    os.chown(entry, 4242, 4242)
    assert not dry_run(where(world), cache)[1]
    os.chown(entry, os.geteuid(), os.getegid())
    entry.chmod(0o666)  # anyone may write it
    assert not dry_run(where(world), cache)[1]


def test_a_fifo_for_an_entry_does_not_hang(tmp_path: Path) -> None:
    world, cache = library(tmp_path), Cache(tmp_path / "cache")
    kept_then(where(world), cache)
    entry = _entry_of(cache, where(world))
    entry.unlink()
    os.mkfifo(entry)
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from reconciler.cache import Cache; "
         "print(Cache(Path(sys.argv[1])).plan(sys.argv[2]))",
         str(tmp_path / "cache"), ops.look(where(world), None, cache).key],
        capture_output=True, text=True, timeout=20, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "None"
