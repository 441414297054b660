"""The hash cache in the state (``file_hashes``, in the DuckDB file or the PostgreSQL schema):
keyed by ctime too, and rows written before schema version 10 (no ctime_ns) are misses, never
a crash or a stale checksum."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from planning import World, action_of, rows
from rewrites import rewrite_in_place

from reconciler.observe import sources
from reconciler.observe.sources import CacheEntry
from reconciler.store import hash_cache, migrations

OLD = 10**18  # an mtime long ago, as an archive or `cp --preserve` leaves it


@pytest.fixture
def world(tmp_path: Path, state_at: str, monkeypatch: pytest.MonkeyPatch) -> World:
    world = World(tmp_path, state_at).platform("CDN").asset("VID-A", b"A" * 4096).rule("R", "CDN")
    os.utime(world.media / "vid-a.mp4", ns=(OLD, OLD))
    # its ctime is now and cannot be set back: no racily clean window, so that it is cached at
    # once instead of RACY_SECONDS from now
    monkeypatch.setattr(sources, "RACY_SECONDS", 0.0)
    return world


def recorded(world: World) -> None:
    """Apply the plan on paper and record its hash cache, as `reconcile` does."""
    plan = world.applied()
    assert plan.observed is not None
    with world.store.writing() as con:
        hash_cache.save(con, plan.observed.new_cache)


def test_entries_round_trip_with_their_ctime(world: World) -> None:
    master = str(world.media / "vid-a.mp4")
    st = os.stat(master)
    entry = CacheEntry(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, "a" * 64)
    with world.store.writing() as con:
        hash_cache.save(con, {master: entry})
        assert hash_cache.load(con) == {master: tuple(entry)}
        hash_cache.save(con, {master: entry._replace(ctime_ns=st.st_ctime_ns + 1)})
        assert hash_cache.load(con)[master][4] == st.st_ctime_ns + 1


def test_a_same_size_rewrite_with_its_mtime_restored_is_planned_as_an_update(
    world: World,
) -> None:
    recorded(world)
    assert world.plan().observed.hashed_files == 0  # the state file's cache vouches for it
    rewrite_in_place(world.media / "vid-a.mp4", b"B" * 4096)
    plan = world.plan()
    assert plan.observed.hashed_files == 1
    action = action_of(plan, "VID-A", "CDN")
    assert action.action == "update"
    assert action.checksum == hashlib.sha256(b"B" * 4096).hexdigest()


def test_rows_from_before_schema_10_are_misses(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state file of schema version 9 holds a row that matches the master in every column it
    has but lies about the sha256: after the migration the row is not used, the master is read,
    and recording the new observation replaces the row."""
    master = world.media / "vid-a.mp4"
    everything = migrations.all_migrations()
    v9 = tuple(m for m in everything if m.version <= 9)
    monkeypatch.setattr(migrations, "all_migrations", lambda: v9)
    with world.store.writing() as con:
        st = master.stat()
        con.execute(
            "INSERT INTO file_hashes VALUES (?, ?, ?, ?, ?, ?, now())",
            [str(master), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "0" * 64],
        )
    monkeypatch.setattr(migrations, "all_migrations", lambda: everything)
    with world.store.writing() as con:  # migrates to the current version
        assert migrations.current_version(con) == migrations.latest_version()
        assert hash_cache.load(con) == {}
    plan = world.plan()
    assert plan.observed.hashed_files == 1
    assert action_of(plan, "VID-A", "CDN").checksum == hashlib.sha256(b"A" * 4096).hexdigest()
    recorded(world)
    ((sha256, ctime_ns),) = rows(world, "SELECT sha256, ctime_ns FROM file_hashes")
    assert (sha256, ctime_ns) == (hashlib.sha256(b"A" * 4096).hexdigest(), st.st_ctime_ns)
    assert world.plan().observed.hashed_files == 0


def test_the_state_cache_is_asked_only_for_what_the_first_cache_missed(tmp_path: Path) -> None:
    """Planning looks masters up in the user cache first and asks the state file only for
    the misses: a user cache that knows every master spares loading 100,000 rows."""
    known, missed, stale = (tmp_path / n for n in ("known.bin", "missed.bin", "stale.bin"))
    for path in (known, missed, stale):
        path.write_bytes(path.name.encode())

    def entry(path: Path, sha: str | None = None) -> CacheEntry:
        st = path.stat()
        digest = sha or hashlib.sha256(path.read_bytes()).hexdigest()
        return CacheEntry(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest)

    first = {str(known): entry(known), str(stale): entry(stale)._replace(size=1)}
    asked: list[list[str]] = []

    def more(paths: list[str]) -> dict[str, CacheEntry]:
        asked.append(paths)
        return {str(stale): entry(stale, "5" * 64)}

    paths = [str(p) for p in (known, missed, stale)]
    seen = sources.observe(paths, first, str(tmp_path), more=more)
    assert asked == [[str(missed), str(stale)]]
    assert seen.hashed_files == 1  # missed: neither cache had it
    assert seen.files[str(stale)].sha256 == "5" * 64  # the second cache vouched for it
    assert seen.files[str(missed)].sha256 == hashlib.sha256(b"missed.bin").hexdigest()
    assert sources.observe(paths[:1], first, str(tmp_path), more=more).hashed_files == 0
    assert len(asked) == 1  # nothing missed: the second cache is not asked
